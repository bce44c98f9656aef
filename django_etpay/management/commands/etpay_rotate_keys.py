"""``manage.py etpay_rotate_keys``: re-encrypt every stored signature token with the current key.

Rotation, step by step:

1. Put the new secret first in ``ETPAY["SIGNATURE_KEYS"]`` and keep the old ones after it (or,
   with the default keys, move the old ``SECRET_KEY`` into ``SECRET_KEY_FALLBACKS``), and
   deploy: every key still opens, the new one encrypts.
2. Run ``manage.py etpay_rotate_keys``: each stored key is re-encrypted with the new secret.
3. Run ``manage.py etpay_rotate_keys --check``; when it reports nothing left, drop the old
   secrets.

It also encrypts keys found in clear (rows written by a release older than the encryption, or
by hand). ``--check`` changes nothing and exits with status 1 while any key is in clear, under an
old key, or unreadable. Keys that no configured secret opens are listed by session id, never
shown; the command then exits with status 1 too.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from django_etpay import crypto
from django_etpay.dispatch import write_alias
from django_etpay.exceptions import EtpayConfigurationError, EtpaySecretUnavailableError
from django_etpay.models import PaymentSession


class Command(BaseCommand):
    """Re-encrypt stored signature tokens with the first configured key."""

    help = "Re-encrypt every stored ETpay signature_token with the current key."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--check",
            action="store_true",
            help="change nothing; exit with status 1 if any key needs re-encrypting",
        )
        parser.add_argument(
            "--batch-size", type=int, default=500, help="rows read and written per transaction"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        check_only: bool = options["check"]
        batch_size: int = options["batch_size"]
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1.")
        try:
            crypto.get_fernet()
        except EtpayConfigurationError as err:
            raise CommandError(str(err)) from None
        counts = {"current": 0, "rotated": 0, "encrypted": 0}
        unreadable: list[int] = []
        # Read and written on one database: the write one, so that a replica's lag skips no row.
        alias = write_alias()
        sessions = PaymentSession.objects.using(alias)
        last_pk = 0
        while True:
            rows = list(
                sessions.filter(pk__gt=last_pk)
                .order_by("pk")
                .values_list("pk", "signature_token")[:batch_size]
            )
            if not rows:
                break
            last_pk = rows[-1][0]
            with transaction.atomic(using=alias):
                for pk, stored in rows:
                    kind, new = self._convert(str(stored or ""))
                    if kind == "unreadable":
                        unreadable.append(pk)
                    elif kind in counts:
                        counts[kind] += 1
                    if new is not None and not check_only:
                        sessions.filter(pk=pk).update(signature_token=crypto.SealedSecret(new))
        pending = counts["rotated"] + counts["encrypted"]
        verb = "need re-encrypting" if check_only else "re-encrypted"
        self.stdout.write(
            f"{counts['current']} keys already under the current key; "
            f"{counts['rotated']} under an older key and {counts['encrypted']} in clear {verb}; "
            f"{len(unreadable)} unreadable."
        )
        if unreadable:
            shown = ", ".join(str(pk) for pk in unreadable[:50])
            more = f" and {len(unreadable) - 50} more" if len(unreadable) > 50 else ""
            raise CommandError(
                f"No configured key opens the signature_token of sessions {shown}{more}. "
                'Add the secret they were encrypted with to ETPAY["SIGNATURE_KEYS"] (or '
                "SECRET_KEY_FALLBACKS) and run this again."
            )
        if check_only and pending:
            raise CommandError(f"{pending} keys are not under the current key yet.")

    @staticmethod
    def _convert(stored: str) -> tuple[str, str | None]:
        """(what the stored value is, its replacement or None)."""
        if not stored:
            return "empty", None
        if not stored.startswith(crypto.PREFIX):
            return "encrypted", crypto.encrypt(stored)
        if crypto.is_current(stored):
            return "current", None
        try:
            return "rotated", crypto.rotate(stored)
        except EtpaySecretUnavailableError:
            return "unreadable", None
