"""``--shard K/N``: N reconcile runs share the due sessions, each asked about exactly once."""

from __future__ import annotations

import io
import json
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
import responses as responses_lib
from django.core.management import CommandError, call_command
from django.utils import timezone

from django_etpay import operations, tasks
from django_etpay.models import PaymentSession
from tests.factories import STATUS_URL, make_session


def due(count: int) -> list[PaymentSession]:
    sessions = [make_session() for _ in range(count)]
    PaymentSession.objects.filter(pk__in=[s.pk for s in sessions]).update(
        created_at=timezone.now() - timedelta(hours=2)
    )
    return sessions


def count_questions(mocked: responses_lib.RequestsMock) -> Counter[str]:
    """ETpay's status API answering "no payment", counting the questions per session token."""
    asked: Counter[str] = Counter()

    def reply(request: Any) -> tuple[int, dict[str, str], str]:
        asked[json.loads(request.body)["session_token"]] += 1
        return 200, {}, "[]"

    mocked.add_callback("POST", STATUS_URL, callback=reply)
    return asked


@pytest.mark.parametrize(
    ("text", "shard"), [("1/4", (1, 4)), (" 4/4 ", (4, 4)), ("1/1", (1, 1)), ("2 / 3", (2, 3))]
)
def test_parse_shard(text: str, shard: tuple[int, int]) -> None:
    assert operations.parse_shard(text) == shard


@pytest.mark.parametrize("text", ["0/4", "5/4", "1/0", "0/0", "a/b", "1", "1/4/2", "-1/4", ""])
def test_parse_shard_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="not a shard such as 1/4"):
        operations.parse_shard(text)


@pytest.mark.django_db
def test_shards_are_disjoint_and_cover_every_due_session() -> None:
    pks = {session.pk for session in due(11)}
    make_session()  # not due: in no shard
    for count in (1, 2, 3, 4):
        shares = [
            set(operations.due_sessions(shard=(k, count)).values_list("pk", flat=True))
            for k in range(1, count + 1)
        ]
        assert set().union(*shares) == pks
        assert sum(len(share) for share in shares) == len(pks)
        # Each share is the remainder class its number names, so a shard is stable.
        for k, share in enumerate(shares, start=1):
            assert all(pk % count == k - 1 for pk in share)


@pytest.mark.django_db
def test_due_sessions_refuses_a_shard_out_of_range() -> None:
    with pytest.raises(ValueError, match="K must be from 1 to N"):
        operations.due_sessions(shard=(3, 2))
    with pytest.raises(ValueError, match="K must be from 1 to N"):
        operations.due_sessions(shard=(0, 2))


@pytest.mark.django_db
def test_the_command_asks_about_its_shard_only(
    mocked_responses: responses_lib.RequestsMock,
) -> None:
    sessions = due(6)
    asked = count_questions(mocked_responses)
    out = io.StringIO()
    call_command("etpay_reconcile", "--shard", "2/3", "--no-effects", stdout=out)
    expected = {s.token for s in sessions if s.pk % 3 == 1}
    assert set(asked) == expected
    assert set(asked.values()) == {1}
    # The other shards' runs then ask about the rest, none twice.
    call_command("etpay_reconcile", "--shard", "1/3", "--no-effects", stdout=out)
    call_command("etpay_reconcile", "--shard", "3/3", "--no-effects", stdout=out)
    assert set(asked) == {s.token for s in sessions}
    assert set(asked.values()) == {1}


@pytest.mark.django_db
def test_a_dry_run_counts_its_shard_only() -> None:
    sessions = due(5)
    out = io.StringIO()
    call_command("etpay_reconcile", "--shard", "1/2", "--dry-run", stdout=out)
    in_shard = sum(1 for s in sessions if s.pk % 2 == 0)
    assert f"Sessions due for a status query: {in_shard}\n" in out.getvalue()
    assert operations.due_sessions(shard=(1, 2)).count() == in_shard


@pytest.mark.django_db
@pytest.mark.parametrize("text", ["3/2", "0/2", "x"])
def test_the_command_refuses_a_bad_shard(text: str) -> None:
    with pytest.raises(CommandError, match="not a shard such as 1/4"):
        call_command("etpay_reconcile", "--shard", text, stdout=io.StringIO())


@pytest.mark.django_db
def test_the_task_takes_a_shard(mocked_responses: responses_lib.RequestsMock) -> None:
    sessions = due(4)
    asked = count_questions(mocked_responses)
    result = tasks.reconcile.enqueue(shard="2/2")
    assert result.status == "SUCCESSFUL", result.errors
    expected = {s.token for s in sessions if s.pk % 2 == 1}
    assert set(asked) == expected
    assert result.return_value["checked"] == len(expected)
    refused = tasks.reconcile.enqueue(shard="2")
    assert refused.status == "FAILED"
    assert "not a shard such as 1/4" in str(refused.errors)
    assert set(asked) == expected  # nothing asked by the refused run
