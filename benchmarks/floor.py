"""The floor of the notification view: a bare Django view doing one indexed SELECT and one INSERT.

It reads the same ``{"payment": "<JWT>"}`` body, takes the ``session_token`` claim without
verifying anything, finds the session by its unique (indexed) token and stores one
``Notification`` row. Nothing a real endpoint must do on top (size cap, signature check,
claim cross-checks, row lock, transition, signals) is done: whatever the app serves is
measured as a share of what this serves, in the same gunicorn, on the same database.
"""

from __future__ import annotations

import base64
import json

from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from django_etpay.models import Notification, PaymentSession

#: Marks the floor's rows, so that the benchmark's checks of the app's rows skip them.
FLOOR_DETAIL = "benchmark floor"


@csrf_exempt
def notification_floor(request: HttpRequest) -> HttpResponse:
    raw = request.body.decode()
    jwt = json.loads(raw)["payment"]
    segment = jwt.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    session = PaymentSession.objects.get(token=claims["session_token"])
    Notification.objects.create(
        session=session,
        channel=Notification.Channel.WEBHOOK,
        outcome=Notification.Outcome.ACCEPTED,
        detail=FLOOR_DETAIL,
        raw_body=raw,
    )
    return HttpResponse("OK")
