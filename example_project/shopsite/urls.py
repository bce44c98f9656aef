"""URLs of the example shop."""

from __future__ import annotations

from django.conf import settings
from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("etpay/", include("django_etpay.urls")),
    path("etpay/", include("django_etpay.api.urls")),
    path("i18n/", include("django.conf.urls.i18n")),
    path("", include("shop.urls")),
]
if settings.SHOP_LOCAL_SANDBOX:
    urlpatterns.append(path("sandbox/", include("django_etpay.sandbox.urls")))
