"""``python subreaper.py PROGRAM ARGS...``: run PROGRAM and own everything it leaves behind.

For daemons that fork workers and, on SIGTERM, signal their workers and exit without waiting for them
(Postfix's ``master``): the orphans would be reparented to pid 1 and linger as zombies until it reaps
them. This process is a child subreaper (``PR_SET_CHILD_SUBREAPER``), so the orphans come to it; on
SIGTERM/SIGINT it forwards SIGTERM to PROGRAM, reaps PROGRAM and every orphan, SIGKILLs whatever is
still there after ``GRACE`` seconds, and exits (with PROGRAM's exit code) only when nothing it started
is left. ``PR_SET_PDEATHSIG`` makes it stop the same way if its own parent (the test run) dies.
Linux only; stdlib only.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
GRACE = 5.0


def _my_children() -> list[int]:
    me, found = os.getpid(), []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[-1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid == me:
            found.append(int(entry.name))
    return found


def main(argv: list[str]) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    parent = os.getppid()
    child = os.fork()
    if child == 0:
        os.execv(argv[0], argv)

    def forward(signum: int, frame: FrameType | None) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    if os.getppid() != parent:  # the parent died before PR_SET_PDEATHSIG was in place
        forward(signal.SIGTERM, None)

    status = 1
    while True:
        pid, wait_status = os.waitpid(-1, 0)
        if pid == child:
            status = os.waitstatus_to_exitcode(wait_status)
            break
    deadline = time.monotonic() + GRACE
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break  # nothing left
        if pid:
            continue
        if time.monotonic() > deadline:
            for orphan in _my_children():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(orphan, signal.SIGKILL)
        time.sleep(0.01)
    return status if status >= 0 else 128 - status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
