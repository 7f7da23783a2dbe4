"""Shared fixtures: every test writes its data cache and sweeps under pytest's temporary dirs."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session", autouse=True)
def isolated_cache(tmp_path_factory) -> Path:
    """One `.beton` cache per test session (generated data is reused across tests)."""
    cache = tmp_path_factory.mktemp("cache")
    old = os.environ.get("SWEEPS_CACHE")
    os.environ["SWEEPS_CACHE"] = str(cache)
    yield cache
    if old is None:
        os.environ.pop("SWEEPS_CACHE", None)
    else:
        os.environ["SWEEPS_CACHE"] = old


def run_sweep_script(script: str, *args: str, env: dict | None = None, timeout: float = 600,
                     **popen) -> subprocess.CompletedProcess:
    """Run `sweeps/<script>` in a fresh interpreter, as a user would."""
    return subprocess.run([sys.executable, str(ROOT / "sweeps" / script), *args], cwd=ROOT,
                          env={**os.environ, **(env or {})}, capture_output=True, text=True,
                          timeout=timeout, **popen)
