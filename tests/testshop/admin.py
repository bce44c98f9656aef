"""A shop's admin for its orders, as a shop would write it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.contrib import admin

from tests.testshop.models import Order

if TYPE_CHECKING:
    _OrderAdminBase = admin.ModelAdmin[Order]
else:
    _OrderAdminBase = admin.ModelAdmin


@admin.register(Order)
class OrderAdmin(_OrderAdminBase):
    list_display = ("number", "payment_session")
    list_filter = ("payment_session__status", "payment_session")
    search_fields = ("number", "=payment_session__merchant_order_id")
