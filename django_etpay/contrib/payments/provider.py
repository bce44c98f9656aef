"""``EtpayProvider``: ETpay as a django-payments provider.

The provider never decides on its own whether a payment succeeded. It opens ETpay sessions
with :func:`django_etpay.services.initialize_session`, hands the results that reach
django-payments' ``process_data`` URL to this app's verified pipeline, and the ``Payment``
status follows this app's signals (:mod:`django_etpay.contrib.payments.receivers`).
"""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin

from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse, HttpResponseBase, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from payments import PaymentError, PaymentStatus, RedirectNeeded
from payments.core import BasicProvider, get_base_url

from django_etpay import conf, refunds, services, tokens
from django_etpay.exceptions import (
    EtpayAPIError,
    EtpayError,
    EtpayRefundError,
    EtpayVerificationError,
)
from django_etpay.models import Notification, PaymentSession
from django_etpay.views import NotificationView, ResultBodyError, ResultStateMixin, ReturnView

if TYPE_CHECKING:
    from payments.models import BasePayment

logger = logging.getLogger("django_etpay.contrib.payments")

Status = PaymentSession.Status

#: Statuses that become ``INPUT`` when the payer is sent to ETpay (again).
_RETRYABLE = (PaymentStatus.WAITING, PaymentStatus.REJECTED, PaymentStatus.ERROR)

#: The ``metadata`` entry that names the ``Payment`` a session was opened for (not shown).
PAYMENT_METADATA_NAME = "django_payments_payment"


