"""The test URLs plus a checkout endpoint, the way a shop exposes ``initialize_session``."""

from __future__ import annotations

import json
from typing import Any

from django.http import HttpRequest, JsonResponse
from django.urls import include, path
from django.views.decorators.csrf import csrf_exempt

from django_etpay.api.views import SESSION_ARGUMENTS
from django_etpay.exceptions import EtpayAPIError, EtpayValidationError
from django_etpay.services import initialize_session

#: The keyword arguments a checkout may pass through from its form: all but what names the
#: order, its amount and the account, which the shop decides.
FIELDS = tuple(sorted(SESSION_ARGUMENTS - {"merchant_order_id", "order_amount", "merchant"}))


@csrf_exempt
def checkout(request: HttpRequest) -> JsonResponse:
    """POST a JSON object of fields; answers the session, the validation errors, or 424.

    424 (Failed Dependency) when ETpay failed: the shop's own server did not, so the attack
    run can keep "5xx" for failures of the app itself.
    """
    try:
        data: Any = json.loads(request.body)
    except ValueError:
        return JsonResponse({"errors": {"body": ["not JSON"]}}, status=400)
    if not isinstance(data, dict):
        return JsonResponse({"errors": {"body": ["not an object"]}}, status=400)
    optional = {key: data[key] for key in FIELDS if key in data}
    try:
        session = initialize_session(
            data.get("merchant_order_id"), data.get("order_amount"), request=request, **optional
        )
    except EtpayValidationError as err:
        return JsonResponse({"errors": err.errors}, status=400)
    except EtpayAPIError as err:
        return JsonResponse(
            {"error": err.code, "outcome_unknown": err.outcome_unknown}, status=424
        )
    return JsonResponse(
        {
            "id": session.pk,
            "status": session.status,
            "token": session.token,
            "payment_url": session.payment_url,
        }
    )


urlpatterns = [
    path("attack/checkout/", checkout),
    path("", include("tests.urls")),
]
