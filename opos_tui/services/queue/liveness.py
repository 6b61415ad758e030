"""Whether the process that claimed an item still runs: how the SQLite engine tells a crashed sender on this
host from one that is still at work, without waiting for its lease to run out."""

from __future__ import annotations

import os
import sys


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
