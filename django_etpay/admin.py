"""Django admin for ETpay sessions, notifications and completion effects.

Over 500 lines because Django's admin for three models, their filters and two actions is one
registration each; it holds no business logic (the actions call :mod:`django_etpay.operations`).

A session page is evidence: everything is read-only, nothing can be added, saved or deleted,
``signature_token`` appears in no list, form or search, and the payer's RUT and account are
shown only to users with the ``django_etpay.view_payer_data`` permission. No URL parameter may
filter on the key either: :class:`SecretLookupGuard` refuses such lookups with a 400 before they
reach a query, and the model field refuses them again (:mod:`django_etpay.fields`) for any other
admin. Staff act through
two actions (ask ETpay for the status, expire pending sessions), each behind its own
permission.

The lists stay fast at millions of rows: no unbounded ``COUNT`` (the paginator counts up to
:attr:`CappedCountPaginator.limit` rows and says "1000+" beyond), no date hierarchy (its
``SELECT DISTINCT`` over dates reads the whole table), filters whose choices come from
settings instead of ``SELECT DISTINCT``, exact searches that indexes answer, and indexes for
every filter (see the model's ``Meta.indexes``).
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.paginator import Paginator
from django.db.models import Q, QuerySet
from django.db.models.constants import LOOKUP_SEP
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.functional import cached_property
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from django_etpay import conf, observability, operations, outbox, refunds, unknown, validators
from django_etpay.exceptions import EtpayConfigurationError, EtpayRefundError
from django_etpay.models import Notification, OutboxEffect, PaymentSession, Refund
from django_etpay.money import format_money

if TYPE_CHECKING:
    # The admin classes are generic only for type checkers; Django's are not subscriptable.
    _SessionAdminBase = admin.ModelAdmin[PaymentSession]
    _NotificationAdminBase = admin.ModelAdmin[Notification]
    _EffectAdminBase = admin.ModelAdmin[OutboxEffect]
    _NotificationInlineBase = admin.TabularInline[Notification, PaymentSession]
    _EffectInlineBase = admin.TabularInline[OutboxEffect, PaymentSession]
    _RefundAdminBase = admin.ModelAdmin[Refund]
    _RefundInlineBase = admin.TabularInline[Refund, PaymentSession]
else:
    _SessionAdminBase = _NotificationAdminBase = _EffectAdminBase = admin.ModelAdmin
    _NotificationInlineBase = _EffectInlineBase = admin.TabularInline
    _RefundAdminBase = admin.ModelAdmin
    _RefundInlineBase = admin.TabularInline

#: The permission that shows the payer's RUT and account (and raw bodies, which carry them).
PAYER_DATA_PERMISSION = "django_etpay.view_payer_data"

#: The permission that requests refunds and marks them completed or failed.
REFUND_PERMISSION = "django_etpay.request_refund"

#: Claims that identify the payer; redacted for users without :data:`PAYER_DATA_PERMISSION`.
PERSONAL_CLAIMS = ("user_rut", "user_account", "user_bank", "customer_email")

#: Sessions one admin action may ask ETpay about (each is an HTTP call, made while staff wait).
MAX_ACTION_SESSIONS = 100

Status = PaymentSession.Status
Outcome = Notification.Outcome
Reason = Notification.Reason


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


class EvidenceOnly:
    """Shows rows as evidence: nobody adds, changes or deletes them through the admin.

    Sessions exist only because ETpay was asked for them (``initialize_session`` creates the
    rows), results and effects are records of what happened. Without change permission a page
    is view-only (no Save button); without delete permission "Delete selected" is gone too.
    ``etpay_purge`` is how personal data leaves the database.
    """

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class _AtLeast(int):
    """A count that was capped: compares as the cap, prints as "1000+"."""

    def __str__(self) -> str:
        return f"{int(self)}+"


class CappedCountPaginator(Paginator):  # type: ignore[type-arg]
    """Counts at most :attr:`limit` + 1 rows (``SELECT COUNT(*) FROM (... LIMIT n)``).

    Django's paginator counts the whole filtered table on every page view, which reads
    millions of rows. Past the limit the count shows as "1000+" and the last page is the
    limit's; filters and searches narrow further.
    """

    limit = 1_000

    @cached_property
    def count(self) -> int:
        object_list: Any = self.object_list  # the admin always paginates a QuerySet
        counted = object_list.order_by()[: self.limit + 1].count()
        return _AtLeast(self.limit) if counted > self.limit else counted


def _short_datetime(value: Any) -> str:
    """A compact local date and time ("11/29/2026 4:13 p.m."), so that lists fit in 1280 px."""
    if value is None:
        return "-"
    return str(date_format(timezone.localtime(value), "SHORT_DATETIME_FORMAT"))


def _can_see_payer_data(request: HttpRequest) -> bool:
    return bool(request.user.has_perm(PAYER_DATA_PERMISSION))


def _outcome_label(notification: Notification) -> str:
    """What happened to a result, in words: a system error is not a "Duplicate"."""
    if notification.outcome == Outcome.REJECTED:
        reason = notification.get_reason_display() or _("no reason")
        return str(_("Rejected: %(reason)s") % {"reason": reason})
    if notification.outcome == Outcome.DUPLICATE and notification.reason:
        return str(notification.get_reason_display())
    if notification.outcome == Outcome.DUPLICATE:
        return str(_("Repeat: changed nothing (expected)"))
    return str(notification.get_outcome_display())


#: Shown on a repeat's page: ETpay and the payer's browser both bring the same result.
REPEAT_EXPLANATION = _(
    "The same result arrived again: ETpay sends it by webhook and the payer's browser brings "
    "it back too, so most payments have one. It was recorded and changed nothing. This is "
    "expected, not a fault."
)

#: The environments' names as staff read them (the stored values are ETpay's own words).
ENVIRONMENT_LABELS = {
    "sandbox": _("Sandbox"),
    "preproduction": _("Pre-production"),
    "production": _("Production"),
}


def _environment_label(value: str) -> str:
    return str(ENVIRONMENT_LABELS.get(value, value))


def _rut_display(value: str) -> str:
    """``111111111`` -> ``11.111.111-1``; a value that is not a RUT is shown as it came."""
    if len(value) >= 2 and value[:-1].isdigit() and (value[-1].isdigit() or value[-1] in "kK"):
        return validators.format_rut(value.upper())
    return value or "-"


def _metadata_table(entries: Any) -> SafeString | str:
    """The metadata as a small table: name, value and whether ETpay shows it to the payer."""
    if not entries:
        return "-"
    if not isinstance(entries, list):
        return format_html("<pre>{}</pre>", json.dumps(entries, ensure_ascii=False))
    rows = format_html_join(
        "",
        "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
        (
            (
                entry.get("name", ""),
                entry.get("value", ""),
                _("yes") if entry.get("show") is True else _("no"),
            )
            if isinstance(entry, dict)
            else (json.dumps(entry, ensure_ascii=False), "", "")
            for entry in entries
        ),
    )
    return format_html(
        '<table class="etpay-metadata"><thead><tr><th>{}</th><th>{}</th><th>{}</th></tr>'
        "</thead><tbody>{}</tbody></table>",
        _("name"),
        _("value"),
        _("shown to the payer"),
        rows,
    )


def _session_link(admin_site: str, session: PaymentSession | None) -> SafeString | str:
    if session is None:
        return "-"
    url = reverse(f"{admin_site}:django_etpay_paymentsession_change", args=[session.pk])
    return format_html('<a href="{}">{}</a>', url, session.merchant_order_id)


# -- filters ----------------------------------------------------------------------------------


class NeedsAttentionFilter(admin.SimpleListFilter):
    """Sessions staff should look at: pending past ``SESSION_TTL``, flagged for
    reconciliation, or with a result rejected within :attr:`REJECTED_WITHIN`.

    Rejections older than that are history (the notification list still filters them): a
    problem that needs attention is a current one, and so the set stays as small as the
    shop's recent trouble however long its history grows.
    """

    title = _("needs attention")
    parameter_name = "attention"

    #: How recent a rejected result must be to call for attention.
    REJECTED_WITHIN = timedelta(days=7)

    #: Sessions looked up by id; beyond this the filter uses a subquery.
    MAX_IDS = 20_000

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [
            ("yes", _("Needs attention")),
            ("overdue", _("Pending past the TTL")),
            ("flagged", _("Flagged for reconciliation")),
            ("rejected", _("Rejected results in the past 7 days")),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if not value:
            return queryset
        now = timezone.now()
        cutoff = now - conf.get_duration("SESSION_TTL")
        overdue = PaymentSession.objects.filter(status=Status.PENDING, created_at__lt=cutoff)
        flagged = PaymentSession.objects.filter(needs_reconciliation=True)
        rejected = Notification.objects.filter(
            outcome=Outcome.REJECTED,
            created_at__gte=now - self.REJECTED_WITHIN,
            session__isnull=False,
        )
        if value == "overdue":
            return queryset.filter(status=Status.PENDING, created_at__lt=cutoff)
        if value == "flagged":
            return queryset.filter(needs_reconciliation=True)
        ids: QuerySet[Any, Any]
        if value == "rejected":
            ids = rejected.order_by().values("session_id")
        else:
            # One id list from three indexed queries: an OR of the three conditions (one a
            # subquery) would make PostgreSQL read every session.
            ids = (
                overdue.order_by()
                .values("pk")
                .union(flagged.order_by().values("pk"), rejected.order_by().values("session_id"))
                .order_by()
            )
        # Fetched first, as a list: with the subquery inline, PostgreSQL cannot tell how few
        # ids it yields (pending sessions past the TTL are rare, but it estimates them from the
        # whole table) and reads every session instead of looking the ids up.
        found = [next(iter(row.values())) for row in ids[: self.MAX_IDS + 1]]
        if len(found) > self.MAX_IDS:
            return queryset.filter(pk__in=ids)  # still right, only slower
        return queryset.filter(pk__in=found)


class MerchantFilter(admin.SimpleListFilter):
    """Merchant accounts from ``ETPAY["MERCHANTS"]`` (no ``SELECT DISTINCT`` over sessions);
    hidden when only the default account exists."""

    title = _("merchant account")
    parameter_name = "merchant"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        aliases = conf.merchant_aliases()
        if not aliases:
            return []
        return [("-", _("Default account")), *((alias, alias) for alias in aliases)]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if value is None:
            return queryset
        return queryset.filter(merchant="" if value == "-" else value)


# -- inlines ----------------------------------------------------------------------------------


class NotificationInline(EvidenceOnly, _NotificationInlineBase):
    """The results that reached a session, newest first, read-only."""

    model = Notification
    extra = 0
    can_delete = False
    show_change_link = True
    fields = ("created_at", "channel", "outcome_label", "result", "status_change", "detail")
    readonly_fields = fields
    ordering = ("-created_at", "-id")
    verbose_name_plural = _("results received (latest 50)")

    #: Results shown on a session page; all of them are one click away (``all_results``).
    MAX_SHOWN = 50

    def get_queryset(self, request: HttpRequest) -> QuerySet[Notification]:
        # A replayed result is stored every time, so one session may hold thousands: show the
        # latest ones. The formset filters by session afterwards, hence the id subquery.
        queryset = super().get_queryset(request)
        match = request.resolver_match
        session_id = match.kwargs.get("object_id") if match else None
        if session_id is None:
            return queryset
        latest = (
            Notification.objects.filter(session_id=session_id)
            .order_by("-created_at", "-id")
            .values_list("pk", flat=True)[: self.MAX_SHOWN]
        )
        # A list, not a subquery: some databases refuse LIMIT inside IN (...).
        return queryset.filter(pk__in=list(latest))

    @admin.display(description=_("outcome"))
    def outcome_label(self, obj: Notification) -> str:
        return _outcome_label(obj)

    @admin.display(description=_("status"))
    def status_change(self, obj: Notification) -> str:
        if obj.status_before == obj.status_after:
            return obj.status_after or "-"
        return f"{obj.status_before} → {obj.status_after}"


class EffectInline(EvidenceOnly, _EffectInlineBase):
    """Whether the shop's receivers heard of each state change."""

    model = OutboxEffect
    extra = 0
    can_delete = False
    fields = ("created_at", "kind", "state", "attempts", "delivered_at", "last_error")
    readonly_fields = fields
    ordering = ("created_at", "id")
    verbose_name_plural = _("signals to the shop")


