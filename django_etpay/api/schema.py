"""The API's OpenAPI 3 schema, built by DRF's own generator from the views and serializers.

``SessionsSchema`` describes each operation completely (every status it can answer, with its
body), so that clients can be generated from it and a schema-driven fuzzer can hold the API to
it. ``docs/openapi.json`` is this schema for the API mounted at ``/etpay/``; a test fails when
it is stale. Regenerate it with::

    python -m django generateschema --format openapi-json \\
        --generator_class django_etpay.api.schema.SchemaGenerator --file docs/openapi.json

(from a project whose settings include ``rest_framework``; ``ETPAY_TEST_UPDATE_SCHEMA=1
pytest tests/test_api_schema.py`` does the same from this repository).
"""

from __future__ import annotations

import copy
import functools
from typing import Any

from django.utils.translation import get_language
from rest_framework import serializers
from rest_framework.schemas import openapi

from django_etpay import __version__, validators

#: Where ``docs/openapi.json`` assumes the URLconf is included.
DEFAULT_PREFIX = "/etpay/"

TITLE = "django-etpay REST API"
DESCRIPTION = (
    "Create ETpay payment sessions from a single-page or mobile checkout and poll their "
    "status. The shop's server decides what is paid (its order hook); the browser only names "
    "the order. Authentication, permissions and throttling are the project's "
    '(ETPAY["API_AUTHENTICATION_CLASSES"], ["API_PERMISSION_CLASSES"], '
    '["API_THROTTLE_RATES"]). No response ever carries ETpay\'s signature_token or the '
    "merchant's credentials."
)

_DESCRIPTIONS = {
    "create": (
        "Create an ETpay session for the order the shop's order hook finds for this request, "
        "and return it with the widget configuration. The amount, order id, metadata and URLs "
        "are the shop's; the body only carries the order reference and what the payer typed."
    ),
    "retrieve": (
        "The session's status, for polling. Visible only to whom the visibility hook allows "
        "(by default the user or guest browser that created it, and staff); anyone else gets "
        "404. Answers carry Cache-Control: private, no-cache and an ETag (304 when unchanged)."
    ),
}

_VALIDATION_ERRORS: dict[str, Any] = {
    "type": "object",
    "description": "Problems per field (non_field_errors for the body as a whole).",
    "additionalProperties": {"type": "array", "items": {"type": "string"}},
}

#: Fields whose schema DRF cannot infer (method fields).
_FIELD_SCHEMAS: dict[str, dict[str, Any]] = {
    "amount_display": {"type": "string", "readOnly": True},
    "status_url": {"type": "string", "nullable": True, "readOnly": True},
}


#: What the shared validators accept, said in the schema's terms (they stay the judge).
_PAYER_FIELD_EXTRAS: dict[str, dict[str, Any]] = {
    "customer_email": {"format": "email"},
    "user_bank_code": {"enum": list(validators.BANK_CODES)},
}


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


