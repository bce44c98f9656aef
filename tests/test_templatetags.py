"""``{% load etpay %}``: the exact HTML of every tag, escaping, CSP nonces, sessions that cannot
be paid."""

from __future__ import annotations

import json
from typing import Any

import django
import pytest
from django.http import HttpRequest, HttpResponse
from django.template import Context, RequestContext, Template, TemplateSyntaxError
from django.test import Client, RequestFactory, override_settings
from django.urls import include, path

from django_etpay import widgets
from django_etpay.models import PaymentSession
from tests.factories import make_session

pytestmark = pytest.mark.django_db

HOSTILE_ORDER = 'OC-1"><script>alert(1)</script>'
HOSTILE_METADATA = [
    {"name": "</script><b>", "value": "a & b", "show": True},
    {"name": "hidden", "value": "never shown", "show": False},
]

#: The loader's English texts, as the payer reads them.
TEXTS = {
    "button": "Pay with ETpay",
    "title": "Pay with ETpay",
    "close": "Close",
    "frameTitle": "ETpay payment page",
    "loading": "Loading ETpay's payment page…",
    "confirming": "Confirming your payment…",
    "paid": "Payment received. Taking you back to the shop…",
    "failed": "The payment was not completed. No money was taken.",
    "pending": "ETpay has not confirmed the payment yet. We will show you the order's status.",
    "unknown": (
        "We could not confirm this payment here. If money left your account, the shop will "
        "receive ETpay's confirmation directly."
    ),
    "networkError": "We could not reach the shop to confirm your payment.",
    "timeout": "The shop took too long to confirm your payment.",
    "retry": "Try again",
    "continue": "Continue",
    "redirecting": "Opening ETpay's payment page…",
    "fallback": "Problems? Open the payment page in this window",
}


def render(source: str, **context: Any) -> str:
    return Template("{% load etpay %}" + source).render(Context(context))


def script_json(value: dict[str, Any]) -> str:
    """``value`` as Django's json_script writes it: JSON with <, > and & escaped."""
    text = json.dumps(value)
    return text.replace("<", "\\u003C").replace(">", "\\u003E").replace("&", "\\u0026")


def hostile_session() -> PaymentSession:
    return make_session(
        merchant_order_id=HOSTILE_ORDER,
        order_amount=6990,
        token="tok-hostile",
        metadata=HOSTILE_METADATA,
    )


def expected_config(session: PaymentSession, **changes: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "sessionToken": session.token,
        "paymentUrl": f"https://pmt.etpay.test/session/{session.token}",
        "funnelOrigin": "https://pmt.etpay.test",
        "resultUrl": "http://testserver/etpay/widget-result/",
        "successUrl": None,
        "failureUrl": None,
        "openOnLoad": False,
        "texts": TEXTS,
        "summary": {
            "order": session.merchant_order_id,
            "amount": "$6.990 CLP",
            "label": f"Order {session.merchant_order_id}: $6.990 CLP",
            "items": [{"name": "</script><b>", "value": "a & b"}],
        },
        "csrfCookieName": "csrftoken",
        "csrfHeaderName": "X-CSRFTOKEN",
        "resultTimeoutMs": 20000,
        "handshakeTimeoutMs": 3000,
        "csrfToken": "csrf-1",
    }
    config.update(changes)
    return config


def expected_widget(session: PaymentSession, config: dict[str, Any], nonce: str = "") -> str:
    element = f"etpay-widget-{session.pk}"
    attr = f' nonce="{nonce}"' if nonce else ""
    return (
        f'<div class="etpay-widget" id="{element}" data-etpay-widget '
        f'data-etpay-config="{element}-config"><a class="etpay-button etpay-widget__open" '
        f'href="https://pmt.etpay.test/session/{session.token}">'
        f"{config['texts']['button']}</a></div>\n"
        f'<script id="{element}-config" type="application/json">{script_json(config)}</script>\n'
        f'<link rel="stylesheet" href="/static/django_etpay/widget.css"{attr}>\n'
        f'<script src="/static/django_etpay/widget.js" defer{attr}></script>\n'
    )


