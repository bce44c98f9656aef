"""Run the whole tox matrix with every supported Python this machine has, then say what ran.

``make test`` calls this script. It finds Python 3.10-3.13 by itself (PATH, pyenv, the usual
install prefixes), hands them to tox with ``--discover``, runs each tox environment whose
interpreter exists (two at a time: ``--jobs``), runs ``type`` (mypy) and ``heavy`` on the best
interpreter found instead of skipping them, and ends with a table of what ran: per environment
its result and, for each pytest run, the tests passed, failed, skipped (allowed by
``tests/allowed_skips.txt`` or not) and rerun, read from the JSON file ``tests/gate.py`` writes
into the environment's directory. Every rerun is printed by name.

Exit status: 0 only when every environment that ran passed, every pytest environment reported
and skipped nothing outside the allow-list, and at least one Django/Python pair ran.
``--require-all`` (CI) also fails when an environment had to be skipped.

Standard library only: it runs before any virtual environment exists.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SUPPORTED = ("3.10", "3.11", "3.12", "3.13")
#: Environments without a ``pyXY`` factor, and the Python each prefers.
UNPINNED_PREFERENCE = ("3.12", "3.13", "3.11", "3.10")
#: Environments pinned to one Python by their name: the Django pairs (``py311-django42-sqlite``
#: too), and ``py310-lowest``.
PAIR = re.compile(r"^py3(\d+)-(?:django\d+(?:-sqlite)?|lowest)$")
#: Environments started first, as they take longest.
LONGEST = frozenset({"heavy"})
#: Environments that run no pytest, hence write no gate report.
NO_PYTEST = frozenset({"lint", "type", "docs"})
#: Where tests/gate.py writes an environment's outcome (tox.ini: ETPAY_GATE_REPORT).
GATE_REPORT = "pytest-gate.json"


def python_version(executable: str) -> str | None:
    """``"3.12"`` for a working interpreter, else ``None``."""
    try:
        out = subprocess.run(
            [executable, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    version = out.stdout.strip()
    return version if out.returncode == 0 and version else None


def candidates(version: str) -> list[str]:
    """Places a ``python<version>`` may live, best first."""
    found: list[str] = []
    on_path = shutil.which(f"python{version}")
    if on_path:
        found.append(on_path)
    pyenv_roots = [os.environ.get("PYENV_ROOT", ""), str(Path.home() / ".pyenv")]
    for root in filter(None, pyenv_roots):
        pattern = os.path.join(root, "versions", f"{version}.*", "bin", f"python{version}")
        found.extend(sorted(glob.glob(pattern), reverse=True))
    for prefix in ("/usr/local/bin", "/usr/bin", "/opt/homebrew/bin"):
        found.append(os.path.join(prefix, f"python{version}"))
    found.extend(sorted(glob.glob(f"/opt/python/{version}*/bin/python{version}"), reverse=True))
    return found


def find_interpreters() -> dict[str, str]:
    """Supported version -> path of a working interpreter of that version."""
    interpreters: dict[str, str] = {}
    for version in SUPPORTED:
        for path in candidates(version):
            usable = os.path.isfile(path) and os.access(path, os.X_OK)
            if usable and python_version(path) == version:
                interpreters[version] = path
                break
    return interpreters


def tox_environments(tox: str) -> list[str]:
    """The environments of tox's ``env_list`` (not the extra ones, such as ``mutation``)."""
    out = subprocess.run(
        [tox, "config", "--core", "-k", "env_list", "-e", "lint"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return parse_env_list(out.stdout)


def parse_env_list(config: str) -> list[str]:
    """The names under ``env_list =`` in the ``[tox]`` section of ``tox config`` output."""
    names: list[str] = []
    section = ""
    reading = False
    for line in config.splitlines():
        if line.startswith("["):
            section, reading = line.strip(), False
        elif section == "[tox]" and line.startswith("env_list ="):
            reading = True
        elif reading and re.match(r"^\s+[\w.-]+$", line):
            names.append(line.strip())
        elif reading:
            reading = False
    return names


def ensure_tox(venv: Path) -> str:
    tox = venv / "bin" / "tox"
    if not tox.exists():
        print(f"Installing tox into {venv.name}", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
        subprocess.run([*pip, "--upgrade", "pip", "tox>=4.2"], check=True)
    return str(tox)


def plan(
    environments: list[str], interpreters: dict[str, str]
) -> tuple[dict[str, str], dict[str, str]]:
    """(environment -> interpreter to run it with, environment -> why it is skipped)."""
    runnable: dict[str, str] = {}
    skipped: dict[str, str] = {}
    fallback = next((interpreters[v] for v in UNPINNED_PREFERENCE if v in interpreters), None)
    for env in environments:
        match = PAIR.match(env)
        if match:
            version = f"3.{match.group(1)}"
            if version in interpreters:
                runnable[env] = interpreters[version]
            else:
                skipped[env] = f"no python{version} found"
        elif fallback is not None:
            runnable[env] = fallback
        else:
            skipped[env] = "no supported Python found"
    return runnable, skipped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--require-all",
        action="store_true",
        default=os.environ.get("ETPAY_REQUIRE_ALL_ENVS") == "1",
        help="fail when any environment has to be skipped (CI)",
    )
    parser.add_argument("-e", "--envs", help="comma-separated subset of tox environments")
    parser.add_argument(
        "-j",
        "--jobs",
        type=int,
        default=2,
        help="environments run at the same time (default 2: heavy waits on the browser)",
    )
    parser.add_argument("tox_args", nargs="*", help="extra arguments passed to tox run")
    args = parser.parse_args(argv)

    interpreters = find_interpreters()
    print("Interpreters found:", flush=True)
    for version in SUPPORTED:
        print(f"  python{version}: {interpreters.get(version, 'not found')}")
    tox = ensure_tox(ROOT / ".venv-tox")
    environments = tox_environments(tox)
    if args.envs:
        wanted = [e.strip() for e in args.envs.split(",") if e.strip()]
        unknown = sorted(set(wanted) - set(environments))
        if unknown:
            print(f"Unknown tox environments: {', '.join(unknown)}", file=sys.stderr)
            return 2
        environments = wanted
    runnable, skipped = plan(environments, interpreters)

    results: dict[str, tuple[str, float]] = {}
    gate: dict[str, dict[str, Any] | None] = {}
    if runnable:
        for env in runnable:
            # A report left by an earlier run must not stand in for this one.
            (ROOT / ".tox" / env / GATE_REPORT).unlink(missing_ok=True)
        overrides: list[str] = []
        for env, interpreter in runnable.items():
            if not PAIR.match(env):
                # Unpinned environments (type, heavy, lint) run on the best interpreter found.
                overrides += ["-x", f"testenv:{env}.base_python={interpreter}"]
        with tempfile.TemporaryDirectory() as tmp:
            report = Path(tmp) / "tox-result.json"
            command = [
                tox,
                "run-parallel",
                "--parallel",
                str(max(args.jobs, 1)),
                "--parallel-no-spinner",
                "--skip-missing-interpreters",
                "false",
                "--result-json",
                str(report),
                "--discover",
                *sorted(set(interpreters.values())),
                "-e",
                ",".join(run_order(runnable)),
                *overrides,
                *args.tox_args,
            ]
            started = time.monotonic()
            subprocess.run(command, cwd=ROOT, check=False)
            total = time.monotonic() - started
            results = read_results(report, runnable)
        gate = read_gate_reports(ROOT / ".tox", runnable)
    else:
        total = 0.0
    return summarise(runnable, skipped, results, total, args.require_all, gate)


def run_order(runnable: dict[str, str]) -> list[str]:
    """The environments, longest first: ``heavy`` (about 8 minutes) starts at once, and the
    others share the second slot, instead of ``heavy`` starting last and running alone."""
    return sorted(runnable, key=lambda env: env not in LONGEST)


def read_gate_reports(
    work_dir: Path, runnable: dict[str, str]
) -> dict[str, dict[str, Any] | None]:
    """environment -> its tests/gate.py report (``None``: a pytest environment wrote none)."""
    reports: dict[str, dict[str, Any] | None] = {}
    for env in runnable:
        if env in NO_PYTEST:
            continue
        try:
            reports[env] = json.loads((work_dir / env / GATE_REPORT).read_text())
        except (OSError, ValueError):
            reports[env] = None
    return reports


def read_results(report: Path, runnable: dict[str, str]) -> dict[str, tuple[str, float]]:
    """environment -> ("passed" | "FAILED" | "did not run", seconds) from tox's JSON report."""
    try:
        data = json.loads(report.read_text())
    except (OSError, ValueError):
        data = {}
    envs = data.get("testenvs", {})
    results: dict[str, tuple[str, float]] = {}
    for env in runnable:
        info = envs.get(env)
        if not info or "result" not in info:
            results[env] = ("did not run", 0.0)
            continue
        result = info["result"]
        seconds = float(result.get("duration", 0.0))
        results[env] = ("passed" if result.get("success") else "FAILED", seconds)
    return results


def summarise(
    runnable: dict[str, str],
    skipped: dict[str, str],
    results: dict[str, tuple[str, float]],
    total: float,
    require_all: bool,
    gate: dict[str, dict[str, Any] | None] | None = None,
) -> int:
    gate = gate or {}
    print("\nTest matrix summary")
    print(
        f"  {'environment':<22} {'result':<12} {'seconds':>7} {'passed':>6} {'failed':>6}"
        f" {'skip ok':>7} {'skip NOT':>8} {'reruns':>6}  interpreter / reason"
    )
    failed = [env for env, (outcome, _s) in results.items() if outcome != "passed"]
    not_allowed: list[str] = []
    reruns: list[str] = []
    for env, interpreter in runnable.items():
        outcome, seconds = results.get(env, ("did not run", 0.0))
        counts = " " * 41
        if env in gate:
            report = gate[env]
            if report is None:
                counts = f"{'no pytest report':>41}"
                if env not in failed:
                    failed.append(env)
            else:
                not_allowed += [
                    f"{env}: {s['test']}: {s['reason']}" for s in report["skipped_not_allowed"]
                ]
                reruns += [f"{env}: {t} ({n}x)" for t, n in sorted(report["reruns"].items())]
                counts = (
                    f"{report['passed']:>6} {len(report['failed']):>6}"
                    f" {len(report['skipped_allowed']):>7} {len(report['skipped_not_allowed']):>8}"
                    f" {sum(report['reruns'].values()):>6}"
                )
        print(f"  {env:<22} {outcome:<12} {seconds:>7.0f} {counts}  {interpreter}")
    for env, why in skipped.items():
        print(f"  {env:<22} {'SKIPPED':<12} {'':>7} {'':41}  {why}")
    for line in reruns:
        print(f"  RERUN {line}")
    for line in not_allowed:
        print(f"  SKIP NOT ALLOWED {line}")
    pairs_ran = [env for env in runnable if PAIR.match(env) and env not in failed]
    print(
        f"\n  {len(runnable) - len(failed)} passed, {len(failed)} failed or not run, "
        f"{len(skipped)} skipped, {len(reruns)} test(s) rerun, in {total:.0f} s"
    )
    if failed:
        print(f"FAILED: {', '.join(failed)}")
        return 1
    if not_allowed:
        print(
            f"FAILED: {len(not_allowed)} test(s) skipped outside tests/allowed_skips.txt "
            "(listed above)."
        )
        return 1
    if not pairs_ran:
        print("FAILED: no Django/Python pair could run (install Python 3.10-3.13).")
        return 1
    if skipped:
        if require_all:
            print(f"FAILED: skipped {', '.join(skipped)} (--require-all).")
            return 1
        print(f"PASSED, but {len(skipped)} environment(s) were SKIPPED: {', '.join(skipped)}.")
        return 0
    print("PASSED: every environment ran; no test skipped outside tests/allowed_skips.txt.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
