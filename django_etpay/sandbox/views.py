"""The sandbox's HTTP surface: ETpay's API, its payment funnel and two static assets.

Every view answers 404 unless ``ETPAY["ENVIRONMENT"] == "sandbox"``.

Over 500 lines because it is every page and endpoint ETpay serves, side by side, so that the
sandbox reads as one imitation of one service; what they share is in
:mod:`django_etpay.sandbox.payments`.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from django.contrib.auth import decorators as auth_decorators
from django.db import router, transaction
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBase,
    HttpResponseRedirect,
    JsonResponse,
)
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.utils.translation import gettext
from django.views import View
from django.views.decorators.cache import never_cache
from django.views.decorators.clickjacking import xframe_options_exempt
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables

from django_etpay import money, validators
from django_etpay.sandbox import faults as faults_mod
from django_etpay.sandbox import payments
from django_etpay.sandbox.models import SandboxSession

logger = logging.getLogger("django_etpay.sandbox")

_View = TypeVar("_View", bound=Callable[..., Any])


def _login_not_required(view: _View) -> _View:
    # LoginRequiredMiddleware (Django 5.1+) must not lock ETpay's API or the payer out.
    decorator: Any = getattr(auth_decorators, "login_not_required", None)
    return decorator(view) if decorator is not None else view


#: ETpay's terms page, returned as ``terms_url`` like ETpay's own reply.
TERMS_URL = "https://www.etpay.com/terms-conditions"
ASSETS_DIR = Path(__file__).resolve().parent / "static" / "etpay_sandbox"
ASSET_TYPES = {"funnel.js": "text/javascript", "funnel.css": "text/css"}
REQUIRED_FIELDS = ("merchant_code", "merchant_api_token", "merchant_order_id", "order_amount")
URL_FIELDS = {
    "payment_completed_url": "completed_url",
    "payment_cancellation_url": "cancellation_url",
    "payment_webhook_url": "webhook_url",
}


class _RequestError(Exception):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def _error(message: str, status: int) -> JsonResponse:
    return JsonResponse({"message": message}, status=status)


def _json_body(request: HttpRequest) -> dict[str, Any]:
    # ETpay's SDK posts json.dumps(...) without a Content-Type: parse whatever arrives.
    try:
        body = json.loads(request.body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise _RequestError("The request body must be a JSON object.") from None
    if not isinstance(body, dict):
        raise _RequestError("The request body must be a JSON object.")
    return body


def _request_faults(request: HttpRequest, path_faults: str | None) -> dict[str, float | None]:
    try:
        return faults_mod.parse(faults_mod.merge(path_faults, request.META.get(faults_mod.HEADER)))
    except faults_mod.FaultError as err:
        raise _RequestError(str(err)) from None


def _require_enabled() -> None:
    if not payments.sandbox_enabled():
        raise Http404("The ETpay sandbox is off.")


@method_decorator([csrf_exempt, _login_not_required, never_cache], name="dispatch")
class _ApiView(View):
    http_method_names = ["post"]

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if not payments.sandbox_enabled():
            return _error("Not found.", 404)
        try:
            return super().dispatch(request, *args, **kwargs)
        except _RequestError as err:
            return _error(err.message, err.status)

    def http_method_not_allowed(
        self, request: HttpRequest, *args: Any, **kwargs: Any
    ) -> HttpResponse:
        response = _error("Method not allowed.", 405)
        response["Allow"] = "POST"
        return response


def _clean_amount(value: Any) -> int:
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    return validators.amount(value)


def _clean_bool(value: Any) -> bool:
    # ETpay's SDK types is_rut_block as a string.
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
        return value.lower() in ("true", "1")
    raise ValueError("must be true or false.")


_OPTIONAL: dict[str, Callable[[Any], Any]] = {
    "customer_email": validators.email,
    "metadata": validators.metadata,
    "user_bank_code": validators.bank_code,
    "user_rut": validators.rut,
    "is_rut_block": _clean_bool,
    "payment_completed_url": validators.http_url,
    "payment_cancellation_url": validators.http_url,
    "payment_webhook_url": validators.http_url,
    "concat": validators.concat,
    "customer_phone": validators.phone,
    "target_flow": validators.target_flow,
}
#: What only one country's ETpay takes: refused by the other's, as the app itself refuses it.
_COUNTRY_ONLY: dict[str, str] = {
    "user_rut": "CL",
    "is_rut_block": "CL",
    "customer_phone": "MX",
    "target_flow": "MX",
}


class InitializeView(_ApiView):
    """``POST /session/initialize``: create a session, reply ``{token, signature_token,
    terms_url}``.

    401 for unknown credentials, 400 for missing or invalid fields, both as
    ``{"message": ...}``.
    """

    @method_decorator(sensitive_variables("body", "signature_token"))
    def post(self, request: HttpRequest, faults: str | None = None) -> HttpResponse:
        injected = _request_faults(request, faults)
        body = _json_body(request)
        missing = [name for name in REQUIRED_FIELDS if body.get(name) in (None, "")]
        if missing:
            raise _RequestError(f"Missing required field(s): {', '.join(missing)}.")
        code, api_token = body["merchant_code"], body["merchant_api_token"]
        if not isinstance(code, str) or not isinstance(api_token, str):
            raise _RequestError("merchant_code and merchant_api_token must be strings.")
        account = payments.authenticate(code, api_token)
        if account is None:
            raise _RequestError("Invalid merchant credentials.", status=401)

        cleaned: dict[str, Any] = {}
        problems: list[str] = []
        optional = {
            **_OPTIONAL,
            "user_bank_code": lambda value: validators.bank_code(value, account.country),
        }
        for name, clean in (
            ("merchant_order_id", validators.order_id),
            ("order_amount", _clean_amount),
            *((name, fn) for name, fn in optional.items() if body.get(name) is not None),
        ):
            if _COUNTRY_ONLY.get(name, account.country) != account.country:
                problems.append(f"{name} is not taken by ETpay {account.country}.")
                continue
            try:
                cleaned[name] = clean(body[name])
            except ValueError as err:
                problems.append(f"{name} {err}")
        if problems:
            raise _RequestError("Invalid field(s): " + " ".join(problems))

        signature_token = secrets.token_hex(32)
        session = SandboxSession.objects.create(
            token=secrets.token_urlsafe(32),
            signature_token=signature_token,
            merchant=account.alias,
            merchant_code=account.merchant_code,
            merchant_order_id=cleaned["merchant_order_id"],
            order_amount=cleaned["order_amount"],
            country=account.country,
            currency=account.currency,
            customer_phone=cleaned.get("customer_phone", ""),
            target_flow=cleaned.get("target_flow", ""),
            customer_email=cleaned.get("customer_email", ""),
            metadata=cleaned.get("metadata", []),
            user_bank_code=cleaned.get("user_bank_code", ""),
            user_rut=cleaned.get("user_rut", ""),
            is_rut_block=bool(cleaned.get("is_rut_block") and cleaned.get("user_rut")),
            concat=cleaned.get("concat", ""),
            faults=faults_mod.serialize(injected),
            **{column: cleaned.get(field, "") for field, column in URL_FIELDS.items()},
        )
        logger.info(
            "Sandbox session %s created for order %s (%d %s)%s",
            session.pk,
            session.merchant_order_id,
            session.order_amount,
            session.currency,
            f" with faults {session.faults}" if session.faults else "",
        )
        _maybe_slow(injected)
        if "initialize_5xx" in injected:
            return _error("Sandbox: injected server error.", 503)
        # ETpay's Mexican API may answer without terms (its SDK says terms_url may be null).
        terms_url = TERMS_URL if account.country == "CL" else None
        return JsonResponse(
            {"token": session.token, "signature_token": signature_token, "terms_url": terms_url}
        )


class CheckPaymentStatusView(_ApiView):
    """``POST /merchant/check_payment_status``: the payments of the sessions that match.

    Filters: ``session_token``, ``merchant_order_id``, ``payment_token`` (at least one).
    Authenticated by ``merchant_api_token`` alone, as ETpay's SDK sends it. Replies with a JSON
    array; a session the payer has not finished yet is not a payment and is not listed.
    """

    @method_decorator(sensitive_variables("body"))
    def post(self, request: HttpRequest, faults: str | None = None) -> HttpResponse:
        injected = _request_faults(request, faults)
        body = _json_body(request)
        api_token = body.get("merchant_api_token")
        if not isinstance(api_token, str) or not api_token:
            raise _RequestError("Missing required field(s): merchant_api_token.")
        account = payments.authenticate(None, api_token)
        if account is None:
            raise _RequestError("Invalid merchant credentials.", status=401)
        filters = {
            name: body[name]
            for name in ("session_token", "merchant_order_id", "payment_token")
            if isinstance(body.get(name), str) and body[name]
        }
        if not filters:
            raise _RequestError("Give session_token, merchant_order_id or payment_token.")
        lookup = {
            "token" if name == "session_token" else name: value for name, value in filters.items()
        }
        sessions = SandboxSession.objects.filter(
            merchant=account.alias,
            status__in=[SandboxSession.Status.APPROVED, SandboxSession.Status.REJECTED],
            **lookup,
        ).order_by("created_at")
        _maybe_slow(injected)
        reply = [
            payments.status_entry(
                session,
                as_string="status_string" in injected
                or "status_string" in faults_mod.parse(session.faults),
            )
            for session in sessions
        ]
        return JsonResponse(reply, safe=False)


def _maybe_slow(injected: dict[str, float | None]) -> None:
    delay = injected.get("slow")
    if "slow" in injected and delay:
        time.sleep(delay)


# -- the payment funnel --------------------------------------------------------------------------


def _get_session(token: str) -> SandboxSession:
    _require_enabled()
    try:
        return SandboxSession.objects.get(token=token)
    except SandboxSession.DoesNotExist:
        raise Http404("Unknown sandbox session.") from None


def _format_amount(session: SandboxSession) -> str:
    # The account's currency: CLP for a Chilean merchant, MXN for a Mexican one.
    return money.format_money(int(session.order_amount), session.currency or "CLP")


def _frame_headers(response: HttpResponse, session: SandboxSession) -> HttpResponse:
    # The widget frames the funnel: allow exactly the merchant's own pages to do so.
    ancestors = " ".join(["'self'", *payments.known_origins(session)])
    response["Content-Security-Policy"] = f"frame-ancestors {ancestors}"
    return response


@dataclass(frozen=True)
class _Typed:
    """What the payer typed, kept when the funnel form is shown again with an error."""

    rut: str | None = None
    bank: str = ""
    faults: list[str] = field(default_factory=list)
    phone: str | None = None
    method: str = ""


@method_decorator(
    [csrf_exempt, _login_not_required, never_cache, xframe_options_exempt], name="dispatch"
)
@method_decorator(sensitive_post_parameters(), name="post")
class FunnelView(View):
    """``GET /session/<token>``: pick a bank, then approve or reject (``POST`` to the same URL).

    The unguessable session token in the URL is the payer's only credential, as in ETpay's
    funnel; there is no cookie to protect, hence no CSRF token. ``action=cancel`` is the
    payer giving up: a failed result, sent to ``payment_cancellation_url``. A finished
    session shows its result again, with the way back to the shop.

    The RUT is required from a person (an empty field is refused and the page keeps what was
    typed); a scripted POST that leaves the ``rut`` field out entirely pays as the sandbox's
    test RUT 11.111.111-1.

    A Mexican merchant's session (``COUNTRY = "MX"``) asks for no RUT: the payer picks CoDi or
    SPEI (``target_flow`` preselects one) and a ``mx_*`` bank, and confirms a 10-digit phone
    (prefilled from ``customer_phone``); a scripted POST without them (no ``method_asked``
    field, which the page sends) pays by SPEI with the phone sent, else the test phone
    5555555555.
    """

    http_method_names = ["get", "post"]
    template_name = "etpay_sandbox/funnel.html"
    result_template_name = "etpay_sandbox/result.html"

    def get(self, request: HttpRequest, token: str) -> HttpResponse:
        session = _get_session(token)
        if session.status != SandboxSession.Status.PENDING:
            return self._finished(request, session)
        return _frame_headers(render(request, self.template_name, self._context(session)), session)

    def _context(
        self,
        session: SandboxSession,
        error: str = "",
        *,
        typed_rut: str | None = None,
        chosen_bank: str = "",
        chosen_faults: list[str] | None = None,
        typed_phone: str | None = None,
        chosen_method: str = "",
    ) -> dict[str, Any]:
        shown = [entry for entry in session.metadata if entry.get("show") is True]
        codes = payments.bank_codes(session)
        banks = [(code, payments.bank_name(code)) for code in codes]
        # Nothing is checked unless the shop preselected a method: the payer chooses.
        method = chosen_method or session.target_flow
        if typed_rut is not None and not session.is_rut_block:
            rut = typed_rut
        else:
            rut = validators.format_rut(session.user_rut) if session.user_rut else ""
        return {
            "session": session,
            "amount": _format_amount(session),
            "metadata": shown,
            "banks": banks,
            "chosen_bank": chosen_bank if chosen_bank in codes else "",
            "mexican": session.country == "MX",
            "methods": [("codi", "CoDi"), ("spei", "SPEI")],
            "chosen_method": method if method in validators.TARGET_FLOWS else "",
            "phone": session.customer_phone if typed_phone is None else typed_phone,
            "preselected_bank": session.user_bank_code,
            "preselected_bank_name": payments.bank_name(session.user_bank_code),
            "rut": rut,
            "rut_locked": session.is_rut_block,
            "faults": [
                (name, faults_mod.fault_help(name), name in (chosen_faults or []))
                for name in faults_mod.FUNNEL_FAULTS
            ],
            "session_faults": session.faults,
            "can_cancel": bool(session.cancellation_url),
            "origins": " ".join(payments.known_origins(session)),
            "error": error,
            "script_url": reverse("etpay_sandbox:asset", args=["funnel.js"]),
            "style_url": reverse("etpay_sandbox:asset", args=["funnel.css"]),
        }

    def post(self, request: HttpRequest, token: str) -> HttpResponse:
        session = _get_session(token)
        if session.status != SandboxSession.Status.PENDING:
            return self._finished(request, session)
        action = request.POST.get("action")
        if action == "cancel":
            return self._finish(request, session, action="cancel", bank="", rut="", extra="")
        typed_rut = request.POST.get("rut")
        typed_phone = request.POST.get("phone")
        kept = _Typed(
            rut=typed_rut.strip() if typed_rut is not None else None,
            bank=request.POST.get("bank", ""),
            faults=request.POST.getlist("faults"),
            phone=typed_phone.strip() if typed_phone is not None else None,
            method=request.POST.get("method", ""),
        )
        if action not in ("approve", "reject"):
            return self._invalid(request, session, gettext("Choose approve or reject."), kept=kept)
        bank = session.user_bank_code or request.POST.get("bank", "")
        if bank not in payments.bank_codes(session):
            return self._invalid(request, session, gettext("Choose your bank."), kept=kept)
        extra = faults_mod.from_names(request.POST.getlist("faults"))
        if session.country == "MX":
            return self._mexican(
                request, session, action=action, bank=bank, kept=kept, extra=extra
            )
        if session.is_rut_block:
            rut = session.user_rut
        elif typed_rut is None:
            # A scripted POST without the field: the shop's RUT, else the test RUT.
            rut = session.user_rut
        elif not typed_rut.strip():
            return self._invalid(request, session, gettext("Enter your RUT."), kept=kept)
        else:
            try:
                rut = validators.rut(typed_rut.strip())
            except ValueError as err:
                return self._invalid(
                    request, session, gettext("RUT %(error)s") % {"error": err}, kept=kept
                )
        return self._finish(request, session, action=action, bank=bank, rut=rut, extra=extra)

    def _mexican(
        self,
        request: HttpRequest,
        session: SandboxSession,
        *,
        action: str,
        bank: str,
        kept: _Typed,
        extra: str,
    ) -> HttpResponse:
        """CoDi or SPEI, and the payer's phone, for a Mexican merchant's session."""
        method = kept.method or session.target_flow
        if not method and "method_asked" not in request.POST:
            # A scripted POST (no form): SPEI, as documented above.
            method = "spei"
        if method not in validators.TARGET_FLOWS:
            return self._invalid(request, session, gettext("Choose CoDi or SPEI."), kept=kept)
        if kept.phone is None:
            phone = session.customer_phone or payments.DEFAULT_PAYER_PHONE
        else:
            try:
                phone = validators.phone(kept.phone)
            except ValueError:
                return self._invalid(
                    request, session, gettext("Enter your phone: 10 digits."), kept=kept
                )
        session.target_flow = method
        return self._finish(
            request, session, action=action, bank=bank, rut="", extra=extra, phone=phone
        )

    def _finish(
        self,
        request: HttpRequest,
        session: SandboxSession,
        *,
        action: str,
        bank: str,
        rut: str,
        extra: str,
        phone: str = "",
    ) -> HttpResponse:
        try:
            merged = faults_mod.merge(extra, request.GET.get("faults"))
            injected = faults_mod.parse(faults_mod.merge(session.faults, merged))
        except faults_mod.FaultError as err:
            return self._invalid(request, session, str(err))
        if action == "cancel":
            # Giving up is not an ETpay system error: it is always a plain failed result.
            injected.pop("system_error", None)
        approved = action == "approve"
        if "system_error" in injected:
            status = SandboxSession.Status.SYSTEM_ERROR
        elif approved:
            status = SandboxSession.Status.APPROVED
        else:
            status = SandboxSession.Status.REJECTED
        # A Mexican payer has no RUT: the method chosen and the phone confirmed are kept.
        default_rut = "" if session.country == "MX" else payments.DEFAULT_PAYER_RUT
        mexican: dict[str, str] = {}
        if session.country == "MX" and action != "cancel":
            mexican = {"target_flow": session.target_flow, "customer_phone": phone}
        alias = router.db_for_write(SandboxSession)
        with transaction.atomic(using=alias):
            # A compare-and-set: a double click or a second tab completes the session once.
            changed = (
                SandboxSession.objects.using(alias)
                .filter(pk=session.pk, status=SandboxSession.Status.PENDING)
                .update(
                    status=status,
                    payment_token=secrets.token_urlsafe(24),
                    user_bank=payments.bank_name(bank) if bank else "",
                    payer_rut=rut or ("" if action == "cancel" else default_rut),
                    faults=faults_mod.serialize(injected),
                    **mexican,
                    completed_at=timezone.now(),
                )
            )
        session.refresh_from_db(using=alias)
        if not changed:
            return self._finished(request, session)
        return self._complete(request, session, approved=approved, injected=injected)

    def _invalid(
        self,
        request: HttpRequest,
        session: SandboxSession,
        error: str,
        *,
        kept: _Typed | None = None,
    ) -> HttpResponse:
        kept = kept or _Typed()
        context = self._context(
            session,
            error,
            typed_rut=kept.rut,
            chosen_bank=kept.bank,
            chosen_faults=kept.faults,
            typed_phone=kept.phone,
            chosen_method=kept.method,
        )
        response = render(request, self.template_name, context, status=400)
        return _frame_headers(response, session)

    def _complete(
        self,
        request: HttpRequest,
        session: SandboxSession,
        *,
        approved: bool,
        injected: dict[str, float | None],
    ) -> HttpResponse:
        as_string = "status_string" in injected
        if "system_error" in injected:
            token = payments.mint_system_error_jwt(session)
            target = session.cancellation_url
        else:
            iat = int(time.time())
            token = payments.mint_payment_jwt(
                session, approved=approved, as_string=as_string, iat=iat
            )
            target = session.completed_url if approved else session.cancellation_url
            self._notify(session, token, approved=approved, injected=injected, iat=iat)
        logger.info(
            "Sandbox session %s %s", session.pk, "system error" if not target else session.status
        )
        next_url = payments.return_url(target, session.concat, token) if target else ""
        if next_url and not _framed(request):
            return HttpResponseRedirect(next_url, status=303)
        return self._result(request, session, jwt=token, next_url=next_url)

    def _finished(self, request: HttpRequest, session: SandboxSession) -> HttpResponse:
        """A finished session's result again, so the payer always has a way back."""
        token, target = payments.final_result(session)
        next_url = payments.return_url(target, session.concat, token) if target else ""
        return self._result(request, session, jwt=token, next_url=next_url, finished=True)

    def _notify(
        self,
        session: SandboxSession,
        token: str,
        *,
        approved: bool,
        injected: dict[str, float | None],
        iat: int,
    ) -> None:
        if not session.webhook_url or "never" in injected:
            return
        payloads = [token, token] if "twice" in injected else [token]
        if "out_of_order" in injected:
            payloads.append(
                payments.mint_payment_jwt(
                    session,
                    approved=not approved,
                    as_string="status_string" in injected,
                    iat=iat - payments.STALE_SECONDS,
                )
            )
        delay = injected.get("late") or 0.0
        payments.deliver_webhooks(session.webhook_url, payloads, delay=delay)

    def _result(
        self,
        request: HttpRequest,
        session: SandboxSession,
        *,
        jwt: str,
        next_url: str,
        finished: bool = False,
    ) -> HttpResponse:
        context = {
            "session": session,
            "amount": _format_amount(session),
            "jwt": jwt,
            "next_url": next_url,
            "finished": finished,
            "status_label": _status_label(session.status),
            "origins": " ".join(payments.known_origins(session)),
            "script_url": reverse("etpay_sandbox:asset", args=["funnel.js"]),
            "style_url": reverse("etpay_sandbox:asset", args=["funnel.css"]),
        }
        return _frame_headers(render(request, self.result_template_name, context), session)


def _framed(request: HttpRequest) -> bool:
    return request.POST.get("framed") == "1" or request.headers.get("Sec-Fetch-Dest") == "iframe"


def _status_label(status: str) -> str:
    labels: dict[str, str] = {
        SandboxSession.Status.PENDING: gettext("Payment pending"),
        SandboxSession.Status.APPROVED: gettext("Payment approved"),
        SandboxSession.Status.REJECTED: gettext("Payment rejected"),
        SandboxSession.Status.SYSTEM_ERROR: gettext("Payment interrupted by a system error"),
    }
    return labels.get(status, status)


@_login_not_required
def asset(request: HttpRequest, name: str) -> HttpResponse:
    """The funnel's script and stylesheet, served here so the sandbox needs no static setup."""
    _require_enabled()
    if name not in ASSET_TYPES:
        raise Http404("Unknown asset.")
    response = HttpResponse((ASSETS_DIR / name).read_bytes(), content_type=ASSET_TYPES[name])
    response["Cache-Control"] = "no-cache"
    return response


__all__ = ["CheckPaymentStatusView", "FunnelView", "InitializeView", "asset"]
