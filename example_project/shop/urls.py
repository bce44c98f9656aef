"""URLs of the shop."""

from __future__ import annotations

from django.urls import path

from shop import api, views

app_name = "shop"

urlpatterns = [
    path("", views.product_list, name="products"),
    path("checkout/<slug:slug>/", views.checkout, name="checkout"),
    path("orders/<str:number>/", views.order_detail, name="order"),
    path("orders/<str:number>/pay/", views.pay, name="pay"),
    path("payment-result/", views.payment_result, name="payment-result"),
    path("spa/", api.spa, name="spa"),
    path("spa/orders/", api.create_order, name="spa-order"),
]
