"""``outbox.claim`` is exclusive across processes, as outbox.py says: two real OS processes,
each with its own connection to the test's PostgreSQL database, try to claim every due effect;
each effect goes to exactly one of them, once.

The processes are started, then released together by a file; each tries every effect, the two
in opposite orders, so that without the lease condition of the ``UPDATE`` both would win every
effect (whatever the timing), and with it neither wins one the other holds.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from django_etpay import outbox
from django_etpay.models import OutboxEffect
from tests.factories import make_session
from tests.subprocesses import ROOT, django_env, wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

EFFECTS = 30

CLAIMER = """
import json, sys, time
from pathlib import Path

import django

django.setup()
from django_etpay import outbox

pks, ready, go = json.loads(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
ready.touch()
while not go.exists():  # a start line, so that both processes claim at the same time
    time.sleep(0.005)
won = [pk for pk in pks if outbox.claim(pk) is not None]
print(json.dumps(won))
"""


def due_effects(count: int) -> list[int]:
    """``count`` pending effects whose lease has run out (their first delivery died)."""
    pks = []
    for _ in range(count):
        effect, _claim = outbox.new_effect(
            OutboxEffect.Kind.PAYMENT_COMPLETED, session=make_session()
        )
        effect.lease_until = timezone.now() - timedelta(seconds=1)
        effect.save()
        pks.append(effect.pk)
    return pks


def test_two_processes_never_claim_the_same_effect(tmp_path: Path) -> None:
    pks = due_effects(EFFECTS)
    go = tmp_path / "go"
    processes = []
    for name, order in (("a", pks), ("b", pks[::-1])):
        ready = tmp_path / f"ready-{name}"
        argv = [sys.executable, "-c", CLAIMER, json.dumps(order), str(ready), str(go)]
        processes.append(
            (
                ready,
                subprocess.Popen(  # noqa: S603 - argv built here
                    argv,
                    cwd=ROOT,
                    env=django_env(),
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                ),
            )
        )
    try:
        wait_until(lambda: all(ready.exists() for ready, _p in processes), "both claimers")
        go.touch()
        outputs = [process.communicate(timeout=120) for _ready, process in processes]
    finally:
        for _ready, process in processes:
            if process.poll() is None:
                process.kill()
    for (_ready, process), (_out, err) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, err
    won_a, won_b = (json.loads(out) for out, _err in outputs)

    assert not set(won_a) & set(won_b), "an effect claimed by both processes"
    assert sorted(won_a + won_b) == sorted(pks), "an effect claimed by neither"
    effects = OutboxEffect.objects.filter(pk__in=pks)
    # Each claimed once: one attempt on top of the first delivery's, a lease in the future.
    assert sorted(effects.values_list("attempts", flat=True)) == [2] * EFFECTS
    assert not effects.filter(lease_until__lte=timezone.now()).exists()
    # Neither process can claim again what is now leased.
    assert all(outbox.claim(pk) is None for pk in pks)
