"""A --jobs worker ends when `portrait export` is killed (export.exit_with_parent), instead of exporting
on as an orphan."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

PARENT = textwrap.dedent(
    """
    import multiprocessing as mp, os, sys, time
    from toolchain.export import exit_with_parent

    def child():
        exit_with_parent(poll_s=0.1)
        time.sleep(60)

    if __name__ == "__main__":
        p = mp.get_context("spawn").Process(target=child)
        p.start()
        print(p.pid, flush=True)
        time.sleep(1.0)
        os._exit(0)  # killed: no clean-up, as under SIGKILL / SIGTERM of the parent alone
    """
)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie waiting for its reaper has exited too
        return f.read().split()[2] != "Z"


def test_worker_exits_when_its_parent_is_gone(tmp_path):
    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60, env=env)
    pid = int(out.stdout.split()[0])
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(pid), "the worker outlived its parent"
