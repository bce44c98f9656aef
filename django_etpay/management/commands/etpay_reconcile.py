"""``manage.py etpay_reconcile``: ask ETpay about the sessions that need it, apply the answers.

Run it every few minutes (cron, Celery beat, or the reconcile task on your worker). It first
delivers again the completion effects whose receivers never finished (a worker died between
commit and receiver), then queries ETpay's status API for every session that is ``pending``
past ``SESSION_TTL`` or flagged ``needs_reconciliation``, in batches, with ``--concurrency``
threads at once and at most ``--max-per-second`` queries per second. ``--shard K/N`` lets N
processes (one per core or machine) share a backlog without asking about a session twice.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_etpay import conf, operations, outbox
from django_etpay.management import arguments


class Command(BaseCommand):
    """Reconcile due sessions with ETpay's status API, and re-deliver overdue effects."""

    help = (
        "Ask ETpay's status API about pending sessions past SESSION_TTL and sessions flagged "
        "needs_reconciliation, apply the answers, and re-deliver completion effects whose "
        "receivers never finished. Safe to interrupt and run again."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--older-than",
            type=arguments.duration,
            help="pending sessions older than this are due (30m, 2h, 1d; default SESSION_TTL)",
        )
        parser.add_argument(
            "--max-age",
            type=arguments.duration,
            help="leave sessions older than this alone (default RECONCILE_MAX_AGE; 0: any age)",
        )
        parser.add_argument(
            "--merchant",
            help='only sessions of this merchant alias ("--merchant=" for the default account)',
        )
        parser.add_argument("--batch-size", type=int, default=100, help="sessions per query")
        parser.add_argument("--limit", type=int, help="ask about at most this many sessions")
        parser.add_argument(
            "--max-errors",
            type=int,
            default=20,
            help="stop after this many failed calls in a row (0: never stop)",
        )
        parser.add_argument(
            "--concurrency",
            type=int,
            help="status queries in flight at once, one thread each (default "
            "RECONCILE_CONCURRENCY)",
        )
        parser.add_argument(
            "--max-per-second",
            type=float,
            help="status queries per second, all threads together (default "
            "RECONCILE_MAX_PER_SECOND: no limit)",
        )
        parser.add_argument(
            "--shard",
            type=arguments.shard,
            help="K/N: only the K-th of N disjoint shares of the due sessions, so that N "
            "processes share a backlog (1/4 to 4/4)",
        )
        parser.add_argument(
            "--no-effects", action="store_true", help="do not re-deliver overdue effects"
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="only say what is due; ask ETpay nothing, deliver nothing",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        merchant: str | None = options["merchant"]
        if merchant and merchant not in conf.merchant_aliases():
            raise CommandError(f'Unknown merchant alias {merchant!r}: see ETPAY["MERCHANTS"].')
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1.")
        if options["concurrency"] is not None and options["concurrency"] < 1:
            raise CommandError("--concurrency must be at least 1.")
        if options["max_per_second"] is not None and options["max_per_second"] <= 0:
            raise CommandError("--max-per-second must be above 0.")
        if options["limit"] is not None and options["limit"] < 1:
            raise CommandError("--limit must be at least 1 (leave it out for no limit).")
        if options["max_errors"] < 0:
            raise CommandError("--max-errors must be at least 0 (0: never stop).")
        due = operations.due_sessions(
            older_than=options["older_than"],
            max_age=options["max_age"],
            merchant=merchant,
            shard=options["shard"],
        )
        if options["dry_run"]:
            self._dry_run(due, effects=not options["no_effects"], verbosity=options["verbosity"])
            return
        total = due.count() if self.stdout.isatty() else None
        summary = operations.ReconcileSummary()

        def progress(current: operations.ReconcileSummary) -> None:
            if total is not None and (current.checked % 10 == 0 or current.checked == total):
                self.stdout.write(f"\r{current.checked}/{total} ", ending="")
                self.stdout.flush()

        try:
            operations.reconcile_due(
                older_than=options["older_than"],
                max_age=options["max_age"],
                merchant=merchant,
                batch_size=options["batch_size"],
                limit=options["limit"],
                max_consecutive_errors=options["max_errors"],
                deliver_effects=not options["no_effects"],
                summary=summary,
                progress=progress,
                concurrency=options["concurrency"],
                max_per_second=options["max_per_second"],
                shard=options["shard"],
            )
        except KeyboardInterrupt:
            self.stdout.write("")
            self.stdout.write(summary.describe())
            raise CommandError(
                "Interrupted; what was done is saved. Run again to continue.", returncode=130
            ) from None
        if total is not None:
            self.stdout.write("")
        self.stdout.write(summary.describe())
        for error in summary.errors:
            self.stderr.write(error)
        if summary.counts[operations.Outcome.ERROR] or summary.stopped:
            raise CommandError(
                "Some status queries failed; they are retried on the next run.", returncode=1
            )

    def _dry_run(self, due: Any, *, effects: bool, verbosity: int) -> None:
        if effects:
            self.stdout.write(f"Effects due for delivery: {outbox.due().count()}")
        self.stdout.write(f"Sessions due for a status query: {due.count()}")
        if verbosity >= 2:
            for session in due.order_by("pk").iterator(chunk_size=500):
                self.stdout.write(
                    f"  {session.pk}  {session.merchant_order_id}  {session.status}  "
                    f"created {session.created_at.isoformat()}"
                    + ("  flagged" if session.needs_reconciliation else "")
                )
