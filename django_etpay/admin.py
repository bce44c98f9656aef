"""Django admin for ETpay sessions and notifications.

Everything ETpay sent is read-only, ``signature_token`` appears in no list, form or search, and
notifications are view-only (the log is append-only). No URL parameter may filter on the key
either: :class:`SecretLookupGuard` refuses such lookups with a 400 before they reach a query,
and the model field refuses them again (:mod:`django_etpay.fields`) for any other admin.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.db.models.constants import LOOKUP_SEP
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from django_etpay.exceptions import EtpayConfigurationError, EtpayError
from django_etpay.models import Notification, PaymentSession

if TYPE_CHECKING:
    # The admin classes are generic only for type checkers; Django's are not subscriptable.
    _SessionAdminBase = admin.ModelAdmin[PaymentSession]
    _NotificationAdminBase = admin.ModelAdmin[Notification]
    _NotificationInlineBase = admin.TabularInline[Notification, PaymentSession]
else:
    _SessionAdminBase = _NotificationAdminBase = admin.ModelAdmin
    _NotificationInlineBase = admin.TabularInline


#: The fields no admin URL parameter may name, on the model or through a relation.
SECRET_FIELDS = frozenset({"signature_token"})


class SecretLookupGuard:
    """Refuses every changelist lookup that names a secret field, at any depth.

    Without it, ``?signature_token__startswith=<prefix>`` answered "1 result" or "0 results",
    and a staff user could recover a whole key in a few hundred requests. The refusal is the
    same whatever the value (Django answers 400), so nothing can be learnt from it.
    """

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest | None = None) -> bool:
        if SECRET_FIELDS.intersection(lookup.split(LOOKUP_SEP)):
            return False
        parent: Any = super()
        # Django 5.0 added the request argument; 4.2 calls lookup_allowed(lookup, value).
        if request is None:
            return bool(parent.lookup_allowed(lookup, value))
        return bool(parent.lookup_allowed(lookup, value, request))


class NotificationInline(_NotificationInlineBase):
    """The results that reached a session, newest first, read-only."""

    model = Notification
    extra = 0
    can_delete = False
    show_change_link = True
    fields = ("created_at", "channel", "outcome", "reason", "result", "status_after")
    readonly_fields = fields
    ordering = ("-created_at",)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(PaymentSession)
class PaymentSessionAdmin(SecretLookupGuard, _SessionAdminBase):
    """Sessions are created by ``initialize_session`` and changed only by verified results."""

    list_display = (
        "id",
        "merchant_order_id",
        "amount_display",
        "status",
        "environment",
        "merchant",
        "needs_reconciliation",
        "created_at",
        "paid_at",
    )
    list_filter = ("status", "environment", "merchant", "needs_reconciliation", "outcome_unknown")
    search_fields = ("=merchant_order_id", "=token", "=payment_token", "customer_email")
    date_hierarchy = "created_at"
    ordering = ("-created_at",)
    actions = ("reconcile_selected",)
    inlines = (NotificationInline,)
    fieldsets = (
        (
            _("Order"),
            {
                "fields": (
                    "merchant_order_id",
                    "amount_display",
                    "currency",
                    "metadata",
                    "merchant",
                    "environment",
                )
            },
        ),
        (
            _("Payer"),
            {
                "fields": (
                    "customer_email",
                    "user_bank_code",
                    "user_rut",
                    "is_rut_block",
                    "payer_bank",
                    "payer_account",
                    "payer_rut",
                )
            },
        ),
        (
            _("ETpay data"),
            {
                "fields": (
                    "status",
                    "token",
                    "payment_url_link",
                    "payment_token",
                    "terms_url",
                    "payment_completed_url",
                    "payment_cancellation_url",
                    "payment_webhook_url",
                )
            },
        ),
        (
            _("Problems"),
            {"fields": ("error", "error_code", "outcome_unknown", "needs_reconciliation")},
        ),
        (_("Timestamps"), {"fields": ("created_at", "updated_at", "paid_at", "completed_at")}),
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[PaymentSession]:
        # The admin never needs the key: it is not even loaded.
        return super().get_queryset(request).defer("signature_token")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        # Every displayed field is read-only; signature_token is not editable and not listed.
        return [str(name) for _title, options in self.fieldsets for name in options["fields"]]

    def has_add_permission(self, request: HttpRequest) -> bool:
        # A session only exists if ETpay was asked for it: initialize_session creates rows.
        return False

    @admin.display(description=_("amount"), ordering="order_amount")
    def amount_display(self, obj: PaymentSession) -> str:
        return f"{obj.order_amount:,}".replace(",", ".") + f" {obj.currency}"

    @admin.display(description=_("payment URL"))
    def payment_url_link(self, obj: PaymentSession) -> SafeString | str:
        try:
            url = obj.payment_url
        except EtpayConfigurationError:
            return "-"
        return format_html('<a href="{}" rel="noopener">{}</a>', url, url) if url else "-"

    @admin.action(description=_("Ask ETpay for the current status of the selected sessions"))
    def reconcile_selected(self, request: HttpRequest, queryset: QuerySet[PaymentSession]) -> None:
        from django_etpay.services import reconcile_session

        checked = failed = 0
        for session in queryset.exclude(token=None):
            try:
                reconcile_session(session)
            except EtpayError as err:
                failed += 1
                self.message_user(
                    request,
                    _("Session %(pk)s: %(error)s") % {"pk": session.pk, "error": err},
                    messages.WARNING,
                )
            else:
                checked += 1
        self.message_user(
            request,
            ngettext("Checked %d session with ETpay.", "Checked %d sessions with ETpay.", checked)
            % checked,
            messages.SUCCESS if not failed else messages.WARNING,
        )


@admin.register(Notification)
class NotificationAdmin(SecretLookupGuard, _NotificationAdminBase):
    """View-only: the notification log is append-only."""

    list_display = (
        "id",
        "created_at",
        "channel",
        "outcome",
        "reason",
        "result",
        "session_link",
        "remote_addr",
    )
    list_filter = ("outcome", "channel", "reason", "result")
    search_fields = ("=payment_token", "=session__merchant_order_id", "=session__token")
    date_hierarchy = "created_at"
    list_select_related = ("session",)
    fields = (
        "created_at",
        "session_link",
        "channel",
        "outcome",
        "reason",
        "detail",
        "result",
        "status_before",
        "status_after",
        "payment_token",
        "remote_addr",
        "claims_pretty",
        "raw_body",
        "raw_body_truncated",
    )
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description=_("session"), ordering="session")
    def session_link(self, obj: Notification) -> SafeString | str:
        if obj.session_id is None:
            return "-"
        url = reverse(
            f"{self.admin_site.name}:django_etpay_paymentsession_change", args=[obj.session_id]
        )
        return format_html('<a href="{}">{}</a>', url, obj.session)

    @admin.display(description=_("claims"))
    def claims_pretty(self, obj: Notification) -> SafeString | str:
        if obj.claims is None:
            return "-"
        return format_html("<pre>{}</pre>", json.dumps(obj.claims, indent=2, sort_keys=True))
