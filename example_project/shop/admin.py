"""Admin for products and orders (ETpay sessions have their own admin in django_etpay)."""

from __future__ import annotations

from django.contrib import admin

from shop.models import Order, Product


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    list_display = ["name", "price"]
    prepopulated_fields = {"slug": ["name"]}


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    list_display = ["number", "product", "quantity", "amount", "status", "created_at", "paid_at"]
    list_filter = ["status"]
    search_fields = ["number", "email"]
    readonly_fields = ["number", "payment_session", "created_at", "paid_at"]
