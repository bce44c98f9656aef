"""A local stand-in for ETpay: its API, its payment funnel, its webhook and its JWTs.

Add ``"django_etpay.sandbox"`` to ``INSTALLED_APPS`` and mount it::

    path("sandbox/", include("django_etpay.sandbox.urls"))

then point ``ETPAY["API_URL"]`` and ``ETPAY["PMT_URL"]`` at ``http://127.0.0.1:8000/sandbox``.
Or run it on its own port with ``python -m django_etpay.sandbox --port 8765``. It answers only
while ``ETPAY["ENVIRONMENT"] == "sandbox"``.
"""
