"""URLs of the local ETpay sandbox: mount under any prefix.

    path("sandbox/", include("django_etpay.sandbox.urls"))

and set ``ETPAY["API_URL"] = ETPAY["PMT_URL"] = "http://127.0.0.1:8000/sandbox"``.
A ``faults/<list>/`` prefix on ``API_URL`` injects faults (see :mod:`django_etpay.sandbox.faults`).
"""

from __future__ import annotations

from django.apps import apps
from django.core.exceptions import ImproperlyConfigured
from django.urls import path

# Checked before the views import the sandbox's models, for a clearer message.
if not apps.is_installed("django_etpay.sandbox"):
    raise ImproperlyConfigured(
        'Add "django_etpay.sandbox" to INSTALLED_APPS to mount django_etpay.sandbox.urls.'
    )

from django_etpay.sandbox import views

app_name = "etpay_sandbox"

urlpatterns = [
    path("session/initialize", views.InitializeView.as_view(), name="initialize"),
    path(
        "merchant/check_payment_status",
        views.CheckPaymentStatusView.as_view(),
        name="check-payment-status",
    ),
    path(
        "faults/<str:faults>/session/initialize",
        views.InitializeView.as_view(),
        name="initialize-faults",
    ),
    path(
        "faults/<str:faults>/merchant/check_payment_status",
        views.CheckPaymentStatusView.as_view(),
        name="check-payment-status-faults",
    ),
    path("session/<str:token>", views.FunnelView.as_view(), name="funnel"),
    path("assets/<str:name>", views.asset, name="asset"),
]
