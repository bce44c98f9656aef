"""A ``payment_completed`` receiver that stops between commit and the shop's work.

Imported by ``tests/subprocess_settings.py`` when ``ETPAY_TEST_BLOCK_DIR`` is set. When the
signal arrives (after commit), it writes ``entered`` (holding its process id) into that folder,
then waits until the test creates ``release`` there; only then does it do its work (adding a
line to ``fulfilled``). The crash test kills the process while it waits.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from django_etpay import signals

FOLDER = Path(os.environ["ETPAY_TEST_BLOCK_DIR"])

#: Upper bound on the wait, so that a failed test never leaves a worker blocked for good.
MAX_WAIT_SECONDS = 120.0


def block_then_fulfil(sender: Any, session: Any, **kwargs: Any) -> None:
    (FOLDER / "entered").write_text(f"{os.getpid()} {session.pk}")
    deadline = time.monotonic() + MAX_WAIT_SECONDS
    while not (FOLDER / "release").exists():
        if time.monotonic() > deadline:
            raise TimeoutError("the test never released the receiver")
        time.sleep(0.05)
    with (FOLDER / "fulfilled").open("a") as fulfilled:
        fulfilled.write(f"{session.pk} {os.getpid()}\n")


signals.payment_completed.connect(block_then_fulfil, dispatch_uid="tests-blocking-receiver")
