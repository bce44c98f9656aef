"""``manage.py etpay_expire``: mark pending sessions older than ``SESSION_TTL`` expired."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_etpay import operations
from django_etpay.management import arguments


class Command(BaseCommand):
    """Expire pending sessions past their TTL, in batches."""

    help = (
        "Mark pending sessions older than SESSION_TTL (or --older-than) as expired and send "
        "session_expired for each. A payment that arrives later still marks a session paid. "
        "Run etpay_reconcile first, so that sessions ETpay saw paid are not expired."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--older-than",
            type=arguments.duration,
            help="expire pending sessions older than this (30m, 2h, 1d; default SESSION_TTL)",
        )
        parser.add_argument("--batch-size", type=int, default=500, help="sessions per transaction")
        parser.add_argument(
            "--dry-run", action="store_true", help="only count what would be expired"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1.")
        if options["dry_run"]:
            count = operations.expirable_sessions(options["older_than"]).count()
            self.stdout.write(f"Would expire {count} sessions.")
            return
        expired = 0

        def progress(total: int) -> None:
            nonlocal expired
            expired = total

        try:
            expired = operations.expire_due(
                older_than=options["older_than"],
                batch_size=options["batch_size"],
                progress=progress,
            )
        except KeyboardInterrupt:
            self.stdout.write(f"Expired {expired} sessions before the interruption.")
            raise CommandError(
                "Interrupted; what was done is saved. Run again to continue.", returncode=130
            ) from None
        self.stdout.write(f"Expired {expired} sessions.")
