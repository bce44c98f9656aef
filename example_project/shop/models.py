"""Products and orders. Amounts are whole pesos of the shop's country (CLP, or MXN)."""

from __future__ import annotations

import secrets

from django.db import models
from django.urls import reverse
from django.utils.translation import gettext_lazy as _

from django_etpay.conf import account_currency
from django_etpay.money import format_money


def format_clp(value: int) -> str:
    """``24990`` -> ``$24.990 CLP``: the app's one format (``etpay_money`` in templates), in
    the shop's currency (``$24,990.00 MXN`` for a Mexican shop)."""
    return format_money(value, account_currency())


class Product(models.Model):
    """Something the shop sells."""

    name = models.CharField(max_length=100)
    slug = models.SlugField(unique=True)
    description = models.TextField(blank=True)
    price = models.PositiveBigIntegerField(help_text="Price in whole pesos (CLP).")

    class Meta:
        ordering = ["price"]

    def __str__(self) -> str:
        return self.name

    @property
    def price_display(self) -> str:
        """The price as a payer reads it."""
        return format_clp(self.price)


def new_order_number() -> str:
    """A short, unguessable order number such as ``SHOP-7F3A9C21``."""
    return f"SHOP-{secrets.token_hex(4).upper()}"


class Order(models.Model):
    """One single-item checkout."""

    class Status(models.TextChoices):
        """Where the order stands."""

        PENDING = "pending", _("Awaiting payment")
        PAID = "paid", _("Paid")
        FAILED = "failed", _("Payment failed")

    number = models.CharField(max_length=20, unique=True, default=new_order_number)
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="orders")
    quantity = models.PositiveIntegerField(default=1)
    email = models.EmailField()
    amount = models.PositiveBigIntegerField(help_text="Total in whole pesos (CLP).")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    payment_session = models.ForeignKey(
        "django_etpay.PaymentSession",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="The latest ETpay session opened for this order.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    paid_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Order {self.number}"

    def get_absolute_url(self) -> str:
        return reverse("shop:order", args=[self.number])

    @classmethod
    def place(cls, product: Product, quantity: int, email: str) -> Order:
        """Create a pending order; its amount is the catalogue's price, never the browser's."""
        return cls.objects.create(
            product=product, quantity=quantity, email=email, amount=product.price * quantity
        )

    @property
    def amount_display(self) -> str:
        """The total as a payer reads it."""
        return format_clp(self.amount)