class EnvironmentFilter(admin.SimpleListFilter):
    """The environment, by its translated name."""

    title = _("environment")
    parameter_name = "environment"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(value, _environment_label(value)) for value in conf.ENVIRONMENTS]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() in conf.ENVIRONMENTS:
            return queryset.filter(environment=self.value())
        return queryset


# -- double payments and refunds --------------------------------------------------------------


class PaidMoreThanOnceFilter(admin.SimpleListFilter):
    """Paid sessions that received another payment too (see :mod:`django_etpay.duplicates`):
    the extra money is the shop's to give back."""

    title = _("paid more than once")
    parameter_name = "paid_twice"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [("yes", _("Paid more than once"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() != "yes":
            return queryset
        # The few sessions with such an effect, from its partial index.
        extra = OutboxEffect.objects.filter(kind=OutboxEffect.Kind.PAYMENT_DUPLICATED)
        return queryset.filter(pk__in=extra.order_by().values("session_id"))


def _claim(notification: Notification, key: str) -> Any:
    claims = notification.claims if isinstance(notification.claims, dict) else {}
    value = claims.get(key)
    return value if value not in (None, "") else None


class ExtraPaymentInline(EvidenceOnly, _EffectInlineBase):
    """The extra payments of a session paid more than once: amount, time and payer."""

    model = OutboxEffect
    extra = 0
    can_delete = False
    ordering = ("created_at", "id")
    verbose_name = _("extra payment")
    verbose_name_plural = _("extra payments (paid more than once)")

    def get_queryset(self, request: HttpRequest) -> QuerySet[OutboxEffect]:
        return (
            super()
            .get_queryset(request)
            .filter(kind=OutboxEffect.Kind.PAYMENT_DUPLICATED)
            .select_related("notification", "session")
        )

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        payer = ("payer_display",) if _can_see_payer_data(request) else ("payer_bank_display",)
        return ("payment_token_display", "amount_display", "paid_display", *payer, "state")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return self.get_fields(request, obj)

    @admin.display(description=_("payment token"))
    def payment_token_display(self, obj: OutboxEffect) -> str:
        return obj.notification.payment_token if obj.notification is not None else "-"

    @admin.display(description=_("amount"))
    def amount_display(self, obj: OutboxEffect) -> str:
        amount = _claim(obj.notification, "merchant_amount") if obj.notification else None
        if isinstance(amount, int) and not isinstance(amount, bool):
            return format_money(amount, obj.session.currency)
        return str(amount) if amount is not None else "-"

    @admin.display(description=_("paid at"))
    def paid_display(self, obj: OutboxEffect) -> str:
        notification = obj.notification
        if notification is None:
            return "-"
        # ETpay's own payment time when it sent one (its time zone is not documented), else
        # when the result arrived.
        reported = _claim(notification, "payment_date")
        received = _short_datetime(notification.created_at)
        if reported is None:
            return received
        return str(_("%(reported)s (received %(received)s)")) % {
            "reported": reported,
            "received": received,
        }

    @admin.display(description=_("payer bank"))
    def payer_bank_display(self, obj: OutboxEffect) -> str:
        bank = _claim(obj.notification, "user_bank") if obj.notification else None
        return str(bank) if bank is not None else "-"

    @admin.display(description=_("payer"))
    def payer_display(self, obj: OutboxEffect) -> str:
        if obj.notification is None:
            return "-"
        parts = [
            _claim(obj.notification, key) for key in ("user_bank", "user_account", "user_rut")
        ]
        shown = [str(part) for part in parts if part is not None]
        return ", ".join(shown) if shown else "-"


class RefundInline(EvidenceOnly, _RefundInlineBase):
    """A session's refunds, read-only here; requested with the session list's action and
    settled from the refund list."""

    model = Refund
    extra = 0
    can_delete = False
    show_change_link = True
    fields = (
        "created_at",
        "amount_display",
        "state",
        "reason",
        "requested_by",
        "reference",
        "failure_reason",
    )
    readonly_fields = fields
    ordering = ("created_at", "id")
    verbose_name_plural = _("refunds")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Refund]:
        return super().get_queryset(request).select_related("requested_by", "session")

    @admin.display(description=_("amount"))
    def amount_display(self, obj: Refund) -> str:
        return format_money(int(obj.amount), obj.session.currency)


class RequestRefundForm(forms.Form):
    """The session list's "request a refund" action."""

    amount = forms.IntegerField(
        label=_("Amount"),
        min_value=1,
        required=False,
        help_text=_("Whole units of the session's currency; empty refunds all that is left."),
    )
    reason = forms.CharField(label=_("Reason"), widget=forms.Textarea(attrs={"rows": 3}))


class CompleteRefundForm(forms.Form):
    """The refund list's "mark completed" action."""

    reference = forms.CharField(
        label=_("ETpay reference"),
        max_length=refunds.MAX_REFERENCE_LENGTH,
        help_text=_("ETpay's reference of the transfer back, from its back-office."),
    )


class FailRefundForm(forms.Form):
    """The refund list's "mark failed" action."""

    reason = forms.CharField(label=_("Why it failed"), widget=forms.Textarea(attrs={"rows": 3}))


def _action_form(
    model_admin: Any,
    request: HttpRequest,
    queryset: QuerySet[Any],
    form_class: type[forms.Form],
    *,
    title: str,
    intro: str,
    submit: str,
) -> tuple[forms.Form | None, TemplateResponse | None]:
    """An admin action's intermediate page: (the valid form, None) once submitted, else
    (None, the page to show)."""
    if "apply" in request.POST:
        form = form_class(request.POST)
        if form.is_valid():
            return form, None
    else:
        form = form_class()
    context = {
        **model_admin.admin_site.each_context(request),
        "title": title,
        "intro": intro,
        "submit": submit,
        "form": form,
        "objects": list(queryset),
        "action": request.POST.get("action", ""),
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        "opts": model_admin.model._meta,
    }
    return None, TemplateResponse(request, "admin/django_etpay/refund_action.html", context)


def _can_refund(request: HttpRequest) -> bool:
    return bool(request.user.has_perm(REFUND_PERMISSION))


# -- sessions ---------------------------------------------------------------------------------


@admin.register(PaymentSession)
class PaymentSessionAdmin(EvidenceOnly, SecretLookupGuard, _SessionAdminBase):
    """Sessions are created by ``initialize_session`` and changed only by verified results."""

    list_display = ("merchant_order_id", "amount_display", "status_display", "created_display")
    list_display_links = ("merchant_order_id",)
    list_filter = (
        "status",
        NeedsAttentionFilter,
        "needs_staff_decision",
        "needs_reconciliation",
        "outcome_unknown",
        EnvironmentFilter,
        MerchantFilter,
        PaidMoreThanOnceFilter,
        "country",
        ("created_at", admin.DateFieldListFilter),
    )
    # Exact lookups on indexed columns, e-mail case-insensitively on its UPPER() index: a
    # "contains" search reads every row.
    search_fields = (
        "merchant_order_id__exact",
        "token__exact",
        "payment_token__exact",
        "customer_email__iexact",
    )
    search_help_text = _("Exact order id, session token, payment token or payer e-mail.")
    ordering = ("-created_at", "-id")
    paginator = CappedCountPaginator
    show_full_result_count = False
    list_per_page = 50
    actions = (
        "reconcile_selected",
        "expire_selected",
        "close_unknown_selected",
        "ask_again_selected",
        "request_refund_selected",
    )
    inlines = (NotificationInline, EffectInline, ExtraPaymentInline, RefundInline)

    class Media:
        css = {"all": ("django_etpay/admin.css",)}

    _PAYER_FIELDS = ("user_rut", "payer_rut", "payer_account", "customer_phone")

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        payer: tuple[str, ...] = ("customer_email", "user_bank_code", "payer_bank")
        mexican = obj is not None and obj.country == "MX"
        if mexican:
            # ETpay Mexico has no RUT; the payment method is not personal data.
            payer += ("target_flow",)
        if _can_see_payer_data(request):
            if mexican:
                payer += ("customer_phone", "payer_account")
            else:
                payer += (
                    "user_rut_display",
                    "is_rut_block",
                    "payer_rut_display",
                    "payer_account",
                )
        else:
            payer += ("payer_data_hidden",)
        return (
            (
                _("Order"),
                {
                    "fields": (
                        "merchant_order_id",
                        "amount_display",
                        "metadata_table",
                        "refunded_display",
                        "metadata",
                        "account_display",
                        "country",
                        "environment_display",
                    )
                },
            ),
            (_("Payer"), {"fields": payer}),
            (_("Results"), {"fields": ("all_results",)}),
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
                {
                    "fields": (
                        "error",
                        "error_code",
                        "outcome_unknown",
                        "needs_staff_decision",
                        "etpay_candidates",
                        "needs_reconciliation",
                        "last_checked_at",
                    )
                },
            ),
            (
                _("Timestamps"),
                {"fields": ("created_at", "updated_at", "paid_at", "completed_at", "purged_at")},
            ),
        )

    def get_queryset(self, request: HttpRequest) -> QuerySet[PaymentSession]:
        # The admin never needs the key: it is not even loaded.
        return super().get_queryset(request).defer("signature_token")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        # Every displayed field is read-only; signature_token is not editable and not listed.
        return [
            str(name)
            for _title, options in self.get_fieldsets(request, obj)
            for name in options["fields"]
        ]

    def get_list_display(self, request: HttpRequest) -> Any:
        # The account column only where there is more than one account.
        if conf.merchant_aliases():
            return (*self.list_display, "account_display")
        return self.list_display

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> Any:
        response = super().changelist_view(request, extra_context)
        # How the sessions of this page got their results, by channel and outcome (one grouped
        # COUNT over the page's sessions; the template admin/django_etpay/paymentsession/
        # change_list.html shows it above the list).
        context = getattr(response, "context_data", None)
        if context is not None and "cl" in context:
            context["etpay_result_counts"] = observability.result_counts(context["cl"].result_list)
            context["etpay_outcomes"] = Outcome.choices
        return response

    def has_reconcile_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm("django_etpay.reconcile_paymentsession"))

    def has_expire_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm("django_etpay.expire_paymentsession"))

    @admin.display(description=_("amount"), ordering="order_amount")
    def amount_display(self, obj: PaymentSession) -> str:
        return format_money(int(obj.order_amount), obj.currency)

    @admin.display(description=_("status"), ordering="status")
    def status_display(self, obj: PaymentSession) -> SafeString | str:
        flags = []
        if obj.needs_staff_decision:
            flags.append(str(_("needs staff decision")))
        if obj.needs_reconciliation:
            flags.append(str(_("to reconcile")))
        if obj.outcome_unknown:
            flags.append(str(_("outcome unknown")))
        label = str(obj.get_status_display())
        if not flags:
            return label
        return format_html("{}<br><small>{}</small>", label, ", ".join(flags))

    @admin.display(description=_("created"), ordering="created_at")
    def created_display(self, obj: PaymentSession) -> str:
        return _short_datetime(obj.created_at)

    @admin.display(description=_("account"), ordering="merchant")
    def account_display(self, obj: PaymentSession) -> str:
        return obj.merchant or str(_("default"))

    @admin.display(description=_("metadata"))
    def metadata_table(self, obj: PaymentSession) -> SafeString | str:
        return _metadata_table(obj.metadata)

    @admin.display(description=_("environment"), ordering="environment")
    def environment_display(self, obj: PaymentSession) -> str:
        return _environment_label(obj.environment)

    @admin.display(description=_("payer RUT (sent)"))
    def user_rut_display(self, obj: PaymentSession) -> str:
        return _rut_display(obj.user_rut)

    @admin.display(description=_("payer RUT"))
    def payer_rut_display(self, obj: PaymentSession) -> str:
        return _rut_display(obj.payer_rut)

    @admin.display(description=_("what ETpay returned by order id"))
    def etpay_candidates(self, obj: PaymentSession) -> SafeString | str:
        # The ETpay sessions staff choose from (django_etpay.unknown.adopt_session), from the
        # latest record that left the row to them; no payer data, whoever looks.
        if not obj.needs_staff_decision:
            return "-"
        record = (
            Notification.objects.filter(
                session=obj,
                reason__in=[Reason.AMBIGUOUS_ORDER, Reason.NO_MATCHING_SESSION],
            )
            .order_by("-created_at", "-pk")
            .first()
        )
        entries = (record.claims or {}).get("entries") if record is not None else None
        if not isinstance(entries, list) or not entries:
            return str(_("No ETpay session for this order id."))
        keys = ("session_token", "merchant_amount", "payment_status", "payment_date")
        rows = [
            " · ".join(str(entry.get(key, "-")) for key in keys)
            for entry in entries
            if isinstance(entry, dict)
        ]
        return format_html("<pre>{}</pre>", "\n".join(rows))

    @admin.display(description=_("payer RUT and account"))
    def payer_data_hidden(self, obj: PaymentSession) -> str:
        return str(_("Hidden: needs the permission “Can view payer personal data”."))

    @admin.display(description=_("all results"))
    def all_results(self, obj: PaymentSession) -> SafeString | str:
        url = reverse(f"{self.admin_site.name}:django_etpay_notification_changelist")
        return format_html(
            '<a href="{}?session={}">{}</a>', url, obj.pk, _("Every result of this session")
        )

    @admin.display(description=_("payment URL"))
    def payment_url_link(self, obj: PaymentSession) -> SafeString | str:
        try:
            url = obj.payment_url
        except EtpayConfigurationError:
            return "-"
        return format_html('<a href="{}" rel="noopener">{}</a>', url, url) if url else "-"

    def _too_many(self, request: HttpRequest, queryset: QuerySet[PaymentSession]) -> bool:
        if queryset.order_by()[: MAX_ACTION_SESSIONS + 1].count() <= MAX_ACTION_SESSIONS:
            return False
        self.message_user(
            request,
            _(
                "Select at most %(max)d sessions; use manage.py etpay_reconcile or the "
                "reconcile task for more."
            )
            % {"max": MAX_ACTION_SESSIONS},
            messages.ERROR,
        )
        return True

    @admin.action(
        description=_("Ask ETpay for the current status of the selected sessions"),
        permissions=["reconcile"],
    )
    def reconcile_selected(self, request: HttpRequest, queryset: QuerySet[PaymentSession]) -> None:
        if self._too_many(request, queryset):
            return
        sessions = list(queryset.order_by("pk"))
        # Sessions without a token whose creation outcome is unknown are asked about by order
        # id (django_etpay.unknown); the others ETpay never created.
        with_token = [
            session for session in sessions if session.token or unknown.is_unknown(session)
        ]
        summary = operations.reconcile_many(with_token)
        failed = summary.counts[operations.Outcome.ERROR]
        self.message_user(
            request,
            summary.describe(include_zero=False),
            messages.WARNING if failed else messages.SUCCESS,
        )
        for error in summary.errors:
            self.message_user(request, _("Session %(error)s") % {"error": error}, messages.WARNING)
        skipped = len(sessions) - len(with_token)
        if skipped:
            self.message_user(
                request,
                ngettext(
                    "%(count)d session has no ETpay token (ETpay never created it); skipped.",
                    "%(count)d sessions have no ETpay token (ETpay never created them); skipped.",
                    skipped,
                )
                % {"count": skipped},
                messages.WARNING,
            )

    @admin.action(
        description=_("Staff decision: ETpay's session was not paid (outcome unknown only)"),
        permissions=["reconcile"],
    )
    def close_unknown_selected(
        self, request: HttpRequest, queryset: QuerySet[PaymentSession]
    ) -> None:
        if self._too_many(request, queryset):
            return
        sessions = list(queryset.filter(token__isnull=True, outcome_unknown=True).order_by("pk"))
        closed = sum(unknown.close_unknown(session, user=request.user) for session in sessions)
        self.message_user(
            request,
            ngettext(
                "%(count)d session closed as not paid.",
                "%(count)d sessions closed as not paid.",
                closed,
            )
            % {"count": closed},
            messages.SUCCESS if closed else messages.WARNING,
        )

    @admin.action(
        description=_("Staff decision: ask ETpay again by order id on the next run"),
        permissions=["reconcile"],
    )
    def ask_again_selected(self, request: HttpRequest, queryset: QuerySet[PaymentSession]) -> None:
        if self._too_many(request, queryset):
            return
        sessions = list(queryset.filter(needs_staff_decision=True).order_by("pk"))
        sent = sum(unknown.ask_again(session) for session in sessions)
        self.message_user(
            request,
            ngettext(
                "%(count)d session will be asked about again by the next reconcile run.",
                "%(count)d sessions will be asked about again by the next reconcile run.",
                sent,
            )
            % {"count": sent},
            messages.SUCCESS if sent else messages.WARNING,
        )

    @admin.action(description=_("Expire the selected pending sessions"), permissions=["expire"])
    def expire_selected(self, request: HttpRequest, queryset: QuerySet[PaymentSession]) -> None:
        if self._too_many(request, queryset):
            return
        pks = list(queryset.values_list("pk", flat=True))
        expired = operations.expire_sessions(timedelta(0), ids=pks)
        self.message_user(
            request,
            ngettext("Expired %(count)d session.", "Expired %(count)d sessions.", expired)
            % {"count": expired},
            messages.SUCCESS if expired else messages.WARNING,
        )
        if len(pks) > expired:
            left = len(pks) - expired
            self.message_user(
                request,
                ngettext(
                    "%(count)d selected session was not pending and was left as it is.",
                    "%(count)d selected sessions were not pending and were left as they are.",
                    left,
                )
                % {"count": left},
                messages.WARNING,
            )

    # -- refunds (django_etpay.refunds) --

    def has_request_refund_permission(self, request: HttpRequest) -> bool:
        return _can_refund(request)

    @admin.display(description=_("refunded"))
    def refunded_display(self, obj: PaymentSession) -> str:
        completed, pending = refunds.refund_totals(obj)
        done = format_money(completed, obj.currency)
        if not pending:
            return done
        return str(_("%(done)s (and %(pending)s requested, not confirmed yet)")) % {
            "done": done,
            "pending": format_money(pending, obj.currency),
        }

    @admin.action(
        description=_("Request a refund of the selected paid sessions"),
        permissions=["request_refund"],
    )
    def request_refund_selected(
        self, request: HttpRequest, queryset: QuerySet[PaymentSession]
    ) -> TemplateResponse | None:
        if queryset.order_by()[: MAX_ACTION_SESSIONS + 1].count() > MAX_ACTION_SESSIONS:
            self.message_user(
                request,
                _("Select at most %(max)d sessions to refund at once.")
                % {"max": MAX_ACTION_SESSIONS},
                messages.ERROR,
            )
            return None
        form, page = _action_form(
            self,
            request,
            queryset.order_by("pk"),
            RequestRefundForm,
            title=str(_("Request a refund")),
            intro=str(
                _(
                    "The refund is recorded; carry it out in ETpay's back-office, then mark it "
                    "completed in the refund list."
                )
            ),
            submit=str(_("Request the refund")),
        )
        if form is None:
            return page
        amount = form.cleaned_data["amount"]
        made = 0
        for session in queryset.order_by("pk"):
            value = amount if amount is not None else refunds.refundable_amount(session)
            if not value:
                self.message_user(
                    request,
                    _("%(session)s: nothing left to refund (not paid, or refunded already).")
                    % {"session": session},
                    messages.WARNING,
                )
                continue
            try:
                refunds.request_refund(
                    session, value, reason=form.cleaned_data["reason"], user=request.user
                )
            except EtpayRefundError as err:
                self.message_user(request, str(err), messages.WARNING)
            else:
                made += 1
        self.message_user(
            request,
            ngettext("%(count)d refund requested.", "%(count)d refunds requested.", made)
            % {"count": made},
            messages.SUCCESS if made else messages.WARNING,
        )
        return None


