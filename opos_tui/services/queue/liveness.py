"""Whether the process that claimed an item still runs: how an engine tells a crashed sender on this host from
one that is still at work, without waiting for its lease to run out; from another host, only the lease tells."""

from __future__ import annotations

import os
import sys

STALE_REASON = "the sending process stopped while this mail was being sent: it may have arrived"
"""The error and history line of an item whose claim was found gone (it becomes ``uncertain``)."""


def pid_alive(pid: int) -> bool:
    """Whether a process with this id runs on this host."""
    if sys.platform == "win32":
        import ctypes

        # os.kill(pid, 0) would send CTRL_C_EVENT on Windows: ask the kernel instead.
        process_query_limited_information, still_active = 0x1000, 259
        kernel32 = ctypes.windll.kernel32
        handle = kernel32.OpenProcess(process_query_limited_information, False, pid)
        if not handle:
            return False
        try:
            code = ctypes.c_ulong()
            return bool(kernel32.GetExitCodeProcess(handle, ctypes.byref(code))) and code.value == still_active
        finally:
            kernel32.CloseHandle(handle)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    return True


def claim_gone(claim: tuple[str | None, int | None, float | None], *, host: str, pid: int, now: float) -> bool:
    """Whether a ``sending`` item's claim (its host, process and lease end) is gone, seen by process ``pid`` on
    ``host`` at ``now``: on this host, when its process has ended (never this process's own claims); from
    another host, when its lease has run out."""
    claim_host, claim_pid, lease_until = claim
    if claim_host == host:
        return claim_pid != pid and not pid_alive(int(claim_pid or 0))
    return (lease_until or 0) < now
