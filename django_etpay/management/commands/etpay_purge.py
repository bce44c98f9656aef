"""``manage.py etpay_purge``: remove raw bodies and payer personal data past an age."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_etpay import operations
from django_etpay.exceptions import EtpayConfigurationError


class Command(BaseCommand):
    """Purge personal data older than N days; keep amounts, statuses and the audit trail."""

    help = (
        "Remove the raw notification bodies, senders' addresses, the payer's claims and the "
        "payer's e-mail, RUT and account from rows older than --days (or ETPAY['PURGE_AFTER']). "
        "Amounts, statuses, tokens, outcomes and timestamps are kept. Sessions still pending "
        "are left until they are settled."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--days", type=int, help="age in days (default PURGE_AFTER)")
        parser.add_argument("--batch-size", type=int, default=500, help="rows per transaction")
        parser.add_argument("--dry-run", action="store_true", help="only count what would go")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1.")
        try:
            age = operations.purge_age(options["days"])
        except (ValueError, EtpayConfigurationError) as err:
            raise CommandError(str(err)) from None
        summary = operations.PurgeSummary()

        def progress(current: operations.PurgeSummary) -> None:
            summary.sessions, summary.notifications = current.sessions, current.notifications

        try:
            summary = operations.purge_personal_data(
                age,
                batch_size=options["batch_size"],
                dry_run=options["dry_run"],
                progress=progress,
            )
        except KeyboardInterrupt:
            self.stdout.write(summary.describe())
            raise CommandError(
                "Interrupted; what was done is saved. Run again to continue.", returncode=130
            ) from None
        self.stdout.write(summary.describe(dry_run=options["dry_run"]))
