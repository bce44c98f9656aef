"""HTTP endpoints (replaced by the confirmation work)."""

from __future__ import annotations

from django.views import View


class NotificationView(View):
    http_method_names = ["post"]


class ReturnView(View):
    http_method_names = ["get"]


class WidgetResultView(View):
    http_method_names = ["post"]
