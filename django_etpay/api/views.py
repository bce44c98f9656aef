"""The API's views: create a session, read its status, publish the OpenAPI schema.

Both session endpoints answer JSON only, and read their authentication, permission and
throttle classes from ``ETPAY`` when a request arrives (a subclass that sets its own
``authentication_classes``, ``permission_classes`` or ``throttle_classes`` keeps them). They
never answer with a traceback, ``signature_token`` or a credential.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from django.conf import settings
from django.urls import NoReverseMatch, reverse
from django.utils.cache import patch_cache_control, patch_vary_headers
from django.utils.translation import gettext as _
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, SessionAuthentication
from rest_framework.permissions import AllowAny
from rest_framework.renderers import JSONOpenAPIRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.throttling import BaseThrottle
from rest_framework.views import APIView

from django_etpay.api import conf as api_conf
from django_etpay.api import permissions, throttling
from django_etpay.api import schema as api_schema
from django_etpay.api.parsers import StrictJSONParser
from django_etpay.api.serializers import (
    SessionCreatedSerializer,
    SessionCreateSerializer,
    SessionSerializer,
)
from django_etpay.exceptions import (
    EtpayAPIError,
    EtpayConfigurationError,
    EtpayTimeoutError,
    EtpayValidationError,
)
from django_etpay.models import PaymentSession
from django_etpay.services import session_for_order
from django_etpay.views import login_not_required, non_atomic_requests_everywhere

logger = logging.getLogger("django_etpay.api")

#: The ``initialize_session`` arguments an order hook may return.
SESSION_ARGUMENTS: frozenset[str] = frozenset(
    {
        "merchant_order_id",
        "order_amount",
        "customer_email",
        "metadata",
        "user_bank_code",
        "user_rut",
        "is_rut_block",
        "payment_completed_url",
        "payment_cancellation_url",
        "payment_webhook_url",
        "concat",
        "merchant",
        "target_flow",
        "customer_phone",
    }
)
#: The ``widget_config`` options an order hook may return.
WIDGET_ARGUMENTS: frozenset[str] = frozenset(
    {"success_url", "failure_url", "button_text", "open_on_load"}
)
#: What the payer may send and the hook may override.
PAYER_ARGUMENTS: tuple[str, ...] = (
    "customer_email",
    "user_bank_code",
    "user_rut",
    "customer_phone",
    "target_flow",
)

#: ETpay's session tokens fit this column; a longer one cannot name a session.
MAX_TOKEN_LENGTH = 255


class EtpayAPIView(APIView):
    """Base of the session endpoints: JSON in and out, classes from ``ETPAY``, safe caching."""

    renderer_classes = [JSONRenderer]
    parser_classes = [StrictJSONParser]
    #: The key of this view's rate in ``ETPAY["API_THROTTLE_RATES"]``.
    throttle_scope: str = ""

    @classmethod
    def as_view(cls, **initkwargs: Any) -> Any:
        # The API's own permission classes decide who may call it: Django's
        # LoginRequiredMiddleware (5.1+) would answer API clients with a login page.
        return login_not_required(super().as_view(**initkwargs))

    def _own(self, attribute: str) -> bool:
        """Whether a subclass (or ``as_view(...)``) set ``attribute`` itself."""
        if attribute in vars(self):
            return True
        for klass in type(self).__mro__:
            if klass is EtpayAPIView:
                return False
            if attribute in vars(klass):
                return True
        return False

    def get_authenticators(self) -> list[BaseAuthentication]:
        if self._own("authentication_classes"):
            return super().get_authenticators()
        classes = api_conf.load_classes("API_AUTHENTICATION_CLASSES")
        if classes is None:
            # DRF has imported its dotted paths by now; the stubs still call them strings.
            defaults: Any = api_settings.DEFAULT_AUTHENTICATION_CLASSES
            classes = list(defaults)
        return [auth() for auth in classes]

    def get_permissions(self) -> Sequence[Any]:
        if self._own("permission_classes"):
            return super().get_permissions()
        return [perm() for perm in api_conf.load_classes("API_PERMISSION_CLASSES") or []]

    def get_throttles(self) -> list[BaseThrottle]:
        if self._own("throttle_classes"):
            return super().get_throttles()
        return [throttle() for throttle in api_conf.load_classes("API_THROTTLE_CLASSES") or []]

    def check_permissions(self, request: Request) -> None:
        super().check_permissions(request)
        # DRF checks CSRF only for users its SessionAuthentication signed in. A guest's
        # browser carries a session cookie too (the cart lives in it), so a cross-site page
        # must not be able to act with it either.
        if (
            request.method not in ("GET", "HEAD", "OPTIONS", "TRACE")
            and not request.user.is_authenticated
            and settings.SESSION_COOKIE_NAME in request.COOKIES
        ):
            SessionAuthentication().enforce_csrf(request)

    def finalize_response(
        self, request: Request, response: Response, *args: Any, **kwargs: Any
    ) -> Response:
        response = super().finalize_response(request, response, *args, **kwargs)
        if not response.has_header("Cache-Control"):
            patch_cache_control(response, private=True, no_store=True)
        patch_vary_headers(response, ("Authorization", "Cookie"))
        return response

    def get_serializer_context(self) -> dict[str, Any]:
        """What the output serializers need to build absolute URLs."""
        match = getattr(self.request, "resolver_match", None)
        return {"request": self.request, "namespace": getattr(match, "namespace", "")}


class SessionCreateView(EtpayAPIView):
    """``POST api/sessions/``: create an ETpay session for the order the shop's hook names.

    The body is what the payer may choose (:class:`SessionCreateSerializer`); the order, its
    amount and everything else sent to ETpay come from :meth:`get_order`. Replies: 201 with
    the session and the widget configuration; 400 with errors per field; 404 when the hook
    finds no order; 502 when ETpay failed and 504 when it did not answer in time, both with
    the id of the session row kept with the reason.

    The view does not run inside ``ATOMIC_REQUESTS``: no transaction is held open while
    ETpay answers, and the row of a failed call is kept.
    """

    http_method_names = ["post"]
    throttle_scope = throttling.CREATE_SCOPE
    schema = api_schema.SessionsSchema(
        operation="create",
        request_serializer=SessionCreateSerializer,
        response_serializer=SessionCreatedSerializer,
    )

    @classmethod
    def as_view(cls, **initkwargs: Any) -> Any:
        return non_atomic_requests_everywhere(super().as_view(**initkwargs))

    def get_order(self, request: Request, data: dict[str, Any]) -> Mapping[str, Any] | None:
        """Map the request to what is paid: the shop's hook, ``ETPAY["API_ORDER_HOOK"]``.

        ``data`` holds the validated body (``order``, and the payer's ``customer_email``,
        ``user_bank_code`` and ``user_rut`` when sent). Return a mapping with at least
        ``merchant_order_id`` and ``order_amount`` (any other ``initialize_session``
        argument, and the widget options ``success_url``, ``failure_url``, ``button_text``,
        ``open_on_load``), or ``None`` when there is no such order for this request (404).
        Raise DRF's ``ValidationError``, ``PermissionDenied`` or ``NotFound`` to refuse with
        your own message. Override this in a subclass instead of setting the hook if you
        prefer.
        """
        hook = api_conf.load_callable("API_ORDER_HOOK")
        if hook is None:
            raise EtpayConfigurationError(
                'Set ETPAY["API_ORDER_HOOK"] to the function that maps an API request to '
                "the order and amount to pay, or subclass SessionCreateView and override "
                "get_order()."
            )
        order: Mapping[str, Any] | None = hook(request, data)
        return order

    def session_created(
        self, request: Request, session: PaymentSession, order: Mapping[str, Any]
    ) -> None:
        """Called after ETpay created ``session`` for ``order`` (e.g. to link it to the order)."""

    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = SessionCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        payer: dict[str, Any] = dict(serializer.validated_data)
        order = self.get_order(request, payer)
        if order is None:
            raise exceptions.NotFound(_("There is no order to pay here."))
        arguments, widget_options = split_order(order, payer)
        try:
            session = session_for_order(**arguments, request=request._request)
        except EtpayValidationError as err:
            raise exceptions.ValidationError(err.errors) from None
        except EtpayAPIError as err:
            return self.etpay_error_response(err)
        permissions.remember_session(request, session)
        self.session_created(request, session, order)
        context = {**self.get_serializer_context(), "widget_options": widget_options}
        data = SessionCreatedSerializer(session, context=context).data
        headers = {"Location": data["status_url"]} if data.get("status_url") else None
        return Response(data, status=201, headers=headers)

    def etpay_error_response(self, err: EtpayAPIError) -> Response:
        """502 (ETpay failed) or 504 (ETpay did not answer in time), without ETpay's text.

        ETpay's own message stays on the session row and in the log: it is for the shop's
        staff, not for the payer's browser.
        """
        timeout = isinstance(err, EtpayTimeoutError)
        if timeout:
            detail = _("ETpay did not answer in time. Please try again in a moment.")
        else:
            detail = _("ETpay could not open the payment. Please try again in a moment.")
        logger.warning(
            "API: ETpay failed to create a session (row %s, %s, outcome %s)",
            err.session_id,
            err.code,
            "unknown" if err.outcome_unknown else "known",
        )
        body = {
            "detail": detail,
            "code": err.code,
            "session_id": err.session_id,
            "outcome_unknown": err.outcome_unknown,
        }
        return Response(body, status=504 if timeout else 502)


def split_order(
    order: Mapping[str, Any], payer: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``initialize_session`` arguments and widget options from an order hook's reply.

    The hook's values win; the payer's ``customer_email``, ``user_bank_code``, ``user_rut``,
    ``customer_phone`` and ``target_flow`` fill in the ones it does not set (a key set to
    ``None`` keeps the payer's value out).
    Raises :class:`TypeError` for a reply that is not a mapping of known keys with an order id
    and an amount: a bug in the hook, not the payer's mistake.
    """
    if not isinstance(order, Mapping):
        raise TypeError(f"The API order hook must return a mapping, not {type(order).__name__}.")
    unknown = set(order) - SESSION_ARGUMENTS - WIDGET_ARGUMENTS
    if unknown:
        raise TypeError(f"The API order hook returned unknown keys: {', '.join(sorted(unknown))}.")
    missing = {"merchant_order_id", "order_amount"} - set(order)
    if missing:
        raise TypeError(f"The API order hook must return {' and '.join(sorted(missing))}.")
    arguments = {key: value for key, value in order.items() if key in SESSION_ARGUMENTS}
    for key in PAYER_ARGUMENTS:
        if key not in order and payer.get(key) is not None:
            arguments[key] = payer[key]
    options = {key: value for key, value in order.items() if key in WIDGET_ARGUMENTS}
    return arguments, options