class SessionsSchema(openapi.AutoSchema):
    """Describes one operation of the sessions API: ``create`` or ``retrieve``."""

    def __init__(
        self,
        *,
        operation: str,
        request_serializer: type[serializers.Serializer] | None = None,  # type: ignore[type-arg]
        response_serializer: type[serializers.Serializer] | None = None,  # type: ignore[type-arg]
    ) -> None:
        super().__init__(tags=["sessions"])
        self.operation = operation
        self.request_serializer_class = request_serializer
        self.response_serializer_class = response_serializer

    def get_operation_id(self, path: str, method: str) -> str:
        return f"{self.operation}Session"

    def get_description(self, path: str, method: str) -> str:
        return _DESCRIPTIONS[self.operation]

    def get_path_parameters(self, path: str, method: str) -> list[dict[str, Any]]:
        # DRF's version needs the uritemplate package for this; one parameter does not.
        if "{token}" not in path:
            return []
        return [
            {
                "name": "token",
                "in": "path",
                "required": True,
                "description": "The session token ETpay issued (the create reply's token).",
                "schema": {"type": "string", "maxLength": 255},
            }
        ]

    def get_request_serializer(self, path: str, method: str) -> Any:
        cls = self.request_serializer_class
        return cls() if cls is not None else None

    def get_response_serializer(self, path: str, method: str) -> Any:
        cls = self.response_serializer_class
        return cls() if cls is not None else None

    def map_field(self, field: Any) -> dict[str, Any]:
        from django_etpay.api.serializers import ValidatedCharField

        name = field.field_name or ""
        if name in _FIELD_SCHEMAS and isinstance(field, serializers.SerializerMethodField):
            return dict(_FIELD_SCHEMAS[name])
        result: dict[str, Any] = super().map_field(field)
        if isinstance(field, ValidatedCharField):
            result.update(_PAYER_FIELD_EXTRAS.get(name, {}))
        return result

    def get_components(self, path: str, method: str) -> dict[str, Any]:
        from django_etpay.api.serializers import ErrorSerializer, EtpayErrorSerializer

        components: dict[str, Any] = {}
        used = [
            self.get_request_serializer(path, method),
            self.get_response_serializer(path, method),
            ErrorSerializer(),
        ]
        if self.operation == "create":
            used.append(EtpayErrorSerializer())
            components["ValidationErrors"] = copy.deepcopy(_VALIDATION_ERRORS)
        for serializer in used:
            if serializer is not None:
                content = self.map_serializer(serializer)
                # Replies always carry every field (null where the schema allows it).
                if serializer is not used[0]:
                    content["required"] = list(content["properties"])
                components[self.get_component_name(serializer)] = content
        return components

    def get_responses(self, path: str, method: str) -> dict[str, Any]:
        error = _ref("Error")
        common = {
            "401": _json(
                "Not signed in (with an authentication that asks for credentials).", error
            ),
            "403": _json("Not allowed, not signed in, or a failed CSRF check.", error),
            "406": _json("The client does not accept JSON.", error),
            "429": _json("Too many requests; the Retry-After header says when to retry.", error),
        }
        if self.operation == "create":
            response = self.get_response_serializer(path, method)
            responses = {
                "201": _json(
                    "Created: the session, its status URL (also in Location) and the widget "
                    "configuration.",
                    _ref(self.get_component_name(response)),
                ),
                "400": _json(
                    "Invalid input: errors per field, or a body that is not JSON.",
                    {"anyOf": [_ref("ValidationErrors"), error]},
                ),
                **common,
                "404": _json("The shop's order hook found no order to pay.", error),
                "415": _json("The body is not application/json.", error),
                "502": _json(
                    "ETpay failed; the session row is kept with the reason.", _ref("EtpayError")
                ),
                "504": _json(
                    "ETpay did not answer in time; the session row is kept with the reason.",
                    _ref("EtpayError"),
                ),
            }
        else:
            response = self.get_response_serializer(path, method)
            responses = {
                "200": _json("The session's status.", _ref(self.get_component_name(response))),
                "304": {"description": "Not modified since the ETag sent in If-None-Match."},
                **common,
                "404": _json("No such session, or not visible to this request.", error),
            }
        return dict(sorted(responses.items()))


#: The URLconf whose session endpoints the schema describes.
URLCONF = "django_etpay.api.urls"


class SchemaGenerator(openapi.SchemaGenerator):
    """DRF's OpenAPI generator, limited to this API and with its title and version.

    ``url`` is where the URLconf ``django_etpay.api.urls`` is included (``/etpay/`` unless
    given), so that ``manage.py generateschema --generator_class`` works without arguments.
    """

    def __init__(
        self,
        title: str | None = None,
        url: str | None = None,
        description: str | None = None,
        patterns: Any = None,
        urlconf: Any = None,
        version: str | None = None,
    ) -> None:
        super().__init__(
            title=title or TITLE,
            url=url or DEFAULT_PREFIX,
            description=description or DESCRIPTION,
            patterns=patterns,
            # Named, not imported: the URLconf imports the views, which import this module.
            # The schema view itself is left out (its ``schema`` is None).
            urlconf=urlconf if urlconf is not None or patterns is not None else URLCONF,
            version=version or __version__,
        )


@functools.lru_cache(maxsize=32)
def _schema(prefix: str, language: str | None) -> dict[str, Any]:
    schema: Any = SchemaGenerator(url=prefix).get_schema(request=None, public=True)
    return dict(schema)


def openapi_schema(prefix: str = DEFAULT_PREFIX) -> dict[str, Any]:
    """The OpenAPI schema (a fresh copy) with the API mounted at ``prefix``."""
    return copy.deepcopy(_schema(prefix, get_language()))
