"""PaymentSession and Notification: the transition rule, secrets out of str/repr, payment_url,
indexes and migrations."""

from __future__ import annotations

from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import IntegrityError, connection, transaction
from django.db.models import ProtectedError
from pytest_django import Settings

from django_etpay.models import Notification, PaymentSession
from tests.factories import make_session

S = PaymentSession.Status
STATES = [s.value for s in S]

#: The whole rule, spelled out: (current, target) pairs that are allowed. Every other pair of
#: states is refused.
ALLOWED = {
    # A verified success moves any state but paid to paid: money that moved is never dropped.
    ("initializing", "paid"),
    ("pending", "paid"),
    ("failed", "paid"),
    ("expired", "paid"),
    ("error", "paid"),
    # A verified failure moves only pending/expired to failed.
    ("pending", "failed"),
    ("expired", "failed"),
    # Expiry applies to pending sessions only.
    ("pending", "expired"),
}


def test_status_values_are_the_documented_ones() -> None:
    assert STATES == ["initializing", "pending", "paid", "failed", "expired", "error"]
    assert PaymentSession._meta.get_field("status").default == "initializing"


@pytest.mark.parametrize("current", STATES)
@pytest.mark.parametrize("target", STATES)
def test_transition_rule_full_table(current: str, target: str) -> None:
    assert PaymentSession.transition_allowed(current, target) is ((current, target) in ALLOWED)


@pytest.mark.parametrize("target", STATES)
def test_paid_is_final(target: str) -> None:
    assert PaymentSession.transition_allowed(S.PAID, target) is False
    assert PaymentSession(status=S.PAID).is_final is True


@pytest.mark.parametrize("state", [s for s in STATES if s != "paid"])
def test_only_paid_is_final(state: str) -> None:
    assert PaymentSession(status=state).is_final is False


def test_transition_rule_accepts_enum_members() -> None:
    assert PaymentSession.transition_allowed(S.EXPIRED, S.PAID) is True
    assert PaymentSession.transition_allowed(S.FAILED, S.FAILED) is False


@pytest.mark.django_db
def test_str_and_repr_hold_no_secret() -> None:
    session = make_session(signature_token="sig-model-secret-0123456789abcdef0123456789")
    session.refresh_from_db()

    for text in (str(session), repr(session)):
        assert "sig-model-secret" not in text
        assert session.merchant_order_id in text
    assert f"pk={session.pk}" in repr(session)


def test_signature_token_field_is_not_editable_and_says_it_is_secret() -> None:
    field = PaymentSession._meta.get_field("signature_token")

    assert field.editable is False
    assert "Secret" in str(field.help_text)


def test_payment_url_is_empty_without_a_token() -> None:
    assert PaymentSession(token=None).payment_url == ""
    assert PaymentSession(token="").payment_url == ""


def test_payment_url_joins_pmt_url_and_token() -> None:
    assert PaymentSession(token="tok-1").payment_url == "https://pmt.etpay.test/session/tok-1"


@pytest.mark.parametrize(
    "pmt_url", ["https://pmt.etpay.test/cl/funnel", "https://pmt.etpay.test/cl/funnel/"]
)
def test_payment_url_keeps_a_path_prefix(settings: Settings, pmt_url: str) -> None:
    settings.ETPAY = {**settings.ETPAY, "PMT_URL": pmt_url}

    assert (
        PaymentSession(token="tok-2").payment_url
        == "https://pmt.etpay.test/cl/funnel/session/tok-2"
    )


def test_payment_url_uses_the_sessions_merchant_alias(settings: Settings) -> None:
    settings.ETPAY = {
        **settings.ETPAY,
        "MERCHANTS": {
            "outlet": {
                "MERCHANT_CODE": "cl_outlet",
                "MERCHANT_API_TOKEN": "outlet-token",
                "API_URL": "https://outlet-api.etpay.test",
                "PMT_URL": "https://pmt-outlet.etpay.test/",
            }
        },
    }

    assert (
        PaymentSession(merchant="outlet", token="tok-3").payment_url
        == "https://pmt-outlet.etpay.test/session/tok-3"
    )
    assert PaymentSession(token="tok-3").payment_url == "https://pmt.etpay.test/session/tok-3"


def test_order_amount_is_an_integer_column() -> None:
    field = PaymentSession._meta.get_field("order_amount")
    assert field.get_internal_type() == "PositiveBigIntegerField"


@pytest.mark.django_db
def test_token_is_unique() -> None:
    make_session(token="tok-dup")

    with pytest.raises(IntegrityError), transaction.atomic():
        make_session(token="tok-dup")


@pytest.mark.django_db
def test_many_sessions_may_wait_without_a_token() -> None:
    make_session(token=None, status=S.INITIALIZING)
    make_session(token=None, status=S.ERROR)

    assert PaymentSession.objects.filter(token__isnull=True).count() == 2


@pytest.mark.django_db
def test_a_negative_amount_is_refused_by_the_database() -> None:
    with pytest.raises(IntegrityError), transaction.atomic():
        make_session(order_amount=-1)


@pytest.mark.django_db
def test_indexes_exist_in_the_database() -> None:
    table = PaymentSession._meta.db_table
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, table)

    indexed = {tuple(c["columns"]) for c in constraints.values() if c["index"] or c["unique"]}
    unique = {tuple(c["columns"]) for c in constraints.values() if c["unique"]}
    assert ("token",) in unique
    assert ("merchant_order_id",) in indexed
    assert ("status", "created_at") in indexed


@pytest.mark.django_db
def test_migrations_match_the_models() -> None:
    out = StringIO()

    call_command("makemigrations", "django_etpay", "--check", "--dry-run", stdout=out)

    assert "No changes detected" in out.getvalue()


def test_migrations_are_hand_named() -> None:
    folder = Path(__file__).resolve().parent.parent / "django_etpay" / "migrations"
    names = sorted(p.stem for p in folder.glob("0*.py"))

    assert names
    # Django's default names say nothing about what a migration does.
    assert not [name for name in names if "_auto_" in name or name.endswith("_initial")]


# -- Notification ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_notification_keeps_rejected_results_without_a_session() -> None:
    note = Notification.objects.create(
        channel=Notification.Channel.WEBHOOK,
        outcome=Notification.Outcome.REJECTED,
        reason=Notification.Reason.UNKNOWN_SESSION,
        raw_body='{"payment": "x.y.z"}',
    )
    note.refresh_from_db()

    assert note.session is None
    assert str(note) == "Webhook (server to server) rejected: unknown_session"
    assert "channel=webhook" in repr(note)
    assert "unknown_session" in repr(note)


@pytest.mark.django_db
def test_a_session_with_notifications_cannot_be_deleted() -> None:
    session = make_session()
    Notification.objects.create(
        session=session,
        channel=Notification.Channel.POLL,
        outcome=Notification.Outcome.ACCEPTED,
    )

    with pytest.raises(ProtectedError), transaction.atomic():
        session.delete()
    assert session.notifications.count() == 1


def test_notification_choices() -> None:
    assert [c.value for c in Notification.Channel] == ["webhook", "redirect", "widget", "poll"]
    assert [o.value for o in Notification.Outcome] == ["accepted", "duplicate", "rejected"]