# -- notifications ----------------------------------------------------------------------------


@admin.register(Notification)
class NotificationAdmin(EvidenceOnly, SecretLookupGuard, _NotificationAdminBase):
    """View-only: the notification log is append-only."""

    list_display = (
        "received_display",
        "channel",
        "outcome_label",
        "result",
        "session_display",
        "amount_display",
    )
    list_filter = ("outcome", "channel", "reason", ("created_at", admin.DateFieldListFilter))
    search_help_text = _("Exact payment token, or a session's order id or session token.")
    search_fields = ("payment_token__exact",)  # widened in get_search_results
    list_select_related = ("session",)
    ordering = ("-created_at", "-id")
    paginator = CappedCountPaginator
    show_full_result_count = False
    list_per_page = 50

    class Media:
        css = {"all": ("django_etpay/admin.css",)}

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        evidence: tuple[str, ...] = ("claims_pretty", "raw_body", "raw_body_truncated")
        if not _can_see_payer_data(request):
            evidence = ("claims_redacted", "raw_body_hidden")
        return (
            "created_at",
            "session_display",
            "channel",
            "outcome_label",
            "outcome_explanation",
            "reason",
            "detail",
            "result",
            "status_before",
            "status_after",
            "payment_token",
            "remote_addr",
            *evidence,
            "purged_at",
        )

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return self.get_fields(request, obj)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Notification], search_term: str
    ) -> tuple[QuerySet[Notification], bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        sessions = (
            PaymentSession.objects.filter(
                Q(merchant_order_id=term) | Q(token=term) | Q(payment_token=term)
            )
            .order_by()
            .values("pk")
        )
        # Two indexed queries joined by id: an OR across the two tables reads both in full.
        by_token = Notification.objects.filter(payment_token=term).order_by().values("pk")
        by_session = Notification.objects.filter(session__in=sessions).order_by().values("pk")
        return queryset.filter(pk__in=by_token.union(by_session).order_by()), False

    @admin.display(description=_("outcome"), ordering="outcome")
    def outcome_label(self, obj: Notification) -> str:
        return _outcome_label(obj)

    @admin.display(description=_("what it means"))
    def outcome_explanation(self, obj: Notification) -> str:
        if obj.outcome == Outcome.DUPLICATE and not obj.reason:
            return str(REPEAT_EXPLANATION)
        return "-"

    @admin.display(description=_("received"), ordering="created_at")
    def received_display(self, obj: Notification) -> SafeString | str:
        url = reverse(f"{self.admin_site.name}:django_etpay_notification_change", args=[obj.pk])
        return format_html('<a href="{}">{}</a>', url, _short_datetime(obj.created_at))

    @admin.display(description=_("session"), ordering="session")
    def session_display(self, obj: Notification) -> SafeString | str:
        return _session_link(self.admin_site.name, obj.session)

    @admin.display(description=_("amount"))
    def amount_display(self, obj: Notification) -> str:
        session = obj.session
        if session is None:
            return "-"
        return format_money(int(session.order_amount), session.currency)

    @admin.display(description=_("claims"))
    def claims_pretty(self, obj: Notification) -> SafeString | str:
        if obj.claims is None:
            return "-"
        return format_html(
            "<pre>{}</pre>", json.dumps(obj.claims, indent=2, sort_keys=True, ensure_ascii=False)
        )

    @admin.display(description=_("claims"))
    def claims_redacted(self, obj: Notification) -> SafeString | str:
        if obj.claims is None:
            return "-"
        hidden = str(_("(hidden: needs the permission to view payer data)"))

        def redact(value: Any) -> Any:
            # Nested too: the record of a status query by order id keeps ETpay's entries in a
            # list under "entries".
            if isinstance(value, dict):
                return {k: hidden if k in PERSONAL_CLAIMS else redact(v) for k, v in value.items()}
            if isinstance(value, list):
                return [redact(item) for item in value]
            return value

        shown = redact(obj.claims)
        return format_html(
            "<pre>{}</pre>", json.dumps(shown, indent=2, sort_keys=True, ensure_ascii=False)
        )

    @admin.display(description=_("raw body"))
    def raw_body_hidden(self, obj: Notification) -> str:
        return str(_("Hidden: the raw body carries the payer's data."))


# -- completion effects -----------------------------------------------------------------------


@admin.register(OutboxEffect)
class OutboxEffectAdmin(EvidenceOnly, SecretLookupGuard, _EffectAdminBase):
    """Whether each state change reached the shop's receivers; "deliver again" after a fix."""

    list_display = ("created_display", "kind", "session_display", "state_display")
    list_filter = ("state", "kind")
    list_select_related = ("session",)

    class Media:
        css = {"all": ("django_etpay/admin.css",)}

    ordering = ("-created_at", "-id")
    paginator = CappedCountPaginator
    show_full_result_count = False
    actions = ("deliver_again",)
    fields = (
        "created_at",
        "kind",
        "session_display",
        "notification",
        "previous_status",
        "state",
        "attempts",
        "lease_until",
        "delivered_at",
        "last_error",
    )
    readonly_fields = fields

    def has_redeliver_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm("django_etpay.change_outboxeffect"))

    @admin.display(description=_("session"), ordering="session")
    def session_display(self, obj: OutboxEffect) -> SafeString | str:
        return _session_link(self.admin_site.name, obj.session)

    @admin.display(description=_("created"), ordering="created_at")
    def created_display(self, obj: OutboxEffect) -> SafeString | str:
        url = reverse(f"{self.admin_site.name}:django_etpay_outboxeffect_change", args=[obj.pk])
        return format_html('<a href="{}">{}</a>', url, _short_datetime(obj.created_at))

    @admin.display(description=_("state"), ordering="state")
    def state_display(self, obj: OutboxEffect) -> str:
        return str(
            ngettext(
                "%(state)s (%(count)d attempt)", "%(state)s (%(count)d attempts)", obj.attempts
            )
            % {"state": obj.get_state_display(), "count": obj.attempts}
        )

    @admin.action(
        description=_("Deliver the selected effects again (after fixing a receiver)"),
        permissions=["redeliver"],
    )
    def deliver_again(self, request: HttpRequest, queryset: QuerySet[OutboxEffect]) -> None:
        count = outbox.redeliver(queryset.exclude(state=OutboxEffect.State.DONE))
        self.message_user(
            request,
            ngettext(
                "%(count)d effect will be delivered by the next reconcile run.",
                "%(count)d effects will be delivered by the next reconcile run.",
                count,
            )
            % {"count": count},
            messages.SUCCESS,
        )


