"""``manage.py load_demo_products``: create the demo catalogue (safe to run again)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from shop.models import Product

DEMO_PRODUCTS = [
    ("cafe-de-grano", "Café de grano 250 g", "Tostado medio, origen Colombia.", 6990),
    ("taza-ceramica", "Taza de cerámica", "Hecha a mano en Pomaire.", 12990),
    ("prensa-francesa", "Prensa francesa", "Un litro, vidrio y acero.", 24990),
]


class Command(BaseCommand):
    """Create or update the demo products by slug."""

    help = "Load the example shop's demo products (idempotent)."

    def handle(self, *args: Any, **options: Any) -> None:
        created = 0
        for slug, name, description, price in DEMO_PRODUCTS:
            _, was_created = Product.objects.update_or_create(
                slug=slug, defaults={"name": name, "description": description, "price": price}
            )
            created += was_created
        self.stdout.write(f"Demo products: {created} created, {len(DEMO_PRODUCTS)} in total.")
