"""``manage.py etpay_check``: is ETpay configured, and does its API accept these credentials?

For the default account and every alias in ``ETPAY["MERCHANTS"]``: the settings load, then one
status query for a session token that cannot exist. ETpay answers it with an empty list when
the credentials are good; nothing is created, no payment is started. Exit status 1 when any
account fails, so it fits a deploy pipeline.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from django.core import checks
from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_etpay import conf
from django_etpay.client import EtpayClient
from django_etpay.exceptions import EtpayAPIError, EtpayConfigurationError, EtpayHTTPError


class Command(BaseCommand):
    """Check the ETpay configuration of every merchant account, and that ETpay answers."""

    help = (
        "Check the ETPAY settings of the default account and every MERCHANTS alias, and that "
        "ETpay's status API answers with those credentials (no payment is created)."
    )

    requires_system_checks: list[str] = []  # it reports them itself, per account

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--merchant", help="check only this alias (default: every account)")
        parser.add_argument(
            "--offline", action="store_true", help="check the settings only; call nothing"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        failures = 0
        for message in checks.run_checks(include_deployment_checks=False):
            if str(message.id or "").startswith("django_etpay."):
                level = "ERROR" if message.is_serious() else "WARNING"
                self.stdout.write(f"{level} {message.id}: {message.msg}")
                failures += message.is_serious()
        aliases: list[str | None] = [None, *conf.merchant_aliases()]
        if options["merchant"] is not None:
            if options["merchant"] and options["merchant"] not in conf.merchant_aliases():
                raise CommandError(f"Unknown merchant alias {options['merchant']!r}.")
            aliases = [options["merchant"] or None]
        for alias in aliases:
            failures += not self._check(alias, offline=options["offline"])
        if failures:
            raise CommandError(f"{failures} problem(s) found.", returncode=1)
        self.stdout.write("ETpay configuration OK.")

    def _check(self, alias: str | None, *, offline: bool) -> bool:
        label = f"merchant {alias!r}" if alias else "default account"
        try:
            account = conf.get_merchant(alias)
        except EtpayConfigurationError as err:
            self.stdout.write(f"FAIL {label}: {err}")
            return False
        where = f"{account.merchant_code}, {account.environment}, {account.api_url}"
        if offline:
            self.stdout.write(f"ok   {label} ({where}): settings complete")
            return True
        probe = f"etpay-check-{secrets.token_hex(8)}"
        started = time.monotonic()
        try:
            with EtpayClient(alias) as client:
                entries = client.check_payment_status(session_token=probe)
        except EtpayHTTPError as err:
            if err.status_code in (401, 403):
                self.stdout.write(f"FAIL {label} ({where}): ETpay refused the credentials: {err}")
            else:
                self.stdout.write(f"FAIL {label} ({where}): {err}")
            return False
        except EtpayAPIError as err:
            self.stdout.write(f"FAIL {label} ({where}): ETpay did not answer: {err}")
            return False
        elapsed = (time.monotonic() - started) * 1000
        note = "" if not entries else f" (unexpectedly listed {len(entries)} payments)"
        self.stdout.write(f"ok   {label} ({where}): status API answered in {elapsed:.0f} ms{note}")
        return True