# -- refunds ----------------------------------------------------------------------------------


@admin.register(Refund)
class RefundAdmin(EvidenceOnly, SecretLookupGuard, _RefundAdminBase):
    """The refund ledger. Refunds are requested from the session list and carried out in
    ETpay's back-office; staff with ``request_refund`` then mark them completed or failed."""

    list_display = (
        "created_display",
        "session_display",
        "amount_display",
        "state",
        "requested_by",
        "reference",
    )
    list_filter = ("state", ("created_at", admin.DateFieldListFilter))
    list_select_related = ("session", "requested_by")
    search_fields = ("reference__exact", "session__merchant_order_id__exact")
    search_help_text = _("Exact ETpay reference or order id.")
    ordering = ("-created_at", "-id")
    paginator = CappedCountPaginator
    show_full_result_count = False
    actions = ("complete_selected", "fail_selected")
    fields = (
        "session_display",
        "amount_display",
        "state",
        "reason",
        "requested_by",
        "reference",
        "failure_reason",
        "created_at",
        "updated_at",
        "completed_at",
        "failed_at",
    )
    readonly_fields = fields

    def has_request_refund_permission(self, request: HttpRequest) -> bool:
        return _can_refund(request)

    @admin.display(description=_("created"), ordering="created_at")
    def created_display(self, obj: Refund) -> SafeString | str:
        url = reverse(f"{self.admin_site.name}:django_etpay_refund_change", args=[obj.pk])
        return format_html('<a href="{}">{}</a>', url, _short_datetime(obj.created_at))

    @admin.display(description=_("session"), ordering="session")
    def session_display(self, obj: Refund) -> SafeString | str:
        return _session_link(self.admin_site.name, obj.session)

    @admin.display(description=_("amount"), ordering="amount")
    def amount_display(self, obj: Refund) -> str:
        return format_money(int(obj.amount), obj.session.currency)

    @admin.action(
        description=_("Mark the selected refund completed (done in ETpay's back-office)"),
        permissions=["request_refund"],
    )
    def complete_selected(
        self, request: HttpRequest, queryset: QuerySet[Refund]
    ) -> TemplateResponse | None:
        if queryset.count() != 1:
            # Each transfer back has its own reference.
            self.message_user(
                request, _("Select exactly one refund to mark completed."), messages.ERROR
            )
            return None
        form, page = _action_form(
            self,
            request,
            queryset,
            CompleteRefundForm,
            title=str(_("Mark a refund completed")),
            intro=str(_("Give ETpay's reference of the transfer back, from its back-office.")),
            submit=str(_("Mark completed")),
        )
        if form is None:
            return page
        refund = queryset.get()
        try:
            refunds.complete_refund(refund, reference=form.cleaned_data["reference"])
        except EtpayRefundError as err:
            self.message_user(request, str(err), messages.ERROR)
            return None
        self.message_user(request, _("Refund marked completed."), messages.SUCCESS)
        return None

    @admin.action(
        description=_("Mark the selected refunds failed"), permissions=["request_refund"]
    )
    def fail_selected(
        self, request: HttpRequest, queryset: QuerySet[Refund]
    ) -> TemplateResponse | None:
        form, page = _action_form(
            self,
            request,
            queryset,
            FailRefundForm,
            title=str(_("Mark refunds failed")),
            intro=str(_("Their amounts no longer count against what was paid.")),
            submit=str(_("Mark failed")),
        )
        if form is None:
            return page
        failed = 0
        for refund in queryset.order_by("pk"):
            try:
                refunds.fail_refund(refund, reason=form.cleaned_data["reason"])
            except EtpayRefundError as err:
                self.message_user(request, str(err), messages.WARNING)
            else:
                failed += 1
        self.message_user(
            request,
            ngettext("%(count)d refund marked failed.", "%(count)d refunds marked failed.", failed)
            % {"count": failed},
            messages.SUCCESS if failed else messages.WARNING,
        )
        return None
