"""Shared fixtures: every test writes its data cache and sweeps under pytest's temporary dirs."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from process_stacks import kill_tree, stacks_of_tree

ROOT = Path(__file__).resolve().parent.parent
BUCKET = "sweeps"   # the bucket of the `s3` fixture's server


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


def this_checkout_env(env: dict | None = None) -> dict:
    """os.environ plus `env`, with this checkout first on PYTHONPATH: a script in `sweeps/` (and the Ray
    workers its driver starts) imports this tree's packages, not those of another checkout that the
    venv's editable install may point at."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path, **(env or {})}


def run_sweep_script(script: str, *args: str, env: dict | None = None, timeout: float = 600,
                     **popen) -> subprocess.CompletedProcess:
    """Run `sweeps/<script>` in a fresh interpreter, as a user would, importing this checkout's packages
    (an editable install may point at another checkout of the project); `run_with_stacks` does the rest."""
    return run_with_stacks([sys.executable, str(ROOT / "sweeps" / script), *args], timeout,
                           cwd=ROOT, env=this_checkout_env(env), **popen)


def run_with_stacks(command: list[str], timeout: float, **popen) -> subprocess.CompletedProcess:
    """`subprocess.run(command, capture_output=True, text=True)`, but past `timeout` seconds it raises
    `ScriptTimeout` with the stacks of the command's processes (its Ray trials included) and kills them all."""
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen) as process:
        try:
            out, err = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            stacks = stacks_of_tree(process.pid)
            kill_tree(process.pid)
            out, err = process.communicate()
            raise ScriptTimeout(f"{' '.join(command)} still ran after {timeout:.0f} s; where its processes "
                                f"stood:\n{stacks}\n--- its stderr, last 3000 characters:\n{err[-3000:]}") from None
    return subprocess.CompletedProcess(command, process.returncode, out, err)


class ScriptTimeout(AssertionError):
    """A sweep script outran its time limit; the message holds every process's stacks."""


class SmokeRuns:
    """Each sweep script's `--smoke` run into one shared storage, run the first time a test asks for it
    (once per session): `smoke_runs[script]` -> (CompletedProcess, sweep dir); `smoke_runs["storage"]`."""

    # data_quantity before baselines: the baselines' `full` cell must find data_quantity's model in the cache
    AFTER = {"baselines": ("data_quantity",)}

    def __init__(self, storage: Path):
        self.storage, self.runs = storage, {}

    def __getitem__(self, script: str):
        if script == "storage":
            return self.storage
        if script not in self.runs:
            for first in self.AFTER.get(script, ()):
                self[first]
            out = run_sweep_script(f"{script}.py", "--smoke", "--storage-path", str(self.storage), timeout=600)
            self.runs[script] = (out, self.storage / f"{script}-smoke")
        return self.runs[script]


@pytest.fixture(scope="session")
def smoke_runs(tmp_path_factory) -> SmokeRuns:
    """The sweep scripts' smoke runs (tests/test_sweep_scripts.py and the per-sweep test files share them)."""
    return SmokeRuns(tmp_path_factory.mktemp("sweeps"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3(tmp_path_factory):
    """A moto S3 server of this session's own (own port, own process group) holding the bucket `BUCKET`,
    with AWS_* set to reach it (the value: those variables, for subprocesses)."""
    port = _free_port()
    log = open(tmp_path_factory.mktemp("moto") / "moto.log", "w")
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(endpoint, timeout=1)
            break
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                raise RuntimeError(f"moto server did not start: {Path(log.name).read_text()[-2000:]}")
            time.sleep(0.2)
    env = {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}
    try:
        with pytest.MonkeyPatch.context() as patch:  # the variables are put back when the session ends
            for key, value in env.items():
                patch.setenv(key, value)
            import boto3

            boto3.client("s3").create_bucket(Bucket=BUCKET)
            yield env
    finally:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()
        log.close()
