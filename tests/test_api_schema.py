"""The OpenAPI schema: published at a URL, checked into docs/, and never stale."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from django.urls import include, path
from rest_framework.renderers import JSONOpenAPIRenderer
from rest_framework.test import APIClient

from django_etpay import __version__
from django_etpay.api.schema import openapi_schema

CHECKED_IN = Path(__file__).resolve().parent.parent / "docs" / "openapi.json"

#: A project that mounts the API somewhere else (ROOT_URLCONF = __name__).
urlpatterns: list[Any] = [
    path("etpay/", include("django_etpay.urls")),
    path("shop/payments/", include("django_etpay.api.urls")),
]


def test_the_checked_in_schema_is_up_to_date() -> None:
    """Regenerate with ``ETPAY_TEST_UPDATE_SCHEMA=1 pytest tests/test_api_schema.py``."""
    current = openapi_schema()
    if os.environ.get("ETPAY_TEST_UPDATE_SCHEMA") == "1":
        CHECKED_IN.write_bytes(JSONOpenAPIRenderer().render(current) + b"\n")
    checked_in = json.loads(CHECKED_IN.read_text(encoding="utf-8"))
    regenerate = "ETPAY_TEST_UPDATE_SCHEMA=1 pytest tests/test_api_schema.py"
    assert checked_in == current, f"docs/openapi.json is stale: run {regenerate}"


def test_the_schema_describes_both_operations_completely() -> None:
    schema = openapi_schema()
    assert schema["openapi"].startswith("3.")
    assert schema["info"]["version"] == __version__
    create = schema["paths"]["/etpay/api/sessions/"]["post"]
    retrieve = schema["paths"]["/etpay/api/sessions/{token}/"]["get"]
    assert set(create["responses"]) == {
        "201", "400", "401", "403", "404", "406", "415", "429", "502", "504"
    }  # fmt: skip
    assert set(retrieve["responses"]) == {"200", "304", "401", "403", "404", "406", "429"}
    body = create["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/SessionCreate"}
    components = schema["components"]["schemas"]
    assert set(components["SessionCreate"]["properties"]) == {
        "order", "customer_email", "user_bank_code", "user_rut", "customer_phone", "target_flow"
    }  # fmt: skip
    assert "widget" in components["SessionCreated"]["required"]
    assert "widget" not in components["Session"]["properties"]


def test_no_secret_field_is_described() -> None:
    text = json.dumps(openapi_schema()).lower()
    assert 'signature_token"' not in text.replace("signature_token or", "")
    for component in openapi_schema()["components"]["schemas"].values():
        assert "signature_token" not in component.get("properties", {})
        assert "merchant_api_token" not in component.get("properties", {})


@pytest.mark.urls("tests.api_urls")
def test_the_schema_is_published_without_authentication() -> None:
    response = APIClient().get("/etpay/api/schema/")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/vnd.oai.openapi+json")
    assert json.loads(response.content) == openapi_schema()


@pytest.mark.urls("tests.api_urls")
def test_the_schema_is_also_served_as_plain_json() -> None:
    response = APIClient().get("/etpay/api/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/json")


@pytest.mark.urls(__name__)
def test_the_published_schema_has_the_paths_of_this_project() -> None:
    response = APIClient().get("/shop/payments/api/schema/")
    paths = set(json.loads(response.content)["paths"])
    assert paths == {"/shop/payments/api/sessions/", "/shop/payments/api/sessions/{token}/"}


def test_a_schema_view_mounted_alone_describes_the_default_paths(settings: Any) -> None:
    from types import ModuleType

    from django_etpay.api.views import SchemaView

    urlconf = ModuleType("schema_only_urls")
    urlconf.urlpatterns = [path("docs/schema/", SchemaView.as_view())]  # type: ignore[attr-defined]
    settings.ROOT_URLCONF = urlconf
    response = APIClient().get("/docs/schema/")
    assert response.status_code == 200
    assert set(json.loads(response.content)["paths"]) == {
        "/etpay/api/sessions/", "/etpay/api/sessions/{token}/"
    }  # fmt: skip
