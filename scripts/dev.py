"""Set up the project's environment and run the main job or the tests — the README's two commands.

    python3 scripts/dev.py flights   # .venv + install + NYC flights data + `pipeline run configs/flights.toml`
    python3 scripts/dev.py test      # .venv + install with every engine + pytest
    python3 scripts/dev.py soak [N]  # as `test`, N times in a row (default 5) with one core kept busy

Creates `.venv` beside the project if missing and reinstalls only when pyproject.toml changes.
Extra arguments go to the command that runs (`pipeline run` or `pytest`). `soak` stops at the first
failing round and exits non-zero unless every round passed.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import time
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
EXTRAS = {"flights": "examples", "test": "dev,dask,ray,joblib", "soak": "dev,dask,ray,joblib"}
SOAK_ROUNDS = 5


def ensure_env(extras: str) -> None:
    """Create the venv and install the project (editable) with `extras`, unless already done."""
    if sys.version_info < (3, 11):
        sys.exit(f"Python 3.11+ is needed; this is {sys.version.split()[0]}")
    if not (BIN / "python").exists():
        print(f"creating {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    stamp = VENV / f".installed-{extras.replace(',', '-')}"
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text() == digest:
        return
    print(f"installing the project with [{extras}] into {VENV}", flush=True)
    pip = [str(BIN / "python"), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    for args in (["--upgrade", "pip"], ["-e", f"{ROOT}[{extras}]"]):
        done = subprocess.run([*pip, *args], capture_output=True, text=True)
        if done.returncode:  # show pip's own account only when it failed
            sys.exit(f"{done.stdout}{done.stderr}\npip install {' '.join(args)} failed")
    stamp.write_text(digest)


def compile_project(python: str = str(BIN / "python")) -> None:
    """Byte-compile the project's own packages, as installing a wheel does: an editable install relies on
    Python writing them at first import, which PYTHONDONTWRITEBYTECODE (set on some machines) turns off, and
    every command would compile them again. Quick when they are up to date."""
    subprocess.run([python, "-m", "compileall", "-q", str(ROOT / "pipeline"), str(ROOT / "stages")],
                   check=True, stdout=subprocess.DEVNULL)


def soak(python: str, env: dict[str, str], rest: list[str]) -> int:
    """Run the whole suite N times in a row while a busy loop keeps one core busy; stop at the first failure."""
    rounds = int(rest.pop(0)) if rest and rest[0].isdigit() else SOAK_ROUNDS
    pytest = [python, "-m", "pytest", "-p", "no:cacheprovider", *rest]
    busy = subprocess.Popen([python, "-c", "while True: pass"])
    passed = 0
    try:
        for round_ in range(1, rounds + 1):
            started, counts = time.monotonic(), "no summary"
            with subprocess.Popen(pytest, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True) as run:
                for line in run.stdout:  # shown as it comes; the summary line is kept for the round's report
                    sys.stdout.write(line)
                    if found := re.search(r"(\d+ (?:passed|failed|errors?|skipped).*) in [\d.]+s", line):
                        counts = found.group(1)
            verdict = "passed" if run.returncode == 0 else f"FAILED (exit {run.returncode})"
            seconds = time.monotonic() - started
            print(f"soak round {round_}/{rounds}: {verdict}: {counts} in {seconds:.0f} s", flush=True)
            if run.returncode:
                break
            passed += 1
    finally:
        busy.kill()  # by its pid
        busy.wait()
    print(f"soak: {passed}/{rounds} rounds passed")
    return 0 if passed == rounds else 1


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in EXTRAS:
        print(__doc__)
        return 2
    command, rest = argv[0], argv[1:]
    ensure_env(EXTRAS[command])
    compile_project()
    python = str(BIN / "python")
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    if command == "flights":
        subprocess.run([python, str(ROOT / "scripts" / "prepare_flights.py")], check=True, env=env)
        run = [str(BIN / "pipeline"), "run", str(ROOT / "configs" / "flights.toml"), *rest]
        return subprocess.run(run, env=env).returncode
    if command == "soak":
        return soak(python, env, rest)
    return subprocess.run([python, "-m", "pytest", *rest], cwd=ROOT, env=env).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
