"""The refund ledger (django_etpay.refunds): partial refunds within the amount paid, settled
once."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from unittest import mock

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.db import transaction
from django.utils import timezone
from pytest_django import Settings

from django_etpay import checks, operations, refunds
from django_etpay.exceptions import (
    EtpayConfigurationError,
    EtpayError,
    EtpayRefundAmountError,
    EtpayRefundError,
    EtpayRefundNotAllowedError,
    EtpayRefundStateError,
)
from django_etpay.models import PaymentSession, Refund
from tests.factories import make_session

# Real commits: the signals and the backend run after commit, as they do in production.
pytestmark = pytest.mark.django_db(transaction=True)

State = Refund.State

#: Calls of the backend below (reset by the fixture).
BACKEND_CALLS: list[Refund] = []


def recording_backend(refund: Refund) -> None:
    """A function backend: records what it was handed."""
    BACKEND_CALLS.append(refund)


class CompletingBackend(refunds.RefundBackend):
    """A class backend that settles the refund at once, as a Payouts client would."""

    def request(self, refund: Refund) -> None:
        refunds.complete_refund(refund, reference=f"payout-{refund.pk}")


class BrokenBackend(refunds.RefundBackend):
    def request(self, refund: Refund) -> None:
        raise TimeoutError("no answer")


NOT_A_BACKEND = 42


class NoRequestMethod:
    pass


@pytest.fixture(autouse=True)
def _backend_calls() -> None:
    BACKEND_CALLS.clear()


def paid_session(amount: int = 50000) -> PaymentSession:
    return make_session(
        status=PaymentSession.Status.PAID, order_amount=amount, payment_token="pay-1"
    )


# -- requesting -------------------------------------------------------------------------------


def test_partial_refunds_add_up_to_the_amount_paid_and_no_more(
    receivers: dict[str, mock.MagicMock],
) -> None:
    session = paid_session(10000)

    first = refunds.request_refund(session, 3000, reason="one item back")
    second = refunds.request_refund(session, 7000, reason="the rest")

    assert (first.state, first.amount, second.amount) == (State.REQUESTED, 3000, 7000)
    assert refunds.refundable_amount(session) == 0
    with pytest.raises(EtpayRefundAmountError) as raised:
        refunds.request_refund(session, 1, reason="one peso too many")
    assert raised.value.available == 0
    assert Refund.objects.filter(session=session).count() == 2
    assert receivers["refund_requested"].call_count == 2


def test_an_amount_over_what_is_left_says_how_much_is_left() -> None:
    session = paid_session(10000)
    refunds.request_refund(session, 2500, reason="damaged box")

    with pytest.raises(EtpayRefundAmountError) as raised:
        refunds.request_refund(session, 7501, reason="too much")

    assert raised.value.available == 7500
    assert "7500" in str(raised.value)
    # Exactly what is left is fine.
    assert refunds.request_refund(session, 7500, reason="the rest").amount == 7500


def test_failed_refunds_do_not_count_and_completed_ones_do() -> None:
    session = paid_session(10000)
    failed = refunds.request_refund(session, 10000, reason="all")
    refunds.fail_refund(failed, reason="payer account closed")

    assert refunds.refundable_amount(session) == 10000
    done = refunds.request_refund(session, 6000, reason="again, to another account")
    refunds.complete_refund(done, reference="ETP-1")

    assert refunds.refunded_amount(session) == 6000
    assert refunds.pending_refund_amount(session) == 0
    assert refunds.refundable_amount(session) == 4000
    with pytest.raises(EtpayRefundAmountError):
        refunds.request_refund(session, 4001, reason="over")


@pytest.mark.parametrize(
    "status",
    [
        PaymentSession.Status.PENDING,
        PaymentSession.Status.FAILED,
        PaymentSession.Status.EXPIRED,
        PaymentSession.Status.ERROR,
        PaymentSession.Status.INITIALIZING,
    ],
)
def test_only_paid_sessions_can_be_refunded(
    status: str, receivers: dict[str, mock.MagicMock]
) -> None:
    session = make_session(status=status)

    with pytest.raises(EtpayRefundNotAllowedError, match=status):
        refunds.request_refund(session, 100, reason="not paid")

    assert not Refund.objects.exists()
    assert refunds.refundable_amount(session) == 0
    receivers["refund_requested"].assert_not_called()


def test_the_status_is_read_from_the_database_not_the_instance() -> None:
    session = paid_session()
    PaymentSession.objects.filter(pk=session.pk).update(status=PaymentSession.Status.PENDING)

    with pytest.raises(EtpayRefundNotAllowedError):
        refunds.request_refund(session, 100, reason="stale instance")


def test_the_amount_paid_is_read_from_the_database_not_the_instance() -> None:
    session = paid_session(10000)
    session.order_amount = 99999  # an instance changed in memory pays nothing more

    with pytest.raises(EtpayRefundAmountError):
        refunds.request_refund(session, 10001, reason="more than paid")


@pytest.mark.parametrize("amount", [0, -1, True, 1.5, "100", None])
def test_the_amount_must_be_a_positive_integer(amount: Any) -> None:
    session = paid_session()

    with pytest.raises(EtpayRefundAmountError) as raised:
        refunds.request_refund(session, amount, reason="bad amount")

    assert raised.value.available is None
    assert not Refund.objects.exists()


@pytest.mark.parametrize("reason", ["", "   ", None])
def test_a_refund_needs_a_reason(reason: Any) -> None:
    session = paid_session()

    with pytest.raises(EtpayRefundError, match="reason"):
        refunds.request_refund(session, 100, reason=reason)

    assert not Refund.objects.exists()


def test_who_asked_is_kept_and_anonymous_is_nobody() -> None:
    session = paid_session()
    user = get_user_model().objects.create_user("clerk", password="x")

    by_clerk = refunds.request_refund(session, 100, reason="r", user=user)
    by_nobody = refunds.request_refund(session, 100, reason="r", user=AnonymousUser())
    by_code = refunds.request_refund(session, 100, reason="  spaces trimmed  ")

    assert Refund.objects.get(pk=by_clerk.pk).requested_by == user
    assert Refund.objects.get(pk=by_nobody.pk).requested_by is None
    assert Refund.objects.get(pk=by_code.pk).reason == "spaces trimmed"


def test_the_errors_belong_to_the_tree() -> None:
    assert issubclass(EtpayRefundError, EtpayError)
    for error in (EtpayRefundNotAllowedError, EtpayRefundAmountError, EtpayRefundStateError):
        assert issubclass(error, EtpayRefundError)
    assert issubclass(EtpayRefundAmountError, ValueError)


# -- signals and the backend ------------------------------------------------------------------


def test_refund_requested_is_sent_after_commit_only(
    receivers: dict[str, mock.MagicMock],
) -> None:
    session = paid_session()

    with transaction.atomic():
        refund = refunds.request_refund(session, 100, reason="r")
        receivers["refund_requested"].assert_not_called()
    receivers["refund_requested"].assert_called_once()
    kwargs = receivers["refund_requested"].call_args.kwargs
    assert kwargs["refund"] is refund
    assert kwargs["session"] is session
    assert receivers["refund_requested"].call_args.args == ()
    assert kwargs["sender"] is Refund

    def rolled_back() -> None:
        with transaction.atomic():
            refunds.request_refund(session, 200, reason="rolled back")
            raise RuntimeError

    with pytest.raises(RuntimeError):
        rolled_back()
    assert receivers["refund_requested"].call_count == 1
    assert list(Refund.objects.values_list("amount", flat=True)) == [100]


def test_the_default_backend_records_and_waits(caplog: pytest.LogCaptureFixture) -> None:
    session = paid_session()

    with caplog.at_level("INFO", logger="django_etpay"):
        refund = refunds.request_refund(session, 100, reason="r")

    assert Refund.objects.get(pk=refund.pk).state == State.REQUESTED
    assert "back-office" in caplog.text
    assert refunds.get_backend().__func__ is refunds.ManualRefundBackend.request  # type: ignore[attr-defined]


def test_a_function_backend_is_handed_the_refund(settings: Settings) -> None:
    settings.ETPAY = {**settings.ETPAY, "REFUND_BACKEND": f"{__name__}.recording_backend"}
    session = paid_session()

    refund = refunds.request_refund(session, 100, reason="r")

    assert [refund] == BACKEND_CALLS


def test_a_backend_may_settle_the_refund_at_once(
    settings: Settings, receivers: dict[str, mock.MagicMock]
) -> None:
    settings.ETPAY = {**settings.ETPAY, "REFUND_BACKEND": f"{__name__}.CompletingBackend"}
    session = paid_session()

    refund = refunds.request_refund(session, 100, reason="r")

    stored = Refund.objects.get(pk=refund.pk)
    assert (stored.state, stored.reference) == (State.COMPLETED, f"payout-{refund.pk}")
    assert receivers["refund_requested"].call_count == 1
    assert receivers["refund_completed"].call_count == 1


def test_a_backend_that_raises_leaves_the_refund_requested(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    settings.ETPAY = {**settings.ETPAY, "REFUND_BACKEND": f"{__name__}.BrokenBackend"}
    session = paid_session()

    refund = refunds.request_refund(session, 100, reason="r")

    assert Refund.objects.get(pk=refund.pk).state == State.REQUESTED
    assert "TimeoutError" in caplog.text
    assert "stays requested" in caplog.text


@pytest.mark.parametrize(
    "path",
    [f"{__name__}.NOT_A_BACKEND", f"{__name__}.NoRequestMethod", "no.such.module.Backend", 7, ""],
)
def test_a_bad_backend_is_a_configuration_error_and_a_check(settings: Settings, path: Any) -> None:
    settings.ETPAY = {**settings.ETPAY, "REFUND_BACKEND": path}

    with pytest.raises(EtpayConfigurationError, match="REFUND_BACKEND"):
        refunds.get_backend()
    [message] = checks.check_refunds()
    assert message.id == "django_etpay.E201"
    with pytest.raises(SystemCheckError, match=r"django_etpay\.E201"):
        call_command("check")


def test_the_default_backend_passes_the_check() -> None:
    assert checks.check_refunds() == []


# -- settling ---------------------------------------------------------------------------------


def test_complete_refund_keeps_the_reference_and_is_final(
    receivers: dict[str, mock.MagicMock],
) -> None:
    refund = refunds.request_refund(paid_session(), 100, reason="r")

    refunds.complete_refund(refund, reference=" ETP-778 ")

    stored = Refund.objects.get(pk=refund.pk)
    assert (stored.state, stored.reference) == (State.COMPLETED, "ETP-778")
    assert stored.completed_at is not None
    assert stored.failed_at is None
    assert refund.state == State.COMPLETED  # the instance follows
    receivers["refund_completed"].assert_called_once()
    assert receivers["refund_completed"].call_args.kwargs["refund"] is refund
    for settle in (
        lambda: refunds.complete_refund(refund, reference="again"),
        lambda: refunds.fail_refund(refund, reason="too late"),
    ):
        with pytest.raises(EtpayRefundStateError) as raised:
            settle()
        assert raised.value.state == State.COMPLETED
    assert Refund.objects.get(pk=refund.pk).reference == "ETP-778"
    assert receivers["refund_completed"].call_count == 1
    receivers["refund_failed"].assert_not_called()


def test_fail_refund_keeps_the_reason_and_is_final(receivers: dict[str, mock.MagicMock]) -> None:
    refund = refunds.request_refund(paid_session(), 100, reason="r")

    refunds.fail_refund(refund, reason="account closed")

    stored = Refund.objects.get(pk=refund.pk)
    assert (stored.state, stored.failure_reason) == (State.FAILED, "account closed")
    assert stored.failed_at is not None
    receivers["refund_failed"].assert_called_once()
    with pytest.raises(EtpayRefundStateError) as raised:
        refunds.complete_refund(refund, reference="ETP-1")
    assert raised.value.state == State.FAILED
    assert Refund.objects.get(pk=refund.pk).state == State.FAILED
    receivers["refund_completed"].assert_not_called()


def test_a_stale_instance_cannot_settle_twice() -> None:
    refund = refunds.request_refund(paid_session(), 100, reason="r")
    stale = Refund.objects.get(pk=refund.pk)
    refunds.fail_refund(refund, reason="closed")

    with pytest.raises(EtpayRefundStateError):
        refunds.complete_refund(stale, reference="ETP-2")

    assert Refund.objects.get(pk=refund.pk).state == State.FAILED


@pytest.mark.parametrize("reference", ["", "  ", None, "x" * 256])
def test_complete_refund_needs_a_reference(reference: Any) -> None:
    refund = refunds.request_refund(paid_session(), 100, reason="r")

    with pytest.raises(EtpayRefundError, match="reference"):
        refunds.complete_refund(refund, reference=reference)

    assert Refund.objects.get(pk=refund.pk).state == State.REQUESTED


def test_fail_refund_needs_a_reason() -> None:
    refund = refunds.request_refund(paid_session(), 100, reason="r")

    with pytest.raises(EtpayRefundError, match="reason"):
        refunds.fail_refund(refund, reason=" ")

    assert Refund.objects.get(pk=refund.pk).state == State.REQUESTED


def test_repr_and_str_name_the_refund() -> None:
    refund = refunds.request_refund(paid_session(), 100, reason="r")

    assert repr(refund) == (
        f"<Refund pk={refund.pk} session={refund.session_id} amount=100 state=requested>"
    )
    assert str(refund) == f"Refund {refund.pk} of 100 for session {refund.session_id} (requested)"


# -- purge ------------------------------------------------------------------------------------


def test_purge_keeps_the_refunds_of_a_purged_session() -> None:
    session = paid_session(10000)
    done = refunds.request_refund(session, 4000, reason="returned goods")
    refunds.complete_refund(done, reference="ETP-31")
    open_one = refunds.request_refund(session, 1000, reason="late delivery")
    PaymentSession.objects.filter(pk=session.pk).update(
        created_at=timezone.now() - timedelta(days=40)
    )

    summary = operations.purge_personal_data(timedelta(days=30))

    assert summary.sessions == 1
    session.refresh_from_db()
    assert session.purged_at is not None
    assert session.customer_email == ""
    kept = {r.pk: (r.amount, r.state, r.reason, r.reference) for r in Refund.objects.all()}
    assert kept == {
        done.pk: (4000, State.COMPLETED, "returned goods", "ETP-31"),
        open_one.pk: (1000, State.REQUESTED, "late delivery", ""),
    }
    assert refunds.refunded_amount(session) == 4000
    assert refunds.refundable_amount(session) == 5000
