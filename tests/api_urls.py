"""The test URLconf plus the REST API (the API is opt-in, so the default one leaves it out)."""

from __future__ import annotations

from django.urls import include, path

from tests.urls import urlpatterns as base_urlpatterns

urlpatterns = [
    *base_urlpatterns,
    path("etpay/", include("django_etpay.api.urls")),
]
