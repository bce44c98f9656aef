from __future__ import annotations

from importlib.util import find_spec

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("etpay/", include("django_etpay.urls")),
    path("sandbox/", include("django_etpay.sandbox.urls")),
]

if find_spec("payments"):
    urlpatterns.append(path("payments/", include("payments.urls")))
