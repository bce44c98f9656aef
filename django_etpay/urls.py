"""URLs ETpay and the payer's browser reach: include under any prefix.

    path("etpay/", include("django_etpay.urls"))

``return`` also accepts the JWT as a last path segment (``return/<JWT>/``, with or without the
trailing slash), because ETpay has not published how it attaches the JWT to the return URL.
"""

from __future__ import annotations

from django.urls import path

from django_etpay import views

app_name = "django_etpay"

urlpatterns = [
    path("notification/", views.NotificationView.as_view(), name="notification"),
    path("return/", views.ReturnView.as_view(), name="return"),
    path("return/<str:jwt>/", views.ReturnView.as_view(), name="return-jwt"),
    path("return/<str:jwt>", views.ReturnView.as_view()),
    path("widget-result/", views.WidgetResultView.as_view(), name="widget-result"),
]
