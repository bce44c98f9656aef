"""``manage.py etpay_sandbox``: run the ETpay sandbox on its own port, for this project.

It becomes ``python -m django_etpay.sandbox`` with this project's ``ETPAY`` credentials, so the
sandbox accepts exactly what the project sends. Point ``API_URL`` / ``PMT_URL`` at it.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_etpay import conf
from django_etpay.exceptions import EtpayConfigurationError


class Command(BaseCommand):
    """Serve the local ETpay sandbox until interrupted."""

    help = "Run the local ETpay sandbox (no real money) on its own port, for this project."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
        parser.add_argument("--port", type=int, default=8765, help="port to listen on")
        parser.add_argument("--database", help="SQLite file for the sandbox's sessions")

    def handle(self, *args: Any, **options: Any) -> None:
        if conf.get_config().get("ENVIRONMENT") != "sandbox":
            raise CommandError('The sandbox runs only with ETPAY["ENVIRONMENT"] = "sandbox".')
        if not 1 <= options["port"] <= 65535:
            raise CommandError(f"--port must be between 1 and 65535, not {options['port']}.")
        try:
            account = conf.get_merchant()
        except EtpayConfigurationError as err:
            raise CommandError(str(err)) from None
        # Credentials travel in the environment, never on a command line others can read.
        env = {
            **os.environ,
            "ETPAY_SANDBOX_MERCHANT_CODE": account.merchant_code,
            "ETPAY_SANDBOX_MERCHANT_API_TOKEN": account.merchant_api_token,
        }
        env.pop("DJANGO_SETTINGS_MODULE", None)
        command = [
            sys.executable,
            "-m",
            "django_etpay.sandbox",
            "--host",
            options["host"],
            "--port",
            str(options["port"]),
        ]
        if options["database"]:
            command += ["--database", options["database"]]
        self.stdout.flush()
        # Become the sandbox process: Ctrl-C and signals reach it directly, no child is left.
        os.execve(sys.executable, command, env)  # noqa: S606 - fixed argv
