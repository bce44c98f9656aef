"""Settings for the benchmarks: the test settings, served by gunicorn, quiet logs."""

from __future__ import annotations

import os

from tests.settings import *  # noqa: F403

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "loggers": {"django_etpay": {"level": "WARNING"}, "django.request": {"level": "CRITICAL"}},
}
# One connection per worker, kept between requests, as a production deployment would.
DATABASES["default"]["CONN_MAX_AGE"] = 60  # noqa: F405

# benchmarks/scale.py: a second merchant account (the admin's merchant filter) and ETpay's
# status API served locally for etpay_reconcile.
ETPAY = {
    **ETPAY,  # noqa: F405
    "API_URL": os.environ.get("ETPAY_BENCH_API_URL", ETPAY["API_URL"]),  # noqa: F405
    # benchmarks/reconcile.py: at least the reconcile concurrency it runs with.
    "POOL_SIZE": int(os.environ.get("ETPAY_BENCH_POOL_SIZE", "10")),
    "MERCHANTS": {
        "outlet": {
            "MERCHANT_CODE": "cl_outlet",
            "MERCHANT_API_TOKEN": "outlet-bench-token",
            "API_URL": os.environ.get("ETPAY_BENCH_API_URL", "https://api.outlet.test"),
            "PMT_URL": "https://pmt.outlet.test",
        }
    },
}
ROOT_URLCONF = "benchmarks.urls"

# Whether each commit waits for its WAL flush (PostgreSQL's default, "on"). The benchmark
# command sets "off" unless asked otherwise: on a shared virtual disk a flush takes from one
# to tens of milliseconds, which would drown what the library itself costs. Floor and app make
# the same number of commits either way.
_synchronous_commit = os.environ.get("ETPAY_BENCH_SYNCHRONOUS_COMMIT", "on")
if _synchronous_commit != "on":
    DATABASES["default"]["OPTIONS"] = {  # noqa: F405
        "options": f"-c synchronous_commit={_synchronous_commit}"
    }
