"""Tries what an idnode.service process must not be able to do and prints, as JSON, how each attempt ended.

Run under tests/sandbox.py by test_deploy_units: errno values of refused calls (0: it succeeded),
the effective capabilities and the umask.
"""

from __future__ import annotations

import ctypes
import json
import os
import socket
from pathlib import Path

PROT_RW, PROT_RX, PROT_RWX = 3, 5, 7
MAP_PRIVATE_ANONYMOUS = 0x22
PAGE = 4096


def attempts() -> dict[str, object]:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    out: dict[str, object] = {}
    failed = libc.mmap(None, PAGE, PROT_RWX, MAP_PRIVATE_ANONYMOUS, -1, 0) == ctypes.c_void_p(-1).value
    out["wx_mmap"] = ctypes.get_errno() if failed else 0
    page = libc.mmap(None, PAGE, PROT_RW, MAP_PRIVATE_ANONYMOUS, -1, 0)
    out["mprotect_exec"] = ctypes.get_errno() if libc.mprotect(ctypes.c_void_p(page), PAGE, PROT_RX) else 0
    try:
        socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0).close()
        out["netlink"] = 0
    except OSError as exc:
        out["netlink"] = exc.errno
    out["ptrace"] = ctypes.get_errno() if libc.ptrace(0, 0, 0, 0) else 0  # PTRACE_TRACEME: not in @system-service
    status = Path("/proc/self/status").read_text().splitlines()
    out["cap_eff"] = next(line.split()[1] for line in status if line.startswith("CapEff"))
    out["umask"] = os.umask(0)
    return out


if __name__ == "__main__":
    print(json.dumps(attempts()))
