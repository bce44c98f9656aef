"""ASGI entry point for the uvicorn server of ``tests/test_asgi.py``.

With ``ETPAY_TEST_TRACEMALLOC`` set, memory is traced from before Django is imported, so that
the probe view of ``tests/asgi_urls.py`` can tell how much the server holds.
"""

from __future__ import annotations

import os
import tracemalloc

if os.environ.get("ETPAY_TEST_TRACEMALLOC"):
    tracemalloc.start()

# Imported after tracing started, so that everything Django allocates is traced.
from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.asgi_settings")
application = get_asgi_application()
