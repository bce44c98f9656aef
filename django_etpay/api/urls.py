"""The REST API's URLs: include them beside ``django_etpay.urls``, under the same prefix.

    path("etpay/", include("django_etpay.urls")),
    path("etpay/", include("django_etpay.api.urls")),

gives ``etpay/api/sessions/`` (``django_etpay_api:sessions``, POST),
``etpay/api/sessions/<token>/`` (``django_etpay_api:session``, GET) and ``etpay/api/schema/``
(``django_etpay_api:schema``, the OpenAPI schema).
"""

from __future__ import annotations

from django.urls import path

from django_etpay.api import views

app_name = "django_etpay_api"

#: The two session endpoints (what the schema describes).
session_urlpatterns = [
    path("api/sessions/", views.SessionCreateView.as_view(), name="sessions"),
    path("api/sessions/<str:token>/", views.SessionStatusView.as_view(), name="session"),
]

urlpatterns = [
    *session_urlpatterns,
    path("api/schema/", views.SchemaView.as_view(), name="schema"),
]
