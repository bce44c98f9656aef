"""Counts every payment signal in the log, so that a run under gunicorn can prove that each
fired at most once per session."""

from __future__ import annotations

import logging
from typing import Any

from django.apps import AppConfig

logger = logging.getLogger("tests.attack.signals")

#: Log lines look like ``ATTACK-SIGNAL payment_completed 42``.
MARKER = "ATTACK-SIGNAL"


class AttackConfig(AppConfig):
    name = "tests.attack"
    label = "attack"

    def ready(self) -> None:
        from django_etpay import signals

        for name in ("payment_completed", "payment_failed"):
            signal = getattr(signals, name)

            def receiver(sender: Any, session: Any, _name: str = name, **kwargs: Any) -> None:
                logger.info("%s %s %s", MARKER, _name, session.pk)

            signal.connect(receiver, weak=False, dispatch_uid=f"attack-{name}")
