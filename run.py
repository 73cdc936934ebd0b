#!/usr/bin/env python3
"""roomcast's command line: serve (default), migrate, create-user, token, test, check.

On a fresh clone this script needs nothing but Python 3.11+: the first run
creates `.venv/`, installs the project's dependencies into it, and re-executes
itself there. Set ROOMCAST_NO_BOOTSTRAP=1 to run in the current interpreter
(containers and already-prepared environments do).
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

# Imports only some commands need (venv, subprocess, sysconfig, pytest, the server) sit in the functions that use them:
# `run.py test` and `check` start without importing what they never use.

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"


def _venv_python() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


# The code checks (console scripts of the dev extra, run from ROOT), in order; `check` stops at the first failure.
CHECKS: tuple[list[str], ...] = (["ruff", "check", "."], ["mypy"], ["lint-imports"])


def _extras_for(argv: list[str]) -> str:
    # The test suite and the checks need the dev tools and the PostgreSQL driver (one
    # install serves both); serving needs the driver only when pointed at PostgreSQL, but it is small.
    return "dev,postgres" if argv[:1] in (["test"], ["check"]) else "postgres"


def _bootstrap(argv: list[str]) -> None:
    """Make sure .venv holds the dependencies, then continue inside it."""
    if os.environ.get("ROOMCAST_NO_BOOTSTRAP"):
        return
    extras = _extras_for(argv)
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()[:16]
    marker = VENV / f".installed-{extras.replace(',', '-')}-{digest}"
    # An install with more extras (test's dev,postgres) serves a command needing fewer.
    installed = any(
        set(extras.split(",")) <= set(found.name.split("-")[1:-1])
        for found in VENV.glob(f".installed-*-{digest}")
    )
    inside = Path(sys.prefix).resolve() == VENV.resolve()
    if inside and installed:
        return
    import subprocess
    import venv

    if not _venv_python().exists():
        print("roomcast: creating .venv (first run)", file=sys.stderr)
        venv.create(VENV, with_pip=True)
    if not installed:
        print(f"roomcast: installing dependencies [{extras}] into .venv", file=sys.stderr)
        subprocess.run(
            [str(_venv_python()), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
             "-e", f"{ROOT}[{extras}]"],
            check=True,
        )
        for stale in VENV.glob(f".installed-{extras.replace(',', '-')}-*"):
            stale.unlink()
        marker.touch()
    os.execv(str(_venv_python()), [str(_venv_python()), str(Path(__file__).resolve()), *argv])


def check() -> int:
    """Run ruff, mypy and import-linter on the project; stop at the first failure."""
    import subprocess
    import sysconfig

    scripts = Path(sysconfig.get_path("scripts"))
    for command in CHECKS:
        print(f"check: {' '.join(command)}", file=sys.stderr, flush=True)
        code = subprocess.run([str(scripts / command[0]), *command[1:]], cwd=ROOT).returncode
        if code:
            print(f"check: {command[0]} failed", file=sys.stderr)
            return code
    return 0


def _pytest_args(args: list[str]) -> list[str]:
    """The suite runs on one pytest-xdist worker per core (at most 4) unless the arguments choose (-n, -p no:xdist);
    tests that must not overlap are grouped by path in tests/conftest.py."""
    chosen = any(arg in ("-n", "--numprocesses", "no:xdist", "-pno:xdist") or arg.startswith(("-n", "--numprocesses="))
                 for arg in args)
    workers = min(4, os.cpu_count() or 1)
    return args if chosen or workers < 2 else ["-n", str(workers), "--dist", "loadgroup", *args]


def main() -> int:
    argv = sys.argv[1:]
    _bootstrap(argv)
    if argv[:1] == ["test"]:
        import pytest

        os.chdir(ROOT)
        return int(pytest.main(_pytest_args(argv[1:])))
    if argv[:1] == ["check"]:
        return check()
    from roomcast.cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
