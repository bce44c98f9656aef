"""Settings for the servers and workers the heavy tests start as separate processes.

The test settings, on the test run's own PostgreSQL database (``ETPAY_TEST_PG*``), with ETpay's
API at ``ETPAY_TEST_API_URL`` and the lease of completion effects from
``ETPAY_TEST_EFFECT_RETRY_AFTER`` (seconds). With ``ETPAY_TEST_BLOCK_DIR`` set, a receiver of
``payment_completed`` blocks after commit until the test releases it (see
``tests/blocking_receiver.py``).
"""

from __future__ import annotations

import os

from tests.settings import *  # noqa: F403

ETPAY = {
    **ETPAY,  # noqa: F405
    "API_URL": os.environ.get("ETPAY_TEST_API_URL", "http://127.0.0.1:9"),
    "EFFECT_RETRY_AFTER": float(os.environ.get("ETPAY_TEST_EFFECT_RETRY_AFTER", "600")),
}
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "loggers": {"django_etpay": {"level": "INFO"}},
}

if os.environ.get("ETPAY_TEST_BLOCK_DIR"):
    import tests.blocking_receiver  # noqa: F401 - connects the receiver
