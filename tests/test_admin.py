"""The admin: evidence staff can trust, read-only, secret-free, and cheap at any table size."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any
from unittest import mock

import pytest
from django.conf import settings
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from django_etpay.admin import CappedCountPaginator, NeedsAttentionFilter
from django_etpay.models import Notification, OutboxEffect, PaymentSession
from tests.factories import STATUS_URL, make_session, status_entry

SIGNATURE_TOKEN = "sig-admin-test-0123456789abcdef0123456789abcdef"
SESSIONS = "admin:django_etpay_paymentsession_changelist"
NOTIFICATIONS = "admin:django_etpay_notification_changelist"


@pytest.fixture
def paid_session(db: Any) -> PaymentSession:
    session = PaymentSession.objects.create(
        environment="sandbox",
        merchant_order_id="OC-700104",
        order_amount=125000,
        token="tok-admin-1",
        signature_token=SIGNATURE_TOKEN,
        status=PaymentSession.Status.PAID,
        payment_token="pay-admin-1",
        customer_email="Payer@Example.com",
        payer_bank="Banco de prueba",
        payer_rut="111111111",
        payer_account="Cuenta Corriente 98765432",
    )
    Notification.objects.create(
        session=session,
        channel=Notification.Channel.WEBHOOK,
        outcome=Notification.Outcome.ACCEPTED,
        result=Notification.Result.SUCCESS,
        payment_token="pay-admin-1",
        claims={
            "merchant_order_id": "OC-700104",
            "merchant_amount": 125000,
            "user_rut": "111111111",
            "user_account": "Cuenta Corriente 98765432",
        },
        raw_body='{"payment": "x.y.z"}',
    )
    return session


def staff(*codenames: str) -> Client:
    """A logged-in staff client holding exactly the given django_etpay permissions."""
    user = User.objects.create_user(f"staff-{'-'.join(codenames) or 'plain'}", is_staff=True)
    for codename in ("view_paymentsession", "view_notification", "view_outboxeffect", *codenames):
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label="django_etpay", codename=codename)
        )
    client = Client()
    client.force_login(user)
    return client


def _assert_no_secret(html: str) -> None:
    assert SIGNATURE_TOKEN not in html
    assert settings.TEST_MERCHANT_API_TOKEN not in html
    assert "signature_token" not in html


def messages_of(response: Any) -> list[str]:
    return [str(m) for m in response.context["messages"]]


# -- sessions list ----------------------------------------------------------------------------


def test_session_changelist_and_search(admin_client: Client, paid_session: PaymentSession) -> None:
    url = reverse(SESSIONS)
    response = admin_client.get(url)
    assert response.status_code == 200
    html = response.content.decode()
    assert "OC-700104" in html
    assert "$125.000 CLP" in html
    _assert_no_secret(html)

    def found(q: str) -> int:
        result_count: int = admin_client.get(url, {"q": q}).context["cl"].result_count
        return result_count

    assert found("OC-700104") == 1
    assert found("OC-700105") == 0
    assert found("OC-7001") == 0  # exact: a prefix is not a match (and needs no full scan)
    assert found("tok-admin-1") == 1
    assert found("pay-admin-1") == 1
    assert found("payer@example.COM") == 1  # e-mail is case-insensitive
    # The secret is not searchable: searching for it finds nothing.
    assert found(SIGNATURE_TOKEN) == 0


def test_system_error_is_labelled_as_such_not_duplicate(
    admin_client: Client, paid_session: PaymentSession
) -> None:
    Notification.objects.create(
        session=paid_session,
        channel=Notification.Channel.REDIRECT,
        outcome=Notification.Outcome.DUPLICATE,
        reason=Notification.Reason.SYSTEM_ERROR,
        result=Notification.Result.UNKNOWN,
    )
    Notification.objects.create(
        session=paid_session,
        channel=Notification.Channel.POLL,
        outcome=Notification.Outcome.REJECTED,
        reason=Notification.Reason.AMOUNT_MISMATCH,
    )
    html = admin_client.get(reverse(NOTIFICATIONS)).content.decode()
    cells = re.findall(r'<td class="field-outcome_label">([^<]*)</td>', html)
    assert sorted(cells) == ["Accepted", "ETpay system error", "Rejected: Amount mismatch"]
    page = admin_client.get(
        reverse("admin:django_etpay_paymentsession_change", args=[paid_session.pk])
    ).content.decode()
    assert "ETpay system error" in page
    assert "Rejected: Amount mismatch" in page


def test_session_changelist_shows_flags_and_formats_amounts_everywhere(
    admin_client: Client, db: Any
) -> None:
    session = make_session(order_amount=6990, needs_reconciliation=True)
    Notification.objects.create(
        session=session,
        channel=Notification.Channel.WEBHOOK,
        outcome=Notification.Outcome.ACCEPTED,
    )
    sessions = admin_client.get(reverse(SESSIONS)).content.decode()
    assert "$6.990" in sessions
    assert "Pending<br><small>to reconcile</small>" in sessions
    notifications = admin_client.get(reverse(NOTIFICATIONS)).content.decode()
    assert "$6.990" in notifications
    page = admin_client.get(
        reverse("admin:django_etpay_paymentsession_change", args=[session.pk])
    ).content.decode()
    assert "$6.990" in page


# -- session page: evidence -------------------------------------------------------------------


def test_session_page_is_read_only_with_no_save_and_no_delete(
    admin_client: Client, paid_session: PaymentSession
) -> None:
    url = reverse("admin:django_etpay_paymentsession_change", args=[paid_session.pk])
    response = admin_client.get(url)
    assert response.status_code == 200
    html = response.content.decode()
    assert "Banco de prueba" in html
    assert "https://pmt.etpay.test/session/tok-admin-1" in html
    _assert_no_secret(html)
    # Nothing can be edited: no input named after a model field, no Save, no Delete.
    assert 'name="status"' not in html
    assert 'name="order_amount"' not in html
    assert 'name="_save"' not in html
    assert 'name="_continue"' not in html
    assert "deletelink" not in html
    # Posting a change does not alter the row.
    assert admin_client.post(url, {"status": "failed", "order_amount": "1"}).status_code == 403
    paid_session.refresh_from_db()
    assert paid_session.status == PaymentSession.Status.PAID
    assert paid_session.order_amount == 125000
    delete_url = reverse("admin:django_etpay_paymentsession_delete", args=[paid_session.pk])
    assert admin_client.post(delete_url, {"post": "yes"}).status_code == 403
    assert PaymentSession.objects.filter(pk=paid_session.pk).exists()


def test_no_bulk_delete_action(admin_client: Client, paid_session: PaymentSession) -> None:
    response = admin_client.get(reverse(SESSIONS))
    actions = [name for name, _label in response.context["action_form"].fields["action"].choices]
    assert "delete_selected" not in actions
    assert {"reconcile_selected", "expire_selected"} <= set(actions)
    response = admin_client.post(
        reverse(SESSIONS),
        {"action": "delete_selected", "_selected_action": [paid_session.pk], "post": "yes"},
    )
    assert PaymentSession.objects.filter(pk=paid_session.pk).exists()


def test_sessions_cannot_be_added_by_hand(admin_client: Client, db: Any) -> None:
    response = admin_client.get(reverse("admin:django_etpay_paymentsession_add"))
    assert response.status_code == 403


def test_payer_rut_and_account_need_the_dedicated_permission(
    paid_session: PaymentSession,
) -> None:
    session_url = reverse("admin:django_etpay_paymentsession_change", args=[paid_session.pk])
    notification = paid_session.notifications.get()
    notification_url = reverse("admin:django_etpay_notification_change", args=[notification.pk])

    plain = staff()
    for url in (session_url, notification_url):
        html = plain.get(url).content.decode()
        assert "111111111" not in html
        assert "11.111.111-1" not in html
        assert "98765432" not in html
        assert "Hidden" in html
    assert "x.y.z" not in plain.get(notification_url).content.decode()
    # What is not personal stays visible.
    assert "OC-700104" in plain.get(notification_url).content.decode()

    trusted = staff("view_payer_data")
    # The session page writes the RUT as Chile does; the notification keeps ETpay's claims.
    for url, rut in ((session_url, "11.111.111-1"), (notification_url, "111111111")):
        html = trusted.get(url).content.decode()
        assert rut in html
        assert "98765432" in html
    assert "x.y.z" in trusted.get(notification_url).content.decode()


def test_actions_need_their_permissions(paid_session: PaymentSession) -> None:
    def actions(client: Client) -> set[str]:
        form = client.get(reverse(SESSIONS)).context["action_form"]
        if form is None:  # Django renders no action bar at all
            return set()
        return {name for name, _label in form.fields["action"].choices if name}

    assert actions(staff()) == set()
    assert actions(staff("reconcile_paymentsession")) == {
        "reconcile_selected",
        "close_unknown_selected",
        "ask_again_selected",
    }
    assert actions(staff("expire_paymentsession")) == {"expire_selected"}


# -- actions ----------------------------------------------------------------------------------


def test_reconcile_action_reports_each_outcome(
    admin_client: Client, db: Any, mocked_responses: Any
) -> None:
    paid_a, paid_b, unchanged, unknown, broken = (
        make_session(needs_reconciliation=True) for _ in range(5)
    )
    already = make_session(status=PaymentSession.Status.PAID, needs_reconciliation=True)
    answers = {
        paid_a.token: [status_entry(paid_a)],
        paid_b.token: [status_entry(paid_b)],
        unchanged.token: [status_entry(unchanged, payment_status="pending-ish")],
        unknown.token: [],
        already.token: [status_entry(already)],
    }

    def reply(request: Any) -> tuple[int, dict[str, str], str]:
        import json

        token = json.loads(request.body)["session_token"]
        if token == broken.token:
            return 503, {}, json.dumps({"message": "maintenance"})
        return 200, {}, json.dumps(answers[token])

    mocked_responses.add_callback("POST", STATUS_URL, callback=reply)
    selected = [paid_a, paid_b, unchanged, unknown, broken, already]
    response = admin_client.post(
        reverse(SESSIONS),
        {"action": "reconcile_selected", "_selected_action": [s.pk for s in selected]},
        follow=True,
    )
    assert response.status_code == 200
    shown = messages_of(response)
    assert shown[0] == (
        "Checked 6 sessions with ETpay: 2 now paid, 2 unchanged, 1 unknown to ETpay, "
        "1 failed to ask."
    )
    assert any("HTTP 503: maintenance" in text for text in shown[1:])
    statuses = dict(
        PaymentSession.objects.filter(pk__in=[s.pk for s in selected]).values_list("pk", "status")
    )
    assert statuses[paid_a.pk] == statuses[paid_b.pk] == PaymentSession.Status.PAID
    assert statuses[unknown.pk] == statuses[broken.pk] == PaymentSession.Status.PENDING
    trace = Notification.objects.get(session=unknown)
    assert trace.reason == Notification.Reason.UNKNOWN_TO_ETPAY


def test_reconcile_action_refuses_huge_selections(
    admin_client: Client, db: Any, mocked_responses: Any
) -> None:
    sessions = [make_session() for _ in range(101)]
    response = admin_client.post(
        reverse(SESSIONS),
        {"action": "reconcile_selected", "_selected_action": [s.pk for s in sessions]},
        follow=True,
    )
    assert "Select at most 100 sessions" in messages_of(response)[0]
    assert len(mocked_responses.calls) == 0


def test_expire_action_expires_only_pending_sessions(
    admin_client: Client, paid_session: PaymentSession
) -> None:
    fresh = make_session()  # pending, younger than SESSION_TTL: staff may still expire it
    response = admin_client.post(
        reverse(SESSIONS),
        {"action": "expire_selected", "_selected_action": [fresh.pk, paid_session.pk]},
        follow=True,
    )
    shown = messages_of(response)
    assert shown == [
        "Expired 1 session.",
        "1 selected session was not pending and was left as it is.",
    ]
    fresh.refresh_from_db()
    paid_session.refresh_from_db()
    assert fresh.status == PaymentSession.Status.EXPIRED
    assert paid_session.status == PaymentSession.Status.PAID
    effect = OutboxEffect.objects.get(session=fresh)
    assert effect.kind == OutboxEffect.Kind.SESSION_EXPIRED


# -- filters ----------------------------------------------------------------------------------


def _age(session: PaymentSession, delta: timedelta) -> None:
    PaymentSession.objects.filter(pk=session.pk).update(created_at=timezone.now() - delta)


def test_needs_attention_filter(admin_client: Client, db: Any) -> None:
    overdue = make_session(merchant_order_id="OVERDUE")
    _age(overdue, timedelta(hours=2))
    flagged = make_session(status=PaymentSession.Status.EXPIRED, needs_reconciliation=True)
    rejected = make_session(status=PaymentSession.Status.PAID)
    Notification.objects.create(
        session=rejected,
        channel=Notification.Channel.WEBHOOK,
        outcome=Notification.Outcome.REJECTED,
        reason=Notification.Reason.BAD_SIGNATURE,
    )
    fine_pending = make_session()
    fine_paid = make_session(status=PaymentSession.Status.PAID)
    Notification.objects.create(
        session=fine_paid,
        channel=Notification.Channel.WEBHOOK,
        outcome=Notification.Outcome.ACCEPTED,
    )
    old_paid = make_session(status=PaymentSession.Status.PAID)
    _age(old_paid, timedelta(days=3))
    # A rejection long ago is history, not a current problem.
    long_ago = make_session(status=PaymentSession.Status.PAID)
    old_rejection = Notification.objects.create(
        session=long_ago,
        channel=Notification.Channel.WEBHOOK,
        outcome=Notification.Outcome.REJECTED,
        reason=Notification.Reason.AMOUNT_MISMATCH,
    )
    Notification.objects.filter(pk=old_rejection.pk).update(
        created_at=timezone.now() - timedelta(days=8)
    )

    def shown(value: str) -> set[int]:
        response = admin_client.get(reverse(SESSIONS), {"attention": value})
        return {session.pk for session in response.context["cl"].result_list}

    assert shown("yes") == {overdue.pk, flagged.pk, rejected.pk}
    assert shown("overdue") == {overdue.pk}
    assert shown("flagged") == {flagged.pk}
    assert shown("rejected") == {rejected.pk}
    assert fine_pending.pk not in shown("yes")
    # Past the id list's size the filter falls back to a subquery, with the same answer.
    with mock.patch.object(NeedsAttentionFilter, "MAX_IDS", 1):
        assert shown("yes") == {overdue.pk, flagged.pk, rejected.pk}
        assert shown("rejected") == {rejected.pk}


def test_notification_filters_and_search(
    admin_client: Client, paid_session: PaymentSession
) -> None:
    other = make_session(merchant_order_id="OC-OTHER")
    Notification.objects.create(
        session=other,
        channel=Notification.Channel.POLL,
        outcome=Notification.Outcome.DUPLICATE,
        reason=Notification.Reason.UNKNOWN_TO_ETPAY,
        payment_token="pay-other",
    )
    url = reverse(NOTIFICATIONS)

    def count(**params: str) -> int:
        result_count: int = admin_client.get(url, params).context["cl"].result_count
        return result_count

    assert count() == 2
    assert count(outcome="accepted") == 1
    assert count(channel="poll") == 1
    assert count(reason="unknown_to_etpay") == 1
    assert count(q="OC-700104") == 1  # by the session's order id
    assert count(q="tok-admin-1") == 1  # by the session's token
    assert count(q="pay-other") == 1  # by the notification's payment token
    assert count(q="nothing-like-it") == 0


def test_notification_claims_are_pretty_printed(
    admin_client: Client, paid_session: PaymentSession
) -> None:
    notification = paid_session.notifications.get()
    html = admin_client.get(
        reverse("admin:django_etpay_notification_change", args=[notification.pk])
    ).content.decode()
    assert "<pre>{\n  &quot;merchant_amount&quot;: 125000," in html


def test_notifications_are_view_only(admin_client: Client, paid_session: PaymentSession) -> None:
    notification = Notification.objects.get()
    change_url = reverse("admin:django_etpay_notification_change", args=[notification.pk])
    response = admin_client.get(change_url)
    assert response.status_code == 200
    html = response.content.decode()
    assert "OC-700104" in html
    assert 'name="_save"' not in html
    assert reverse("admin:django_etpay_paymentsession_change", args=[paid_session.pk]) in html
    _assert_no_secret(html)

    assert admin_client.get(reverse("admin:django_etpay_notification_add")).status_code == 403
    delete_url = reverse("admin:django_etpay_notification_delete", args=[notification.pk])
    assert admin_client.post(delete_url, {"post": "yes"}).status_code == 403
    assert Notification.objects.filter(pk=notification.pk).exists()


def test_effect_admin_redelivers_given_up_effects(admin_client: Client, db: Any) -> None:
    session = make_session(status=PaymentSession.Status.PAID)
    effect = OutboxEffect.objects.create(
        kind=OutboxEffect.Kind.PAYMENT_COMPLETED,
        session=session,
        state=OutboxEffect.State.FAILED,
        attempts=10,
        lease_until=timezone.now() + timedelta(days=1),
        last_error="shop.receivers.fulfil: ConnectionError",
    )
    done = OutboxEffect.objects.create(
        kind=OutboxEffect.Kind.PAYMENT_COMPLETED,
        session=session,
        state=OutboxEffect.State.DONE,
        lease_until=timezone.now(),
    )
    response = admin_client.post(
        reverse("admin:django_etpay_outboxeffect_changelist"),
        {"action": "deliver_again", "_selected_action": [effect.pk, done.pk]},
        follow=True,
    )
    assert messages_of(response) == ["1 effect will be delivered by the next reconcile run."]
    effect.refresh_from_db()
    done.refresh_from_db()
    assert (effect.state, effect.attempts) == (OutboxEffect.State.PENDING, 0)
    assert effect.lease_until <= timezone.now()
    assert done.state == OutboxEffect.State.DONE


# -- scale: bounded queries -------------------------------------------------------------------


def _queries(client: Client, url: str, params: dict[str, str] | None = None) -> list[str]:
    client.get(url, params or {})  # warm-up: per-process caches (content types) fill here
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url, params or {})
    assert response.status_code == 200
    # Transaction control is not a query (Django < 5 wraps the change page in a savepoint).
    control = ("SAVEPOINT", "RELEASE", "ROLLBACK", "BEGIN", "COMMIT")
    return [q["sql"] for q in captured.captured_queries if not q["sql"].startswith(control)]


def _assert_bounded(sql: list[str]) -> None:
    """Every COUNT is over a LIMITed subquery, or the summary's over one page's sessions;
    nothing reads distinct dates or values."""
    for statement in sql:
        upper = statement.upper()
        if "COUNT(" in upper and "GROUP BY" in upper:
            # The per-channel summary: the sessions of the page, whose rows are bounded by
            # the per-session storage budgets.
            assert re.search(r'"?SESSION_ID"? IN \(', upper), statement
        elif "COUNT(" in upper:
            assert "LIMIT" in upper, statement
        assert "DISTINCT" not in upper, statement
        assert "DATE_TRUNC" not in upper, statement
        assert "DJANGO_DATETIME_TRUNC" not in upper, statement


SESSION_VIEWS: list[dict[str, str]] = [
    {},
    {"status__exact": "paid"},
    {"attention": "yes"},
    {"attention": "rejected"},
    {"needs_reconciliation__exact": "1"},
    {"outcome_unknown__exact": "1"},
    {"environment__exact": "production"},
    {"merchant": "outlet"},
    {
        "created_at__gte": "2026-01-01 00:00:00+00:00",
        "created_at__lt": "2027-01-01 00:00:00+00:00",
    },
    {"q": "OC-000001"},
]


@pytest.fixture
def many_sessions(db: Any, settings: Any) -> list[PaymentSession]:
    settings.ETPAY = {
        **settings.ETPAY,
        "MERCHANTS": {
            "outlet": {
                "MERCHANT_CODE": "cl_outlet",
                "MERCHANT_API_TOKEN": "outlet-token",
                "API_URL": "https://api.outlet.test",
                "PMT_URL": "https://pmt.outlet.test",
            }
        },
    }
    sessions = [
        make_session(order_amount=1000 + i, needs_reconciliation=i == 0) for i in range(12)
    ]
    for session in sessions:
        for channel in Notification.Channel.values[:3]:
            Notification.objects.create(
                session=session, channel=channel, outcome=Notification.Outcome.DUPLICATE
            )
    Notification.objects.create(
        session=sessions[1],
        channel=Notification.Channel.WEBHOOK,
        outcome=Notification.Outcome.REJECTED,
        reason=Notification.Reason.AMOUNT_MISMATCH,
    )
    return sessions


@pytest.mark.parametrize("params", SESSION_VIEWS, ids=lambda p: "-".join(p) or "default")
def test_session_changelist_query_count_is_fixed_and_bounded(
    admin_client: Client, many_sessions: list[PaymentSession], params: dict[str, str]
) -> None:
    sql = _queries(admin_client, reverse(SESSIONS), params)
    _assert_bounded(sql)
    # Session and user lookup, the capped count, the page; "needs attention" first fetches
    # the ids it looks up. Then the summary's grouped count of the page's results, when the
    # page lists any session.
    summary = [statement for statement in sql if "GROUP BY" in statement.upper()]
    empty = {"status__exact", "q", "outcome_unknown__exact", "environment__exact", "merchant"}
    assert len(summary) == (0 if params.keys() & empty else 1), sql
    assert len(sql) - len(summary) == (5 if "attention" in params else 4), sql


def test_query_count_does_not_grow_with_rows(
    admin_client: Client, many_sessions: list[PaymentSession]
) -> None:
    before = len(_queries(admin_client, reverse(NOTIFICATIONS)))
    for session in many_sessions:
        Notification.objects.create(
            session=session,
            channel=Notification.Channel.POLL,
            outcome=Notification.Outcome.REJECTED,
            reason=Notification.Reason.BAD_SIGNATURE,
        )
    assert len(_queries(admin_client, reverse(NOTIFICATIONS))) == before == 4
    assert len(_queries(admin_client, reverse(SESSIONS), {"attention": "yes"})) == 6


@pytest.mark.parametrize(
    "params",
    [{}, {"outcome__exact": "rejected"}, {"channel__exact": "poll"}, {"q": "OC-000001"}],
    ids=lambda p: "-".join(p) or "default",
)
def test_notification_changelist_query_count_is_fixed_and_bounded(
    admin_client: Client, many_sessions: list[PaymentSession], params: dict[str, str]
) -> None:
    sql = _queries(admin_client, reverse(NOTIFICATIONS), params)
    _assert_bounded(sql)
    assert len(sql) == 4, sql


def _kinds(sql: list[str]) -> list[str]:
    """Each statement as its kind and the first table it names: ``SELECT django_session``."""
    described = []
    for statement in sql:
        table = re.search(r'\bFROM\s+"?(\w+)"?', statement, re.IGNORECASE)
        count = " COUNT" if "COUNT(" in statement.upper() else ""
        kind = statement.split()[0].upper()
        described.append(f"{kind}{count} {table.group(1) if table else ''}")
    return described


@pytest.mark.parametrize(
    ("url", "table"),
    [(SESSIONS, "django_etpay_paymentsession"), (NOTIFICATIONS, "django_etpay_notification")],
    ids=["sessions", "notifications"],
)
def test_changelist_statements_are_pinned_by_kind(
    admin_client: Client, many_sessions: list[PaymentSession], url: str, table: str
) -> None:
    # Reads only: the signed-in session and user, the capped count (over a LIMITed subquery
    # of the same table), the page; the session list's summary counts the page's results.
    summary = ["SELECT COUNT django_etpay_notification"] if url == SESSIONS else []
    assert _kinds(_queries(admin_client, reverse(url))) == [
        "SELECT django_session",
        "SELECT auth_user",
        f"SELECT COUNT {table}",
        f"SELECT {table}",
        *summary,
    ]


def test_session_page_query_count_is_fixed(
    admin_client: Client, many_sessions: list[PaymentSession]
) -> None:
    url = reverse("admin:django_etpay_paymentsession_change", args=[many_sessions[0].pk])
    sql = _queries(admin_client, url)
    _assert_bounded(sql)
    # Session and user lookup, the session, the ids of its latest notifications, those
    # notifications, its effects, its extra payments, its refunds and their totals.
    assert len(sql) == 9, sql


def test_paginator_stops_counting_at_its_limit(
    many_sessions: list[PaymentSession], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(CappedCountPaginator, "limit", 5)
    paginator = CappedCountPaginator(PaymentSession.objects.order_by("-pk"), 2)
    with CaptureQueriesContext(connection) as captured:
        assert paginator.count == 5
    assert str(paginator.count) == "5+"
    assert paginator.num_pages == 3
    [sql] = [q["sql"] for q in captured.captured_queries]
    assert "LIMIT 6" in sql.upper()
    small = CappedCountPaginator(PaymentSession.objects.filter(pk=many_sessions[0].pk), 2)
    assert small.count == 1
    assert str(small.count) == "1"


def test_session_page_shows_the_latest_results_and_links_to_all(
    admin_client: Client, db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from django_etpay.admin import NotificationInline

    monkeypatch.setattr(NotificationInline, "MAX_SHOWN", 3)
    session = make_session()
    other = make_session()
    for n in range(5):
        Notification.objects.create(
            session=session,
            channel=Notification.Channel.WEBHOOK,
            outcome=Notification.Outcome.DUPLICATE,
            detail=f"replay number {n}",
        )
    Notification.objects.create(
        session=other, channel=Notification.Channel.WEBHOOK, outcome="duplicate"
    )
    page = admin_client.get(reverse("admin:django_etpay_paymentsession_change", args=[session.pk]))
    html = page.content.decode()
    assert [f"replay number {n}" in html for n in range(5)] == [False, False, True, True, True]
    link = f"{reverse(NOTIFICATIONS)}?session={session.pk}"
    assert link in html
    listed = admin_client.get(link).context["cl"].result_list
    assert {n.session_id for n in listed} == {session.pk}
    assert len(listed) == 5


# -- every admin of the app shows evidence only -----------------------------------------------


@pytest.mark.parametrize("model", [PaymentSession, Notification, OutboxEffect])
def test_no_admin_or_inline_of_the_app_adds_changes_or_deletes(
    model: type[Any], rf: Any, admin_user: User
) -> None:
    from django.contrib import admin as django_admin

    model_admin = django_admin.site._registry[model]
    request = rf.get("/")
    request.user = admin_user
    views = [model_admin, *model_admin.get_inline_instances(request, None)]
    for view in views:
        assert view.has_add_permission(request, None) is False, view
        assert view.has_change_permission(request, None) is False, view
        assert view.has_delete_permission(request, None) is False, view


def test_effects_are_view_only(admin_client: Client, paid_session: PaymentSession) -> None:
    effect = OutboxEffect.objects.create(
        session=paid_session,
        kind=OutboxEffect.Kind.PAYMENT_COMPLETED,
        lease_until=timezone.now(),
    )
    change_url = reverse("admin:django_etpay_outboxeffect_change", args=[effect.pk])
    html = admin_client.get(change_url).content.decode()
    assert 'name="_save"' not in html
    assert admin_client.post(change_url, {"state": "done"}).status_code == 403
    assert admin_client.get(reverse("admin:django_etpay_outboxeffect_add")).status_code == 403
    delete_url = reverse("admin:django_etpay_outboxeffect_delete", args=[effect.pk])
    assert admin_client.post(delete_url, {"post": "yes"}).status_code == 403
    effect.refresh_from_db()
    assert effect.state == OutboxEffect.State.PENDING
