"""Pacing calls to ETpay from several threads: a shared rate limit and backoff on 429 and 5xx.

:class:`Pacer` is shared by every worker thread of one run. Each call first takes a slot from
it (:meth:`Pacer.acquire`): slots are handed out at most ``max_per_second`` apart in time, and
never before a pause asked for by a ``429 Too Many Requests`` (:meth:`Pacer.pause`), so that
when ETpay says "slow down" every thread slows down, not only the one that was told.
:func:`backoff_delay` says how long to wait before asking again after a 429 or a 5xx.

The clock and the sleep are injectable, so tests count slots with a fake clock instead of
timing anything.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from django_etpay.exceptions import EtpayAPIError, EtpayHTTPError

#: First wait after a 429 or a 5xx, in seconds; doubled after each further one.
BACKOFF_BASE = 0.5

#: Longest wait before asking about one session again. A ``Retry-After`` longer than this is
#: not waited for: the session is counted as failed to ask and is retried by the next run.
BACKOFF_CAP = 30.0


class Pacer:
    """A rate limit shared by threads, with a pause every thread honours.

    ``max_per_second`` of ``None`` (or 0) sets no rate: only pauses hold calls back. Slots are
    reserved under a lock and waited for outside it, so threads never wait on each other's
    sleep, and ``n`` calls over any span take at least ``(n - 1) / max_per_second`` seconds.
    """

    def __init__(
        self,
        max_per_second: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if max_per_second is not None and max_per_second < 0:
            raise ValueError("max_per_second must be positive (or None for no limit).")
        self.interval = 1.0 / max_per_second if max_per_second else 0.0
        self.clock = clock
        self.sleep = sleep
        self._lock = threading.Lock()
        self._next_slot = float("-inf")
        self._paused_until = float("-inf")

    def acquire(self) -> float:
        """Wait for the next slot; returns the seconds waited (0 when one was free)."""
        with self._lock:
            now = self.clock()
            slot = max(now, self._next_slot, self._paused_until)
            if self.interval:
                self._next_slot = slot + self.interval
        wait = slot - now
        if wait > 0:
            self.sleep(wait)
        return max(wait, 0.0)

    def pause(self, seconds: float) -> None:
        """Let no call start for ``seconds`` from now (ETpay answered 429)."""
        with self._lock:
            self._paused_until = max(self._paused_until, self.clock() + seconds)


def should_retry(err: EtpayAPIError) -> bool:
    """Whether a status query that failed this way is worth asking again soon: ETpay answered
    ``429`` (too many requests) or a 5xx (ETpay's own trouble). A status query changes
    nothing at ETpay, so asking again is safe whatever the outcome of the first one was."""
    return isinstance(err, EtpayHTTPError) and (
        err.status_code == 429 or (err.status_code or 0) >= 500
    )


def backoff_delay(
    attempt: int,
    retry_after: float | None = None,
    *,
    base: float = BACKOFF_BASE,
    cap: float = BACKOFF_CAP,
) -> float | None:
    """Seconds to wait before retry ``attempt`` (0 for the first retry), or ``None``: give up.

    Exponential (``base * 2 ** attempt``, at most ``cap``), unless ETpay sent ``Retry-After``:
    then exactly that, and ``None`` when it asks for longer than ``cap`` (the next run asks).
    """
    if retry_after is not None:
        return retry_after if retry_after <= cap else None
    return min(cap, base * 2.0**attempt)
