"""Every error django_etpay raises on purpose.

Messages are built only from data that carries no secret: neither ``merchant_api_token`` nor a
``signature_token`` ever appears in ``str(exc)`` or ``repr(exc)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from django.core.exceptions import ImproperlyConfigured, SuspiciousOperation


class EtpayConfigurationError(ImproperlyConfigured):
    """A required ``ETPAY`` setting is missing or invalid.

    Deliberately outside :class:`EtpayError`: a broad ``except EtpayError`` in a checkout view
    must never hide a broken configuration.
    """


class EtpayError(Exception):
    """Base class for every error django_etpay raises on purpose."""


class EtpayValidationError(EtpayError, ValueError):
    """Input to a service was rejected before anything was sent to ETpay.

    ``errors`` maps each bad field to the list of problems found with it.
    """

    def __init__(self, errors: Mapping[str, Sequence[str]]) -> None:
        self.errors: dict[str, list[str]] = {k: list(v) for k, v in errors.items()}
        detail = "; ".join(f"{name}: {' '.join(msgs)}" for name, msgs in self.errors.items())
        super().__init__(f"Invalid ETpay session data: {detail}")


class EtpayAPIError(EtpayError):
    """A call to ETpay's API failed.

    ``outcome_unknown`` is true when the request may have reached ETpay and been acted upon
    (read timeout, 5xx, unreadable reply): ETpay may have created a session, so the call must
    not be blindly repeated and the session needs reconciling.
    """

    #: Short machine-readable reason, stored on the session row.
    code: str = "api_error"
    #: The primary key of the ``PaymentSession`` row kept with the reason, when the error was
    #: raised by :func:`~django_etpay.services.initialize_session` (``None`` otherwise).
    session_id: int | None = None

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        outcome_unknown: bool = False,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.outcome_unknown = outcome_unknown


class EtpayTimeoutError(EtpayAPIError):
    """ETpay did not answer in time (connect, read or total deadline)."""

    code = "timeout"


class EtpayConnectionError(EtpayAPIError):
    """The connection to ETpay failed or was cut."""

    code = "connection"


class EtpayHTTPError(EtpayAPIError):
    """ETpay answered with an HTTP error status.

    ``etpay_message`` is the ``message`` field of ETpay's JSON error body, when it sent one;
    ``retry_after`` the seconds its ``Retry-After`` header asked to wait (a 429 or a 503),
    ``None`` without one.
    """

    code = "http_error"

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        etpay_message: str | None = None,
        outcome_unknown: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status_code=status_code, outcome_unknown=outcome_unknown)
        self.etpay_message = etpay_message
        self.retry_after = retry_after


class EtpayResponseError(EtpayAPIError):
    """ETpay's reply could not be used: not JSON, too large, or missing required fields."""

    code = "bad_response"


class EtpaySecretUnavailableError(EtpayError):
    """A stored secret (a session's ``signature_token``) cannot be decrypted.

    None of the configured keys (``ETPAY["SIGNATURE_KEYS"]``, or keys derived from
    ``SECRET_KEY`` and ``SECRET_KEY_FALLBACKS``) opens it: a key was removed too early, the
    settings differ between servers, or the row was written by hand. The message names the
    session, never a key or the stored value.
    """


class EtpayVerificationError(EtpayError, SuspiciousOperation):
    """A result from ETpay failed verification (signature, claims or cross-checks).

    ``reason`` is one of the :class:`~django_etpay.models.Notification.Reason` values.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class EtpayRefundError(EtpayError):
    """A refund could not be requested or settled (see :mod:`django_etpay.refunds`).

    Nothing was recorded or changed when it is raised.
    """


class EtpayRefundNotAllowedError(EtpayRefundError):
    """The session is not paid: only money that arrived can be given back."""


class EtpayRefundAmountError(EtpayRefundError, ValueError):
    """The amount is not a positive integer, or exceeds what is left to refund.

    ``available`` is what may still be refunded on the session (the amount paid minus every
    requested or completed refund), when the session was read; ``None`` when the amount itself
    was invalid.
    """

    def __init__(self, message: str, *, available: int | None = None) -> None:
        super().__init__(message)
        self.available = available


class EtpayRefundStateError(EtpayRefundError):
    """The refund was already completed or failed; both are final.

    ``state`` is the state the refund was found in.
    """

    def __init__(self, message: str, *, state: str) -> None:
        super().__init__(message)
        self.state = state