class EtpayProvider(BasicProvider):  # type: ignore[misc]  # django-payments ships no types
    """A django-payments provider that takes payments through ETpay.

    Configure it as a variant::

        PAYMENT_VARIANTS = {
            "etpay": ("django_etpay.contrib.payments.EtpayProvider", {"merchant": None}),
        }

    Options:

    - ``merchant``: the alias in ``ETPAY["MERCHANTS"]`` (``None``: the default account).
    - ``check_status_on_return``: when the payer comes back and no verified result is known
      yet, ask ETpay's status API once (:func:`~django_etpay.services.reconcile_session`)
      before deciding where to send them (default ``True``).
    - ``capture``: must stay ``True``; ETpay transfers have no pre-authorisation.

    Each ``Payment`` is linked to its ETpay sessions by ``merchant_order_id`` (the payment's
    ``token``) and by a hidden metadata entry with its primary key. The amount is
    ``payment.total`` in whole pesos: a total with cents is refused.
    """

    def __init__(
        self,
        merchant: str | None = None,
        *,
        check_status_on_return: bool = True,
        capture: bool = True,
    ) -> None:
        if not capture:
            raise ImproperlyConfigured(
                "EtpayProvider cannot pre-authorise: ETpay bank transfers are captured when "
                "the payer pays (leave capture=True)."
            )
        super().__init__(capture=True)
        # Validated now, so that a wrong alias fails at the first use of the variant.
        self.merchant = conf.get_merchant(merchant).alias
        self.check_status_on_return = check_status_on_return

    # -- sending the payer to ETpay ---------------------------------------------------------

    def get_form(self, payment: BasePayment, data: Any = None) -> Any:
        """Open (or reuse) the payment's ETpay session and redirect the payer to ETpay.

        Always raises :class:`~payments.RedirectNeeded`: to ETpay's payment page, or to the
        success URL when the payment is already confirmed. A session of this payment that is
        still ``pending`` is reused, so reloading the checkout does not open a second one.
        The payment becomes ``INPUT`` (also after a rejected or failed attempt, which this one
        retries). A failure to open the session moves the payment to ``ERROR`` and raises
        :class:`~payments.PaymentError` with this app's (secret-free) message.
        """
        if payment.status == PaymentStatus.CONFIRMED:
            raise RedirectNeeded(payment.get_success_url())
        session = self.sessions_of(payment).filter(status=Status.PENDING).first()
        if session is None:
            session = self.open_session(payment)
        if payment.status in _RETRYABLE:
            # The payer is at ETpay now: a new attempt after a failure is open again.
            payment.change_status(PaymentStatus.INPUT)
        raise RedirectNeeded(session.payment_url)

    def open_session(self, payment: BasePayment) -> PaymentSession:
        """Create the ETpay session for ``payment`` (through ``initialize_session``)."""
        amount = self.amount_of(payment)
        # The account's own currency (CLP for Chile, MXN for Mexico), not the global setting.
        currency = conf.account_currency(self.merchant or None)
        if str(payment.currency).upper() != currency:
            raise self.fail(
                payment,
                f"ETpay takes payments in {currency}, not {payment.currency!r}.",
                "currency",
            )
        return_url = self.get_return_url(payment)
        metadata: list[dict[str, Any]] = [
            {"name": PAYMENT_METADATA_NAME, "value": str(payment.pk), "show": False}
        ]
        if payment.description:
            metadata.append({"name": "Description", "value": payment.description, "show": True})
        try:
            session = services.initialize_session(
                merchant_order_id=str(payment.token),
                order_amount=amount,
                customer_email=payment.billing_email or None,
                metadata=metadata,
                payment_completed_url=return_url,
                payment_cancellation_url=return_url,
                payment_webhook_url=self.get_webhook_url(),
                merchant=self.merchant or None,
            )
        except EtpayError as err:
            raise self.fail(payment, str(err), getattr(err, "code", "") or "etpay") from None
        payment.attrs.etpay_session_id = session.pk
        payment.save(update_fields=["extra_data"])
        return session

    def get_webhook_url(self) -> str:
        """The absolute URL of this app's ``notification`` view, on django-payments' host."""
        return urljoin(str(get_base_url()), reverse("django_etpay:notification"))

    @staticmethod
    def amount_of(payment: BasePayment) -> int:
        """``payment.total`` as whole pesos; :class:`~payments.PaymentError` with cents."""
        total = Decimal(payment.total)
        if total != total.to_integral_value() or total <= 0:
            raise EtpayProvider.fail(
                payment, "ETpay amounts are whole, positive amounts without cents.", "amount"
            )
        return int(total)

    @staticmethod
    def fail(payment: BasePayment, message: str, code: str) -> PaymentError:
        """Move ``payment`` to ``ERROR`` with ``message``; return the error to raise."""
        payment.change_status(PaymentStatus.ERROR, message)
        return PaymentError(message, code=code)

    def sessions_of(self, payment: BasePayment) -> Any:
        """The ETpay sessions opened for ``payment``, newest first."""
        return PaymentSession.objects.filter(
            merchant=self.merchant, merchant_order_id=str(payment.token)
        ).order_by("-created_at", "-pk")

    # -- results -----------------------------------------------------------------------------

    def process_data(self, payment: BasePayment, request: HttpRequest) -> HttpResponseBase:
        """django-payments' ``process`` URL: the payer's return, or ETpay's webhook.

        A POST is read like this app's ``notification`` view (verified, recorded, answered
        with its status code). A GET is the payer coming back: a result JWT on the URL goes
        through the verified pipeline, then the payer is redirected to the payment's success
        URL when one of its sessions is paid (or the result is a verified success not
        applied yet), to the failure URL when its newest session failed, expired or could
        not be opened; while nothing is known, this app's ``return`` page says the
        confirmation is on its way. Nothing in the request is trusted: the ``Payment``
        itself changes only through the signals.
        """
        if request.method == "POST":
            _notification, status = NotificationView().receive(request)
            return HttpResponse(status=status)
        notification = self.receive_return(request)
        if notification is not None and not self.concerns(notification, payment):
            # A verified result of another payment proves nothing about this one.
            notification = None
        sessions = self.sessions_of(payment)
        newest = sessions.first()
        if (
            newest is not None
            and newest.status == Status.PENDING
            and notification is None
            and self.check_status_on_return
        ):
            try:
                services.reconcile_session(newest)
            except EtpayAPIError as err:
                logger.warning(
                    "ETpay status query for session %s failed on return (%s)", newest.pk, err.code
                )
        if sessions.filter(status=Status.PAID).exists() or (
            notification is not None
            and notification.result == Notification.Result.SUCCESS
            and not ResultStateMixin.proves_nothing(notification)
        ):
            return HttpResponseRedirect(payment.get_success_url())
        newest = sessions.first()
        if newest is None or newest.status != Status.PENDING:
            return HttpResponseRedirect(payment.get_failure_url())
        return TemplateResponse(
            request,
            ReturnView.template_name,
            {"session": newest, "notification": None, "state": "pending", "result": ""},
        )

    @staticmethod
    def receive_return(request: HttpRequest) -> Notification | None:
        """Process the result JWT on the payer's return URL, if there is one."""
        view = ReturnView()
        raw_jwt = view.find_jwt(request)
        if raw_jwt is None or len(raw_jwt) > int(conf.get_setting("NOTIFICATION_MAX_BYTES")):
            return None
        try:
            return services.process_notification(
                raw_jwt,
                channel=Notification.Channel.REDIRECT,
                remote_addr=view.get_remote_addr(request),
            )
        except Exception as err:
            # Stored and logged by the pipeline where it could; the payer still gets a page.
            logger.error("ETpay return result could not be stored (%s)", type(err).__name__)
            return None

    def concerns(self, notification: Notification, payment: BasePayment) -> bool:
        """Whether ``notification`` is about one of ``payment``'s sessions."""
        session = notification.session
        return (
            session is not None
            and session.merchant == self.merchant
            and session.merchant_order_id == str(payment.token)
        )

    def get_token_from_request(self, payment: Any, request: HttpRequest) -> str | None:
        """The ``Payment`` token for django-payments' static callback URL.

        Read from the session named by the JWT in the body (unverified: it only picks the
        payment; :meth:`process_data` then verifies the result like every other one).
        """
        try:
            raw_jwt = NotificationView().read_jwt(request)
            session_token = tokens.session_token_of(tokens.read_unverified(raw_jwt))
        except (ResultBodyError, EtpayVerificationError):
            return None
        order: str | None = (
            PaymentSession.objects.filter(token=session_token, merchant=self.merchant)
            .values_list("merchant_order_id", flat=True)
            .first()
        )
        return order

    # -- what ETpay does not offer --------------------------------------------------------

    def capture(self, payment: BasePayment, amount: Any = None) -> Any:
        """Not available: ETpay transfers are captured when the payer pays."""
        raise PaymentError("ETpay payments cannot be pre-authorised or captured later.")

    def release(self, payment: BasePayment) -> None:
        """Not available: there is no pre-authorisation to release."""
        raise PaymentError("ETpay payments cannot be pre-authorised or released.")

    def refund(self, payment: BasePayment, amount: Any = None) -> int:
        """Refund ``amount`` (default: all that is captured) through this app's refund ledger.

        Records the refund against the payment's paid session with
        :func:`django_etpay.refunds.request_refund` (a ``requested`` :class:`Refund`, carried
        out by ``ETPAY["REFUND_BACKEND"]``) and returns the amount, which django-payments
        subtracts from ``captured_amount``. Raises :class:`~payments.PaymentError`, recording
        nothing: code ``"amount"`` for an amount with cents, code ``"refund"`` when the payment
        has no paid session or the ledger refuses (more than is left to refund on the session,
        refunds made elsewhere, in the admin for example, counting too; a session no longer
        paid).
        """
        session = self.sessions_of(payment).filter(status=Status.PAID).first()
        if session is None:
            raise PaymentError("This payment has no paid ETpay session to refund.", code="refund")
        value = self.whole(payment.captured_amount if amount is None else amount)
        try:
            refunds.request_refund(
                session, value, reason=f"django-payments refund of {payment.pk}"
            )
        except EtpayRefundError as err:
            # The ledger's messages name amounts and the session, never a secret.
            raise PaymentError(f"The refund was refused: {err}", code="refund") from None
        return value

    @staticmethod
    def whole(amount: Any) -> int:
        """``amount`` as whole pesos; :class:`~payments.PaymentError` with cents."""
        value = Decimal(amount)
        if value != value.to_integral_value() or value <= 0:
            raise PaymentError(
                "ETpay amounts are whole, positive amounts without cents.", code="amount"
            )
        return int(value)

    def cancel(self, payment: BasePayment) -> None:
        """Nothing to cancel at ETpay: an unpaid session simply expires."""
        return None
