"""URLs ETpay and the payer's browser reach: include under any prefix.

    path("etpay/", include("django_etpay.urls"))
"""

from __future__ import annotations

from django.urls import path

from django_etpay import views

app_name = "django_etpay"

urlpatterns = [
    path("notification/", views.NotificationView.as_view(), name="notification"),
    path("return/", views.ReturnView.as_view(), name="return"),
    path("widget-result/", views.WidgetResultView.as_view(), name="widget-result"),
]
