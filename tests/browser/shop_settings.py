"""The example shop as the browser tests serve it: its own settings, plus a strict CSP.

Served by ``tests/browser/conftest.py`` on ``127.0.0.1:SHOP_PORT``. The tests open the shop
as ``http://localhost:SHOP_PORT`` and its sandbox as ``http://127.0.0.1:SHOP_PORT/sandbox``:
two origins, so that the widget's origin checks and the funnel's ``frame-ancestors`` are
exercised by the browser for real. Every shop page carries a Content-Security-Policy with a
per-response script nonce (django-csp), which the widget tag must pick up.
"""

from __future__ import annotations

import os

from csp.constants import NONCE, SELF
from shopsite.settings import *  # noqa: F403 - extend the shop's own settings
from shopsite.settings import ETPAY, MIDDLEWARE

_PORT = os.environ["SHOP_PORT"]
_SANDBOX = f"http://127.0.0.1:{_PORT}/sandbox"

# runserver serves the widget's static files only with DEBUG on.
DEBUG = True
ETPAY = {
    **ETPAY,
    "API_URL": _SANDBOX,
    "PMT_URL": _SANDBOX,
    # Short enough for the timeout test, long enough for a loaded 2-core machine.
    "WIDGET_RESULT_TIMEOUT": float(os.environ.get("SHOP_WIDGET_RESULT_TIMEOUT", "4")),
    "WIDGET_HANDSHAKE_TIMEOUT": 1.5,
}

MIDDLEWARE = ["csp.middleware.CSPMiddleware", *MIDDLEWARE]
CONTENT_SECURITY_POLICY = {
    "EXCLUDE_URL_PREFIXES": ["/admin/"],
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF, NONCE],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "connect-src": [SELF],
        "frame-src": [f"http://127.0.0.1:{_PORT}"],
        "base-uri": [SELF],
    },
}
