"""URLs of the django-payments shop the browser test serves: the test URLs plus its checkout."""

from __future__ import annotations

from django.urls import path

from tests.paymentsshop import views
from tests.urls import urlpatterns as test_urlpatterns

urlpatterns = [
    path("shop/checkout/", views.checkout),
    path("shop/payments/<int:pk>/", views.payment_details),
    path("shop/payments/<int:pk>/<str:page>/", views.outcome),
    *test_urlpatterns,
]
