"""What a browser may send to the API, and what it gets back.

Input is checked by the same functions as :func:`~django_etpay.services.initialize_session`
(:mod:`django_etpay.validators`), so there is one definition of a valid e-mail, RUT or bank
code. Output serializers list their fields one by one: ``signature_token`` and the merchant
credentials are absent by construction, not by exclusion. Field descriptions are for
developers (they become the OpenAPI schema) and stay in English; messages a payer may see are
translated.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from django.urls import NoReverseMatch, reverse
from django.utils.translation import gettext_lazy as _
from rest_framework import serializers

from django_etpay import money, refunds, validators
from django_etpay.models import PaymentSession
from django_etpay.widgets import widget_config

#: Arguments of ``initialize_session`` that only the shop's order hook may set: a browser
#: that sends one is told so, instead of having it silently ignored.
SHOP_ONLY_FIELDS: frozenset[str] = frozenset(
    {
        "merchant_order_id",
        "order_amount",
        "amount",
        "currency",
        "metadata",
        "is_rut_block",
        "payment_completed_url",
        "payment_cancellation_url",
        "payment_webhook_url",
        "concat",
        "merchant",
        "success_url",
        "failure_url",
    }
)

#: Unknown keys reported in one reply, so that a hostile body cannot make it huge.
MAX_REPORTED_UNKNOWN = 10

#: Names no response may carry, even as the key of a client's own mistake: a response that
#: says "signature_token" reads like one that leaks it, and log scanners flag it as such.
SECRET_NAMES = ("signature_token", "merchant_api_token")
#: What an unknown key that names a secret is reported as instead.
REDACTED_KEY = "[redacted]"


class ValidatedCharField(serializers.CharField):
    """An optional string checked by one function of :mod:`django_etpay.validators`.

    The validator sees the raw JSON value (DRF's own string coercion is skipped), so a number
    where a RUT is expected is refused exactly as ``initialize_session`` refuses it. ``null``
    and ``""`` mean "not given".
    """

    def __init__(self, check: Callable[[Any], str], **kwargs: Any) -> None:
        kwargs.setdefault("required", False)
        kwargs.setdefault("allow_null", True)
        kwargs.setdefault("allow_blank", True)
        kwargs.setdefault("trim_whitespace", False)
        super().__init__(**kwargs)
        self.check = check

    def to_internal_value(self, data: Any) -> str:
        try:
            return self.check(data)
        except ValueError as err:
            raise serializers.ValidationError(str(err), code="invalid") from None


class SessionCreateSerializer(serializers.Serializer):  # type: ignore[type-arg]
    """The body of ``POST api/sessions/``: which order, and what the payer typed.

    The amount, the order id, the metadata and every URL come from the shop's order hook,
    never from here.
    """

    order = serializers.CharField(
        required=False,
        max_length=128,
        help_text=(
            "The shop's reference to what is being paid (an order number, a cart id), handed "
            "to the shop's order hook. Never an amount."
        ),
    )
    customer_email = ValidatedCharField(
        validators.email,
        max_length=validators.MAX_EMAIL_LENGTH,
        help_text="The payer's e-mail address, if the shop does not already know it.",
    )
    user_bank_code = ValidatedCharField(
        validators.bank_code,
        max_length=32,
        help_text="Bank to preselect in ETpay's funnel, such as cl_estado (mx_bbva in Mexico).",
    )
    user_rut = ValidatedCharField(
        validators.rut,
        max_length=20,
        help_text=(
            "The payer's RUT, to prefill ETpay's form (e.g. 12.345.678-5). Chilean merchant "
            "accounts only."
        ),
    )
    customer_phone = ValidatedCharField(
        validators.phone,
        max_length=20,
        help_text=(
            "The payer's 10-digit phone, to prefill ETpay's CoDi/SPEI form (e.g. 9616689020). "
            "Mexican merchant accounts only."
        ),
    )
    target_flow = ValidatedCharField(
        validators.target_flow,
        max_length=8,
        help_text="The payment method to preselect, codi or spei. Mexican accounts only.",
    )

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        """Validate the fields and refuse keys the API does not know (all errors at once)."""
        errors: dict[str, Any] = {}
        if isinstance(data, Mapping):
            for key in sorted(str(key) for key in data if key not in self.fields):
                if len(errors) == MAX_REPORTED_UNKNOWN:
                    break
                if key in SHOP_ONLY_FIELDS:
                    message = _("Set by the shop on the server; a browser cannot send it.")
                else:
                    message = _("Unknown field.")
                # Long keys are echoed shortened (distinct ones stay distinct below the cap);
                # a key naming a secret is not echoed at all.
                if any(name in key.lower() for name in SECRET_NAMES):
                    shown = REDACTED_KEY
                else:
                    shown = key if len(key) <= 64 else f"{key[:63]}…"
                errors.setdefault(shown, [message])
        try:
            value: dict[str, Any] = super().to_internal_value(data)
        except serializers.ValidationError as exc:
            if not isinstance(exc.detail, dict):
                raise
            errors = {**exc.detail, **errors}
            value = {}
        if errors:
            raise serializers.ValidationError(errors)
        # "" and null mean "not given": the order hook's values, if any, are used instead.
        return {key: item for key, item in value.items() if item not in ("", None)}


class RefundedAmountField(serializers.IntegerField):
    """The session's refunded amount (its completed refunds), read-only."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(read_only=True, source="*", min_value=0, **kwargs)

    def to_representation(self, value: Any) -> int:
        # Only a paid session can have refunds: the others, polled while pending, cost no query.
        if value.status != PaymentSession.Status.PAID:
            return 0
        return refunds.refunded_amount(value)


class SessionSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    """A session's status, as the API shows it to whoever may see it."""

    is_final = serializers.BooleanField(
        read_only=True, help_text="True once the session is paid: stop polling."
    )
    amount_display = serializers.SerializerMethodField(
        help_text="The amount as a payer reads it, e.g. $6.990 (CLP) or $1,500.00 (MXN)."
    )
    payment_url = serializers.CharField(
        read_only=True, help_text="Where the payer pays (ETpay's funnel)."
    )
    status_url = serializers.SerializerMethodField(
        help_text="This endpoint, for polling the status."
    )
    refunded_amount = RefundedAmountField(
        help_text="What was given back so far (completed refunds), in the session's currency."
    )

    class Meta:
        model = PaymentSession
        fields: tuple[str, ...] = (
            "id",
            "token",
            "status",
            "is_final",
            "merchant_order_id",
            "order_amount",
            "currency",
            "country",
            "amount_display",
            "refunded_amount",
            "payment_url",
            "status_url",
            "created_at",
            "updated_at",
            "paid_at",
            "completed_at",
        )
        read_only_fields: tuple[str, ...] = fields

    def get_amount_display(self, session: PaymentSession) -> str:
        return money.format_amount(session.order_amount, session.currency)

    def get_status_url(self, session: PaymentSession) -> str | None:
        request = self.context.get("request")
        namespaces = [self.context.get("namespace"), "django_etpay_api"]
        for namespace in dict.fromkeys(ns for ns in namespaces if ns):
            try:
                path = reverse(f"{namespace}:session", args=[session.token])
            except NoReverseMatch:
                continue
            return request.build_absolute_uri(path) if request is not None else path
        return None


class WidgetTextsSerializer(serializers.Serializer):  # type: ignore[type-arg]
    """Translated strings the widget loader shows."""

    button = serializers.CharField()
    title = serializers.CharField()
    close = serializers.CharField()
    confirming = serializers.CharField()


class WidgetConfigSerializer(serializers.Serializer):  # type: ignore[type-arg]
    """The configuration ``{% etpay_widget %}`` hands to the widget loader.

    It is :func:`django_etpay.widgets.widget_config` for the session, passed through whole (so
    keys added there reach API clients too); the fields below document the stable ones.
    """

    sessionToken = serializers.CharField()  # noqa: N815 - the loader's own key names
    paymentUrl = serializers.CharField()  # noqa: N815
    funnelOrigin = serializers.CharField()  # noqa: N815
    resultUrl = serializers.CharField()  # noqa: N815
    successUrl = serializers.CharField(allow_null=True)  # noqa: N815
    failureUrl = serializers.CharField(allow_null=True)  # noqa: N815
    openOnLoad = serializers.BooleanField()  # noqa: N815
    texts = WidgetTextsSerializer()

    def to_representation(self, instance: Any) -> dict[str, Any]:
        request = self.context.get("request")
        options: dict[str, Any] = self.context.get("widget_options") or {}
        django_request = getattr(request, "_request", request)
        return widget_config(instance, request=django_request, **options)


class SessionCreatedSerializer(SessionSerializer):
    """The reply to ``POST api/sessions/``: the status fields and the widget configuration."""

    widget = WidgetConfigSerializer(
        source="*", read_only=True, help_text="What the widget loader needs to open it."
    )

    class Meta(SessionSerializer.Meta):
        fields = (*SessionSerializer.Meta.fields, "widget")
        read_only_fields = fields


class ErrorSerializer(serializers.Serializer):  # type: ignore[type-arg]
    """DRF's own error body (401, 403, 404, 405, 406, 415, 429)."""

    detail = serializers.CharField()


class EtpayErrorSerializer(serializers.Serializer):  # type: ignore[type-arg]
    """The body of a 502 or 504: ETpay failed, the row is kept with the reason."""

    detail = serializers.CharField(help_text="What happened, for people.")
    code = serializers.ChoiceField(
        choices=["timeout", "connection", "http_error", "bad_response", "storage", "api_error"],
        help_text="Kind of failure, as stored on the session row (error_code).",
    )
    session_id = serializers.IntegerField(
        allow_null=True, help_text="The session row kept with the reason."
    )
    outcome_unknown = serializers.BooleanField(
        help_text="ETpay may have created the session anyway (timeout, 5xx): reconcile it."
    )
