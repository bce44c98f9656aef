"""The test project's URLs plus the floor view the notification benchmark compares against."""

from __future__ import annotations

from django.urls import path

from benchmarks.floor import notification_floor
from tests.urls import urlpatterns as test_urlpatterns

urlpatterns = [
    *test_urlpatterns,
    path("floor/notification/", notification_floor, name="notification-floor"),
]
