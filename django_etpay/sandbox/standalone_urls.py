"""URLconf of the standalone sandbox: the sandbox at the root of its own port."""

from __future__ import annotations

from django.urls import include, path

urlpatterns = [path("", include("django_etpay.sandbox.urls"))]