class SessionStatusView(EtpayAPIView):
    """``GET api/sessions/<token>/``: a session's status, for polling.

    Visible only to whom ``ETPAY["API_VISIBILITY_HOOK"]`` allows (default: the user who created
    it, the guest browser that created it, staff); anyone else gets 404, as for a token that
    does not exist. Replies carry ``Cache-Control: private, no-cache`` and an ``ETag``: a
    poller revalidates every time and gets 304 while nothing changed.
    """

    http_method_names = ["get", "head"]
    throttle_scope = throttling.STATUS_SCOPE
    schema = api_schema.SessionsSchema(operation="retrieve", response_serializer=SessionSerializer)

    def can_view(self, request: Request, session: PaymentSession) -> bool:
        """Whether ``request`` may see ``session`` (``ETPAY["API_VISIBILITY_HOOK"]``)."""
        hook = api_conf.load_callable("API_VISIBILITY_HOOK")
        if hook is None:
            hook = permissions.can_view_session
        return bool(hook(request, session))

    def get(self, request: Request, token: str, *args: Any, **kwargs: Any) -> Response:
        session = None
        # PostgreSQL refuses NUL characters and lone surrogates outright (a DataError, i.e. a
        # 500); no token ETpay issues has them, so such a path names no session.
        if len(token) <= MAX_TOKEN_LENGTH and token.isprintable():
            session = PaymentSession.objects.filter(token=token).first()
        if session is None or not self.can_view(request, session):
            raise exceptions.NotFound(_("No such payment session."))
        data = SessionSerializer(session, context=self.get_serializer_context()).data
        digest = hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()
        etag = f'"{digest[:32]}"'
        not_modified = etag in _if_none_match(request)
        response = Response(status=304) if not_modified else Response(data)
        response["ETag"] = etag
        # Polling: a browser or app may keep the reply but must ask again every time; shared
        # caches must never keep one person's session.
        patch_cache_control(response, private=True, no_cache=True, max_age=0)
        return response


