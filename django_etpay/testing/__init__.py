"""Helpers for a shop's own tests: ETpay's signed results and a fake ETpay, without network.

::

    from django_etpay.testing import FakeEtpay, sign_result

    with FakeEtpay() as etpay:                      # every call to ETpay stays in the process
        session = initialize_session("OC-1", 15990)  # answered by the fake, like ETpay would
        etpay.pay(session)                           # the payer approves at ETpay
        etpay.notify(session)                        # ETpay's webhook reaches your URLconf

:func:`sign_result` mints the JWT ETpay sends for a session (a success, a failure or ETpay's
system error), signed the way ETpay signs it, for tests that post results themselves.
:class:`FakeEtpay` answers ``/session/initialize`` and ``/merchant/check_payment_status`` for
every :class:`~django_etpay.client.EtpayClient` of the process, the shared ones of
:func:`~django_etpay.client.get_client` included, so ``initialize_session``,
``reconcile_session``, ``etpay_reconcile`` and ``etpay_check`` run unchanged against it. The
pytest fixtures are in :mod:`django_etpay.testing.pytest_plugin` (opt-in).

Like ETpay's sandbox of the same name, the fake keeps nothing secret from the test that owns
it, except the merchant API token: :attr:`FakeEtpay.calls` shows every body sent, with
``merchant_api_token`` redacted, so that an assertion message never prints it.
"""

from __future__ import annotations

from django_etpay.testing.fake import REDACTED, FakeCall, FakeEtpay, FakeSession
from django_etpay.testing.results import (
    MERCHANT_CLAIMS,
    OMIT,
    PAYER_CLAIMS,
    ResultStatus,
    SessionLike,
    payment_claims,
    sign_result,
)

__all__ = [
    "MERCHANT_CLAIMS",
    "OMIT",
    "PAYER_CLAIMS",
    "REDACTED",
    "FakeCall",
    "FakeEtpay",
    "FakeSession",
    "ResultStatus",
    "SessionLike",
    "payment_claims",
    "sign_result",
]
