"""Mutation scores of the rules that must hold, from the last ``mutmut run``.

    mutmut run                                   # writes mutants/ (see [mutmut] in setup.cfg)
    python benchmarks/mutation_report.py [--rerun-on-postgresql] [--check] [--survivors]

Scores seven parts: ``tokens.py``, the result pipeline (``pipeline.py``, ``records.py``,
``rules.py``, ``values.py`` and ``dispatch.py``: process_notification, reconcile_session,
record_rejection, the transition rule, the storage budgets and their helpers),
``views.py``, the keys at rest (``crypto.py``, ``fields.py``) and the money and input checks
(``money.py``, ``validators.py``). A mutant counts as killed when a test failed, timed out or
the type checker caught it. The score is killed / (killed + survived + no tests). mutmut runs
on SQLite, for speed; ``--rerun-on-postgresql`` then runs every survivor again on PostgreSQL,
where row locks and ``skip_locked`` exist and the tests that pin them run. Surviving mutants
judged equivalent (no test can tell them apart from the original, see :data:`EQUIVALENT`) are
listed with why, and a second score leaves them out.
``--check`` exits 1 when that second score is under its goal: 90 % for tokens.py and the
result pipeline, 85 % for views.py, 100 % for the other four.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MUTANTS = ROOT / "mutants" / "django_etpay"

GOALS = {
    "tokens.py": 90.0,
    "result pipeline": 90.0,
    "views.py": 85.0,
    # Keys at rest and money: every mutant is killed.
    "crypto.py": 100.0,
    "fields.py": 100.0,
    "money.py": 100.0,
    "validators.py": 100.0,
}

KILLED = {1, 3, 36, 37, 24, -24, 152, 255}
SURVIVED = {0}
NO_TESTS = {5, 33}

#: Surviving mutants judged equivalent: no test can tell them from the original. Keyed by
#: (function, the mutated line as mutmut writes it, stripped), so renumbering does not matter.
EQUIVALENT: dict[tuple[str, str], str] = {
    ("reconcile_session", "raw_body=json.dumps(entry, ensure_ascii=None),"): (
        "None is falsy: json.dumps treats ensure_ascii=None exactly as False"
    ),
    ("record_unknown_to_etpay", "session.refresh_from_db(using=using, fields=None)"): (
        "reached only when another process changed the status between the run's read and its "
        "stamp: it reloads every field instead of the status alone, in the same single query, "
        "and the record reads the status alone"
    ),
    ("_run_pipeline", "locked=None,"): (
        "None is falsy: _apply_verified only ever tests `not locked`, so locked=None is the "
        "lock-free path exactly as locked=False"
    ),
    ("check_body_then_csrf", "return protected(request, **kwargs)"): (
        "no URL pattern passes positional arguments to the widget view, and post() ignores "
        "them: dropping *args changes nothing"
    ),
    ("check_body_then_csrf", "return protected(request, *args, )"): (
        "the widget-result URL passes no keyword arguments, and post() ignores them: dropping "
        "**kwargs changes nothing"
    ),
}


def function_of(mutant: str) -> str:
    """``django_etpay.tokens.x_read_unverified__mutmut_3`` -> ``read_unverified``."""
    name = mutant.rsplit(".", 1)[-1]
    name = re.sub(r"__mutmut_\d+$", "", name)
    name = re.sub(r"^x_", "", name)
    # Methods: ``xǁClassǁmethod``.
    return name.split("ǁ")[-1]


def load(filename: str) -> dict[str, int | None]:
    meta = MUTANTS / f"{filename}.meta"
    if not meta.exists():
        raise SystemExit(f"{meta} not found: run mutmut first")
    data: dict[str, int | None] = json.loads(meta.read_text())["exit_code_by_key"]
    return data


def score(codes: list[int | None]) -> tuple[int, int, float]:
    killed = sum(1 for c in codes if c in KILLED)
    counted = sum(1 for c in codes if c in KILLED | SURVIVED | NO_TESTS)
    return killed, counted, 100.0 * killed / counted if counted else 100.0


def scored_parts() -> dict[str, dict[str, int | None]]:
    """Each scored part: mutant name -> mutmut's exit code for it."""
    pipeline: dict[str, int | None] = {}
    for filename in PIPELINE_FILES:
        pipeline.update(load(filename))
    return {
        "tokens.py": load("tokens.py"),
        "result pipeline": pipeline,
        "views.py": load("views.py"),
        "crypto.py": load("crypto.py"),
        "fields.py": load("fields.py"),
        "money.py": load("money.py"),
        "validators.py": load("validators.py"),
    }


