"""Faults the sandbox can inject, for tests and demos.

A fault list is a comma-separated string of names, some taking a value after ``=``::

    late=2,twice

It reaches the sandbox in one of three ways, none of which changes ETpay's own request format:

- a path prefix on ``API_URL``: ``http://127.0.0.1:8000/sandbox/faults/late=2,twice``
  (applies to the calls made through it and to the sessions they create);
- an ``X-Sandbox-Faults`` header on ``/session/initialize`` or the status query;
- the ``faults`` field (checkboxes on the funnel page, or a query parameter) of the funnel's
  approve/reject POST, added to the session's own faults.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.utils.translation import gettext, gettext_noop

#: Every fault: name -> (what it does, default value or None when it takes no value).
FAULTS: dict[str, tuple[str, float | None]] = {
    "slow": (gettext_noop("API calls answer after this many seconds"), 3.0),
    "initialize_5xx": (
        gettext_noop("session/initialize answers HTTP 503 (after creating the session)"),
        None,
    ),
    "twice": (gettext_noop("the webhook is delivered twice"), None),
    "late": (gettext_noop("the webhook is delivered after this many seconds"), 5.0),
    "never": (
        gettext_noop("the webhook is never delivered (the status query still knows the payment)"),
        None,
    ),
    "out_of_order": (
        gettext_noop("after the success webhook, a stale failure webhook follows"),
        None,
    ),
    "system_error": (
        gettext_noop(
            "the payer is sent to the cancellation URL with a system-error JWT; no webhook"
        ),
        None,
    ),
    "status_string": (
        gettext_noop('payment_status is "success" / "failed" instead of true / false'),
        None,
    ),
}

#: Faults offered as checkboxes on the funnel page.
FUNNEL_FAULTS: tuple[str, ...] = (
    "late",
    "twice",
    "never",
    "out_of_order",
    "system_error",
    "status_string",
)

HEADER = "HTTP_X_SANDBOX_FAULTS"


class FaultError(ValueError):
    """A fault list names an unknown fault or carries a bad value."""


def parse(spec: str | None) -> dict[str, float | None]:
    """``"late=2,twice"`` -> ``{"late": 2.0, "twice": None}``; raises :class:`FaultError`."""
    faults: dict[str, float | None] = {}
    for item in (spec or "").split(","):
        item = item.strip()
        if not item:
            continue
        name, _, raw = item.partition("=")
        name = name.strip()
        if name not in FAULTS:
            raise FaultError(f"Unknown sandbox fault {name!r}; known: {', '.join(FAULTS)}.")
        default = FAULTS[name][1]
        if not raw:
            faults[name] = default
            continue
        if default is None:
            raise FaultError(f"Sandbox fault {name!r} takes no value.")
        try:
            value = float(raw)
        except ValueError:
            raise FaultError(f"Sandbox fault {name!r} needs a number of seconds.") from None
        if not 0 <= value <= 600:
            raise FaultError(f"Sandbox fault {name!r} must be between 0 and 600 seconds.")
        faults[name] = value
    return faults


def merge(*specs: str | None) -> str:
    """Join several fault lists into one normalised string (later values win)."""
    merged: dict[str, float | None] = {}
    for spec in specs:
        merged.update(parse(spec))
    return serialize(merged)


def serialize(faults: dict[str, float | None]) -> str:
    """The inverse of :func:`parse`."""
    return ",".join(
        name if value is None else f"{name}={value:g}" for name, value in faults.items()
    )


def fault_help(name: str) -> str:
    """What fault ``name`` does, in the active language."""
    return gettext(FAULTS[name][0])


def from_names(names: Iterable[str]) -> str:
    """A fault list from form values (``late`` or ``late=1``), keeping only funnel faults."""
    return ",".join(name for name in names if name.partition("=")[0] in FUNNEL_FAULTS)
