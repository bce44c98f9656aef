"""Argument types of the ``etpay_*`` management commands.

argparse reports a type that raises ``ValueError`` as "invalid <function name> value", dropping
the reason; these raise ``ArgumentTypeError`` with it, so that a bad value is answered with what
was expected (a ``CommandError`` under ``call_command``, a usage error on the command line).
"""

from __future__ import annotations

import argparse
from datetime import timedelta

from django_etpay import operations


def duration(text: str) -> timedelta:
    """A duration such as ``30m``, ``2h`` or ``7d`` (see :func:`operations.parse_duration`)."""
    try:
        return operations.parse_duration(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def shard(text: str) -> tuple[int, int]:
    """A shard such as ``1/4`` (see :func:`operations.parse_shard`)."""
    try:
        return operations.parse_shard(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
