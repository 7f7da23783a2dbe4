"""The suite's own guard against hangs: a subprocess that outruns its limit fails its test with the
stacks of the processes it started, and none of them outlives it."""
from __future__ import annotations

import sys

import psutil
import pytest

from conftest import ScriptTimeout, run_with_stacks

HANGS = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
open({pid_file!r}, "w").write(str(child.pid))
def wait_for_ever():
    time.sleep(600)
wait_for_ever()
"""


def test_a_hung_command_fails_with_its_stacks_and_leaves_no_process(tmp_path):
    pid_file = tmp_path / "child.pid"
    with pytest.raises(ScriptTimeout) as raised:
        run_with_stacks([sys.executable, "-c", HANGS.format(pid_file=str(pid_file))], timeout=5)
    message = str(raised.value)
    assert "still ran after 5 s" in message
    assert "wait_for_ever" in message  # py-spy's dump of the command's own process, where it waits
    child = int(pid_file.read_text())
    assert not psutil.pid_exists(child) or psutil.Process(child).status() == psutil.STATUS_ZOMBIE
