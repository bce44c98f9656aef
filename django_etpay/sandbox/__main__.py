"""Run the sandbox on its own port: ``python -m django_etpay.sandbox --port 8765``.

It prints the ``ETPAY`` settings a shop needs to use it. Credentials come from
``--merchant-code`` / ``--merchant-api-token`` or the ``ETPAY_SANDBOX_MERCHANT_CODE`` /
``ETPAY_SANDBOX_MERCHANT_API_TOKEN`` environment variables (which keep the token out of the
process list), else local demo values.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface, shared with ``manage.py etpay_sandbox``."""
    parser = argparse.ArgumentParser(
        prog="python -m django_etpay.sandbox",
        description="Run a local ETpay sandbox (no real money) on its own port.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8765, help="port to listen on")
    parser.add_argument("--merchant-code", help="merchant_code to accept")
    parser.add_argument(
        "--merchant-api-token",
        help="merchant_api_token to accept (prefer ETPAY_SANDBOX_MERCHANT_API_TOKEN)",
    )
    parser.add_argument("--database", help="SQLite file for the sandbox's sessions")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Configure the standalone settings, create the tables, print the settings, serve."""
    args = build_parser().parse_args(argv)
    host = f"[{args.host}]" if ":" in args.host else args.host
    base_url = f"http://{host}:{args.port}"
    os.environ["ETPAY_SANDBOX_BASE_URL"] = base_url
    if args.merchant_code:
        os.environ["ETPAY_SANDBOX_MERCHANT_CODE"] = args.merchant_code
    if args.merchant_api_token:
        os.environ["ETPAY_SANDBOX_MERCHANT_API_TOKEN"] = args.merchant_api_token
    if args.database:
        os.environ["ETPAY_SANDBOX_DATABASE"] = args.database
    os.environ["DJANGO_SETTINGS_MODULE"] = "django_etpay.sandbox.standalone_settings"

    import django
    from django.conf import settings
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0, interactive=False)
    code = settings.ETPAY["MERCHANT_CODE"]
    custom_token = bool(os.environ.get("ETPAY_SANDBOX_MERCHANT_API_TOKEN"))
    token_hint = "<the token you gave>" if custom_token else settings.ETPAY["MERCHANT_API_TOKEN"]
    sys.stdout.write(
        "ETpay sandbox - no real money\n"
        f"Point your shop at it:\n"
        f'    ETPAY = {{"ENVIRONMENT": "sandbox", "MERCHANT_CODE": "{code}",\n'
        f'             "MERCHANT_API_TOKEN": "{token_hint}",\n'
        f'             "API_URL": "{base_url}", "PMT_URL": "{base_url}"}}\n'
        f"Sessions are stored in {settings.DATABASES['default']['NAME']}\n"
    )
    sys.stdout.flush()
    call_command("runserver", f"{host}:{args.port}", use_reloader=False)


if __name__ == "__main__":
    main()