# -- etpay_widget ---------------------------------------------------------------------------


def test_widget_exact_html_escapes_a_hostile_order_id_and_metadata() -> None:
    session = hostile_session()
    html = render(
        "{% etpay_widget s %}", s=session, request=RequestFactory().get("/"), csrf_token="csrf-1"
    )
    assert html == expected_widget(session, expected_config(session))
    # No markup from the data survives anywhere, and hidden metadata stays out.
    assert "<script>alert" not in html
    assert "</script><b>" not in html
    assert "never shown" not in html
    assert session.signature_token not in html


def test_widget_options_reach_the_config_and_the_link() -> None:
    session = hostile_session()
    html = render(
        "{% etpay_widget s button_text=label open_on_load=True "
        'success_url="/gracias/" failure_url="/reintentar/" %}',
        s=session,
        label="Pagar <ya>",
        request=RequestFactory().get("/"),
        csrf_token="csrf-1",
    )
    config = expected_config(
        session,
        openOnLoad=True,
        successUrl="http://testserver/gracias/",
        failureUrl="http://testserver/reintentar/",
        texts={**TEXTS, "button": "Pagar <ya>"},
    )
    expected = expected_widget(session, config).replace(">Pagar <ya></a>", ">Pagar &lt;ya&gt;</a>")
    assert html == expected


@pytest.mark.parametrize(
    ("context", "nonce"),
    [
        pytest.param({"csp_nonce": "ctx-n0nce"}, "ctx-n0nce", id="django-context-processor"),
        pytest.param({"csp_nonce": 'n"0nce'}, "n&quot;0nce", id="escaped"),
        pytest.param({}, "", id="no-csp"),
    ],
)
def test_widget_carries_the_csp_nonce_from_the_context(
    context: dict[str, Any], nonce: str
) -> None:
    session = hostile_session()
    html = render(
        "{% etpay_widget s %}",
        s=session,
        request=RequestFactory().get("/"),
        csrf_token="csrf-1",
        **context,
    )
    assert html == expected_widget(session, expected_config(session), nonce)


def test_widget_carries_a_nonce_found_on_the_request() -> None:
    session = hostile_session()
    request = RequestFactory().get("/")
    request.csp_nonce = "req-n0nce"  # type: ignore[attr-defined] # what django-csp sets
    html = render("{% etpay_widget s %}", s=session, request=request, csrf_token="csrf-1")
    assert html == expected_widget(session, expected_config(session), "req-n0nce")


def test_widget_without_a_request_uses_relative_urls_and_no_csrf_token() -> None:
    session = hostile_session()
    html = render("{% etpay_widget s %}", s=session)
    config = expected_config(session, resultUrl="/etpay/widget-result/")
    del config["csrfToken"]
    assert html == expected_widget(session, config)


@pytest.mark.parametrize(
    ("fields", "reason", "message"),
    [
        (
            {"token": None, "status": "error"},
            "no_token",
            f"The payment for order {HOSTILE_ORDER} could not be started: ETpay did not open "
            "a session for it. Please try again in a moment.",
        ),
        (
            {"status": "paid"},
            "paid",
            f"The payment for order {HOSTILE_ORDER} is complete. Thank you.",
        ),
        (
            {"status": "expired"},
            "finished",
            f"The payment session for order {HOSTILE_ORDER} has ended. "
            "Start a new payment to pay.",
        ),
        (
            {"status": "failed"},
            "finished",
            f"The payment session for order {HOSTILE_ORDER} has ended. "
            "Start a new payment to pay.",
        ),
    ],
)
@pytest.mark.parametrize("tag", ["etpay_widget", "etpay_pay_button"])
def test_a_session_that_cannot_be_paid_renders_a_clear_message(
    tag: str, fields: dict[str, Any], reason: str, message: str
) -> None:
    session = make_session(merchant_order_id=HOSTILE_ORDER, **fields)
    html = render(f"{{% {tag} s %}}", s=session, request=RequestFactory().get("/"))
    escaped = (
        message.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&quot;")
    )
    assert html == (
        f'<p class="etpay-unavailable etpay-unavailable--{reason}" role="status">{escaped}</p>\n'
    )


