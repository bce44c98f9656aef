# Hand-named: the shop's first schema (products and orders).

import django.db.models.deletion
from django.db import migrations, models

import shop.models


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("django_etpay", "0001_payment_sessions_and_notifications"),
    ]

    operations = [
        migrations.CreateModel(
            name="Product",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("name", models.CharField(max_length=100)),
                ("slug", models.SlugField(unique=True)),
                ("description", models.TextField(blank=True)),
                ("price", models.PositiveBigIntegerField(help_text="Price in whole pesos (CLP).")),
            ],
            options={
                "ordering": ["price"],
            },
        ),
        migrations.CreateModel(
            name="Order",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "number",
                    models.CharField(
                        default=shop.models.new_order_number, max_length=20, unique=True
                    ),
                ),
                ("quantity", models.PositiveIntegerField(default=1)),
                ("email", models.EmailField(max_length=254)),
                (
                    "amount",
                    models.PositiveBigIntegerField(help_text="Total in whole pesos (CLP)."),
                ),
                (
                    "status",
                    models.CharField(
                        choices=[
                            ("pending", "Awaiting payment"),
                            ("paid", "Paid"),
                            ("failed", "Payment failed"),
                        ],
                        default="pending",
                        max_length=16,
                    ),
                ),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("paid_at", models.DateTimeField(blank=True, null=True)),
                (
                    "payment_session",
                    models.ForeignKey(
                        blank=True,
                        help_text="The latest ETpay session opened for this order.",
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to="django_etpay.paymentsession",
                    ),
                ),
                (
                    "product",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="orders",
                        to="shop.product",
                    ),
                ),
            ],
            options={
                "ordering": ["-created_at"],
            },
        ),
    ]