def _if_none_match(request: Request) -> set[str]:
    header = request.META.get("HTTP_IF_NONE_MATCH", "")
    return {part.strip().removeprefix("W/") for part in header.split(",") if part.strip()}


class SchemaView(APIView):
    """The API's OpenAPI 3 schema as JSON, with the paths where this project mounts it."""

    http_method_names = ["get", "head"]
    renderer_classes = [JSONOpenAPIRenderer, JSONRenderer]
    authentication_classes: list[type[BaseAuthentication]] = []
    permission_classes = [AllowAny]
    throttle_classes: list[type[BaseThrottle]] = []
    #: Not part of the schema it publishes.
    schema = None

    @classmethod
    def as_view(cls, **initkwargs: Any) -> Any:
        return login_not_required(super().as_view(**initkwargs))

    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        match = getattr(request, "resolver_match", None)
        prefix = api_schema.DEFAULT_PREFIX
        for namespace in (getattr(match, "namespace", ""), "django_etpay_api"):
            try:
                sessions_path = reverse(f"{namespace}:sessions")
            except NoReverseMatch:
                continue
            prefix = sessions_path.removesuffix("api/sessions/") or "/"
            break
        response = Response(api_schema.openapi_schema(prefix))
        patch_cache_control(response, public=True, max_age=3600)
        return response
