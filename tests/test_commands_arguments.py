"""Every management command answers a bad argument with a ``CommandError`` that names it, and
does nothing else: no session expired, purged, asked about or re-encrypted, no server started."""

from __future__ import annotations

import io
from datetime import timedelta
from typing import Any
from unittest import mock

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from django_etpay.models import PaymentSession
from tests.factories import make_session

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


@pytest.fixture
def old_pending() -> PaymentSession:
    """A pending session two days old: what expire and reconcile would act on."""
    session = make_session()
    PaymentSession.objects.filter(pk=session.pk).update(
        created_at=timezone.now() - timedelta(days=2)
    )
    return session


BAD_BATCH_SIZES = ["0", "-1", "-500"]
BAD_DURATIONS = ["soon", "-5m", "5x", "", "m"]


@pytest.mark.parametrize("command", ["etpay_expire", "etpay_purge", "etpay_reconcile"])
@pytest.mark.parametrize("size", BAD_BATCH_SIZES)
def test_a_batch_size_below_one_is_refused(
    command: str, size: str, old_pending: PaymentSession
) -> None:
    with (
        mock.patch("django_etpay.client.EtpayClient.check_payment_status") as ask,
        pytest.raises(CommandError, match="--batch-size must be at least 1"),
    ):
        run(command, f"--batch-size={size}")
    ask.assert_not_called()
    old_pending.refresh_from_db()
    assert old_pending.status == PaymentSession.Status.PENDING


@pytest.mark.parametrize("size", BAD_BATCH_SIZES)
def test_rotate_keys_refuses_a_batch_size_below_one(size: str) -> None:
    make_session()
    with (
        mock.patch("django_etpay.crypto.rotate") as rotate,
        pytest.raises(CommandError, match="--batch-size must be at least 1"),
    ):
        run("etpay_rotate_keys", f"--batch-size={size}")
    rotate.assert_not_called()


@pytest.mark.parametrize(
    ("command", "option"),
    [
        ("etpay_expire", "--older-than"),
        ("etpay_reconcile", "--older-than"),
        ("etpay_reconcile", "--max-age"),
    ],
)
@pytest.mark.parametrize("value", BAD_DURATIONS)
def test_a_bad_duration_is_refused_with_the_value_and_examples(
    command: str, option: str, value: str, old_pending: PaymentSession
) -> None:
    with pytest.raises(CommandError) as excinfo:
        run(command, f"{option}={value}")
    message = str(excinfo.value)
    assert option in message
    assert "such as 30m, 2h or 7d" in message
    old_pending.refresh_from_db()
    assert old_pending.status == PaymentSession.Status.PENDING


@pytest.mark.parametrize("days", ["0", "-3"])
def test_purge_refuses_an_age_below_one_day(days: str) -> None:
    with pytest.raises(CommandError, match="at least one day"):
        run("etpay_purge", f"--days={days}")


@pytest.mark.parametrize(
    ("command", "option"), [("etpay_purge", "--days"), ("etpay_rotate_keys", "--batch-size")]
)
def test_a_number_that_is_not_one_is_refused(command: str, option: str) -> None:
    with pytest.raises(CommandError, match=f"argument {option}: invalid int value: 'many'"):
        run(command, f"{option}=many")


@pytest.mark.parametrize("command", ["etpay_reconcile", "etpay_check"])
def test_an_unknown_merchant_is_refused(command: str) -> None:
    with (
        mock.patch("django_etpay.client.EtpayClient.check_payment_status") as ask,
        pytest.raises(CommandError, match="Unknown merchant alias 'nobody'"),
    ):
        run(command, "--merchant=nobody")
    ask.assert_not_called()


@pytest.mark.parametrize(
    ("option", "value"), [("--limit", "0"), ("--limit", "-1"), ("--max-errors", "-1")]
)
def test_reconcile_refuses_a_limit_below_one_and_negative_max_errors(
    option: str, value: str, old_pending: PaymentSession
) -> None:
    with (
        mock.patch("django_etpay.client.EtpayClient.check_payment_status") as ask,
        pytest.raises(CommandError, match=f"{option} must be at least"),
    ):
        run("etpay_reconcile", f"{option}={value}")
    ask.assert_not_called()


@pytest.mark.parametrize("port", ["0", "-1", "65536", "99999"])
def test_the_sandbox_refuses_a_port_outside_1_to_65535(port: str, settings: Any) -> None:
    settings.ETPAY = {**settings.ETPAY, "ENVIRONMENT": "sandbox"}
    with (
        mock.patch("os.execve") as became_the_sandbox,
        pytest.raises(CommandError, match="--port must be between 1 and 65535"),
    ):
        run("etpay_sandbox", f"--port={port}")
    became_the_sandbox.assert_not_called()


def test_good_arguments_still_run(old_pending: PaymentSession) -> None:
    # The refusals above are not a command refusing everything.
    assert "1" in run("etpay_expire", "--older-than=1h", "--batch-size=1", "--dry-run")
    run("etpay_rotate_keys", "--batch-size=1")
