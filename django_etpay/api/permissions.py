"""Who may see a session's status.

The API's permission classes (``ETPAY["API_PERMISSION_CLASSES"]``) say who may call it at all;
the visibility hook (``ETPAY["API_VISIBILITY_HOOK"]``) says who may see one session. A session
that may not be seen is answered 404, exactly like one that does not exist, so that its
existence is not revealed either.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from rest_framework.request import Request

from django_etpay.models import PaymentSession

#: Key in the browser's Django session listing the tokens of sessions it created as a guest.
REMEMBERED_KEY = "django_etpay_api_sessions"
#: How many of a guest's sessions are remembered (the most recent ones).
MAX_REMEMBERED = 20


def _django_session(request: Request | HttpRequest) -> Any:
    # Absent without SessionMiddleware (e.g. a mobile-only API project).
    return getattr(request, "session", None)


def remember_session(request: Request | HttpRequest, session: PaymentSession) -> None:
    """Note in a guest's Django session that this browser created ``session``.

    Signed-in users are recognised by ``session.created_by`` instead, so nothing is stored
    for them (and no Django session is started for token-authenticated apps).
    """
    store = _django_session(request)
    user = getattr(request, "user", None)
    if store is None or not session.token or (user is not None and user.is_authenticated):
        return
    tokens = [t for t in store.get(REMEMBERED_KEY, []) if t != session.token]
    store[REMEMBERED_KEY] = [*tokens[-(MAX_REMEMBERED - 1) :], session.token]


def created_in_this_browser(request: Request | HttpRequest, session: PaymentSession) -> bool:
    """Whether this browser's Django session created ``session`` as a guest."""
    store = _django_session(request)
    if store is None or not session.token:
        return False
    return session.token in store.get(REMEMBERED_KEY, [])


def can_view_session(request: Request | HttpRequest, session: PaymentSession) -> bool:
    """The default visibility hook: staff, the user who created it, or the guest's browser.

    - an active staff user sees every session;
    - a signed-in user sees the sessions created by a request of theirs
      (``PaymentSession.created_by``, set by ``initialize_session`` for any checkout);
    - a guest sees the sessions created through the API from the same browser session.

    Anyone else gets a 404. Replace it with ``ETPAY["API_VISIBILITY_HOOK"]`` (for instance to
    let a signed-in customer see every session of their own orders).
    """
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        if user.is_active and user.is_staff:
            return True
        if session.created_by_id is not None and session.created_by_id == user.pk:
            return True
    return created_in_this_browser(request, session)