def rerun_on_postgresql() -> int:
    """Run every scored survivor of the SQLite run again, on PostgreSQL.

    Row locks and ``skip_locked`` exist only there, and the tests that pin them skip on
    SQLite. mutmut collects its test map again (on
    PostgreSQL), then runs one mutant at a time: parallel runs would share one test database.
    """
    names = sorted(
        name
        for codes in scored_parts().values()
        for name, code in codes.items()
        if code not in KILLED
    )
    print(f"{len(names)} survivors of the SQLite run, run again on PostgreSQL", flush=True)
    if not names:
        return 0
    (ROOT / "mutants" / "mutmut-stats.json").unlink(missing_ok=True)
    env = {**os.environ, "ETPAY_TEST_DB": "postgresql"}
    mutmut = str(Path(sys.executable).with_name("mutmut"))
    command = [mutmut, "run", "--max-children", "1", *names]
    return subprocess.run(command, env=env, cwd=ROOT, check=False).returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 under a goal")
    parser.add_argument("--survivors", action="store_true", help="list every survivor")
    parser.add_argument(
        "--rerun-on-postgresql",
        action="store_true",
        help="first run the survivors again on PostgreSQL (updates mutants/)",
    )
    args = parser.parse_args()
    if args.rerun_on_postgresql and rerun_on_postgresql() != 0:
        return 1

    parts = scored_parts()
    below = False
    for part, codes in parts.items():
        killed, counted, raw = score(list(codes.values()))
        survivors = sorted(k for k, c in codes.items() if c not in KILLED)
        equivalent = [k for k in survivors if k in EQUIVALENT_NAMES]
        kept = counted - len(equivalent)
        adjusted = 100.0 * killed / kept if kept else 100.0
        goal = GOALS[part]
        below |= adjusted < goal
        print(
            f"{part:<24} {killed}/{counted} killed = {raw:.1f} %; "
            f"{len(equivalent)} equivalent: {killed}/{kept} = {adjusted:.1f} % (goal {goal:g} %)"
        )
        left = [k for k in survivors if k not in equivalent]
        by_function = Counter(function_of(k) for k in left)
        if by_function:
            print(
                "    survivors by function: "
                + ", ".join(f"{name} {count}" for name, count in by_function.most_common())
            )
        if args.survivors:
            for name in survivors:
                _function, line = CHANGES.get(name, ("?", "?"))
                why = EQUIVALENT_NAMES.get(name)
                mark = f"equivalent: {why}" if why else "SURVIVED"
                print(f"    {name.rsplit('.', 1)[-1]}: {line}\n        [{mark}]")
    return 1 if args.check and below else 0


#: The modules of the result pipeline, scored together.
PIPELINE_FILES = ("pipeline.py", "records.py", "rules.py", "values.py", "dispatch.py")

#: The mutated files (the ``[mutmut]`` section of setup.cfg).
FILES = (
    "tokens.py",
    *PIPELINE_FILES,
    "views.py",
    "crypto.py",
    "fields.py",
    "money.py",
    "validators.py",
)
#: mutant name -> (function, mutated line); filled from the sources in mutants/.
CHANGES: dict[str, tuple[str, str]] = {}
#: mutant name -> why it is equivalent.
EQUIVALENT_NAMES: dict[str, str] = {}


def _read_changes() -> None:
    """Diff every mutant function against its original in mutants/ to find what changed."""
    for filename in FILES:
        path = MUTANTS / filename
        if not path.exists():
            continue
        functions: dict[str, list[str]] = {}
        current = None
        for line in path.read_text().splitlines():
            header = re.match(r"^(?:    )?def (x\w+?__mutmut_(?:orig|\d+))\(", line)
            if header:
                current = header.group(1)
                functions[current] = []
            elif current is not None and (line.startswith((" ", "\t", ")")) or not line):
                functions[current].append(line)
            else:
                current = None
        module = filename.removesuffix(".py")
        for name, body in functions.items():
            if name.endswith("__mutmut_orig"):
                continue
            original = functions.get(re.sub(r"__mutmut_\d+$", "__mutmut_orig", name), [])
            changed = [
                line[1:].strip()
                for line in difflib.unified_diff(original, body, lineterm="", n=0)
                if line.startswith("+") and not line.startswith("+++")
            ]
            key = f"django_etpay.{module}.{name}"
            CHANGES[key] = (function_of(name), " / ".join(changed))
            why = EQUIVALENT.get(CHANGES[key])
            if why:
                EQUIVALENT_NAMES[key] = why


if __name__ == "__main__":
    _read_changes()
    raise SystemExit(main())