@pytest.mark.parametrize("tag", ["etpay_widget", "etpay_pay_button"])
def test_no_session_at_all_renders_a_clear_message(tag: str) -> None:
    assert render(f"{{% {tag} s %}}", s=None) == (
        '<p class="etpay-unavailable etpay-unavailable--missing" role="status">'
        "No payment has been started for this order.</p>\n"
    )


def test_widget_script_url_setting_loads_that_script_instead(settings: Any) -> None:
    settings.ETPAY = {**settings.ETPAY, "WIDGET_SCRIPT_URL": "https://cdn.etpay.test/w.js?a=1&b=2"}
    session = hostile_session()
    html = render("{% etpay_widget s %}", s=session, csp_nonce="n")
    assert (
        '<script src="https://cdn.etpay.test/w.js?a=1&amp;b=2" defer nonce="n"></script>' in html
    )
    assert "django_etpay/widget.js" not in html


def test_widget_timeouts_follow_the_settings(settings: Any) -> None:
    settings.ETPAY = {
        **settings.ETPAY,
        "WIDGET_RESULT_TIMEOUT": 2.5,
        "WIDGET_HANDSHAKE_TIMEOUT": 0.5,
    }
    config = widgets.widget_config(hostile_session())
    assert (config["resultTimeoutMs"], config["handshakeTimeoutMs"]) == (2500, 500)


# -- etpay_pay_button, etpay_payment_url ------------------------------------------------------


def test_pay_button_exact_html() -> None:
    session = make_session(token="tok-<b>&")
    assert render("{% etpay_pay_button s %}", s=session) == (
        '<a class="etpay-button etpay-pay-button" '
        'href="https://pmt.etpay.test/session/tok-&lt;b&gt;&amp;">Pay with ETpay</a>\n'
    )
    assert render("{% etpay_pay_button s text=label %}", s=session, label="Ir a <ETpay>") == (
        '<a class="etpay-button etpay-pay-button" '
        'href="https://pmt.etpay.test/session/tok-&lt;b&gt;&amp;">Ir a &lt;ETpay&gt;</a>\n'
    )


def test_payment_url_tag() -> None:
    session = make_session(token="tok-&")
    assert render("{% etpay_payment_url s %}", s=session) == (
        "https://pmt.etpay.test/session/tok-&amp;"
    )
    assert render("{% etpay_payment_url s %}", s=make_session(token=None)) == ""
    assert render("{% etpay_payment_url s %}", s=None) == ""
    assert render("{% etpay_payment_url s as url %}[{{ url }}]", s=None) == "[]"


# -- etpay_bank_buttons ---------------------------------------------------------------------


def test_bank_buttons_exact_html() -> None:
    html = render(
        "{% etpay_bank_buttons action banks='cl_bci, CL_ESTADO' %}",
        action='/pay/?next="x"&y',
        csrf_token="csrf-<1>",
    )
    assert html == (
        '<form class="etpay-banks" method="post" action="/pay/?next=&quot;x&quot;&amp;y">'
        '<input type="hidden" name="csrfmiddlewaretoken" value="csrf-&lt;1&gt;">'
        "<fieldset><legend>Pay from your bank</legend>"
        '<button type="submit" class="etpay-bank etpay-bank--cl_bci" name="user_bank_code" '
        'value="cl_bci">Bci</button>'
        '<button type="submit" class="etpay-bank etpay-bank--cl_estado" name="user_bank_code" '
        'value="cl_estado">BancoEstado</button>'
        "</fieldset></form>\n"
    )


def test_bank_buttons_default_list_adds_the_test_bank_in_the_sandbox(settings: Any) -> None:
    html = render("{% etpay_bank_buttons '/pay/' %}", csrf_token="c")
    values = [chunk.split('"', 1)[0] for chunk in html.split('value="')[2:]]
    assert values == [*widgets.DEFAULT_BANKS, "cl_test"]
    settings.ETPAY = {**settings.ETPAY, "ENVIRONMENT": "production"}
    production = render("{% etpay_bank_buttons '/pay/' %}", csrf_token="c")
    assert "cl_test" not in production
    assert "cl_mach" in production


def test_bank_buttons_default_list_follows_the_accounts_country(settings: Any) -> None:
    settings.ETPAY = {**settings.ETPAY, "COUNTRY": "MX", "MERCHANT_CODE": "mx_tests"}
    html = render("{% etpay_bank_buttons '/pay/' %}", csrf_token="c")
    values = [chunk.split('"', 1)[0] for chunk in html.split('value="')[2:]]
    assert values == [*widgets.COUNTRY_DEFAULT_BANKS["MX"], "mx_test"]
    assert values[0] == "mx_bbva"
    assert "BBVA México" in html
    assert "cl_estado" not in html


def test_bank_buttons_take_the_csrf_token_from_the_request() -> None:
    request = RequestFactory().get("/")
    html = render("{% etpay_bank_buttons '/pay/' banks='cl_bci' %}", request=request)
    token = html.split('name="csrfmiddlewaretoken" value="', 1)[1].split('"', 1)[0]
    assert len(token) == 64


def test_an_unknown_bank_is_a_clear_error_naming_the_allowed_codes() -> None:
    with pytest.raises(ValueError, match="Unknown ETpay bank code 'cl_nope'; allowed: cl_estado"):
        render("{% etpay_bank_buttons '/pay/' banks='cl_bci,cl_nope' %}", csrf_token="c")


def test_tags_reject_unknown_options() -> None:
    with pytest.raises(TemplateSyntaxError):
        Template("{% load etpay %}{% etpay_widget s colour='red' %}")


# -- real CSP middleware --------------------------------------------------------------------


def _widget_view(request: HttpRequest) -> HttpResponse:
    session = PaymentSession.objects.get(merchant_order_id="OC-CSP")
    template = Template("{% load etpay %}{% etpay_widget s %}")
    return HttpResponse(template.render(RequestContext(request, {"s": session})))


urlpatterns = [
    path("etpay/", include("django_etpay.urls")),
    path("csp-widget/", _widget_view),
]


def _nonce_in(html: str) -> str:
    return html.split('defer nonce="', 1)[1].split('"', 1)[0]


def test_django_csp_nonce_is_on_the_script_and_in_the_header(client: Client) -> None:
    from csp.constants import NONCE, SELF

    make_session(merchant_order_id="OC-CSP")
    with override_settings(
        ROOT_URLCONF=__name__,
        MIDDLEWARE=["csp.middleware.CSPMiddleware"],
        CONTENT_SECURITY_POLICY={"DIRECTIVES": {"script-src": [SELF, NONCE]}},
    ):
        response = client.get("/csp-widget/")
    nonce = _nonce_in(response.content.decode())
    assert nonce
    assert f"'nonce-{nonce}'" in response["Content-Security-Policy"]


@pytest.mark.skipif(django.VERSION < (6, 0), reason="Django's own CSP arrived in 6.0")
def test_django_builtin_csp_nonce_is_on_the_script_and_in_the_header(client: Client) -> None:
    from django.utils.csp import CSP  # type: ignore[import-not-found,unused-ignore]

    make_session(merchant_order_id="OC-CSP")
    with override_settings(
        ROOT_URLCONF=__name__,
        MIDDLEWARE=["django.middleware.csp.ContentSecurityPolicyMiddleware"],
        SECURE_CSP={"script-src": [CSP.SELF, CSP.NONCE]},
    ):
        response = client.get("/csp-widget/")
    nonce = _nonce_in(response.content.decode())
    assert nonce
    assert f"'nonce-{nonce}'" in response["Content-Security-Policy"]
