"""Run a command under the restrictions a systemd unit's seccomp and capability settings impose.

systemd is not PID 1 on our machines, so a unit cannot be started. What its kernel-enforced
settings do to a process can still be reproduced: this module reads them from the unit file
(``SystemCallFilter=``, ``SystemCallErrorNumber=``, ``SystemCallArchitectures=native``,
``MemoryDenyWriteExecute=``, ``RestrictAddressFamilies=``, ``NoNewPrivileges=``,
``CapabilityBoundingSet=``, ``UMask=``, ``LimitNOFILE=``), builds the seccomp filter systemd
would install (syscall groups as ``systemd-analyze syscall-filter`` lists them) and execs the
command under it. Mount namespaces (``ProtectSystem=`` and friends), ``PrivateUsers=`` and
``User=`` are not reproduced.

``python -m tests.sandbox ARGS``: with SANDBOX_UNIT=path/to/unit in the environment, runs
``python -m resolver.cli ARGS`` (so tests.nodeproc.Node can start a node through it); ``-- CMD``
runs CMD instead.
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
import resource
import socket
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

UNISTD = Path("/usr/include/x86_64-linux-gnu/asm/unistd_64.h")
AUDIT_ARCH_X86_64 = 0xC000003E
X32_SYSCALL_BIT = 0x40000000

PR_SET_NO_NEW_PRIVS = 38
PR_CAPBSET_DROP = 24
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
SECCOMP_RET_KILL_PROCESS = 0x80000000
SECCOMP_RET_ERRNO = 0x00050000
SECCOMP_RET_ALLOW = 0x7FFF0000

# classic BPF opcodes
LD_W_ABS = 0x20
JEQ_K = 0x15
JGE_K = 0x35
JSET_K = 0x45
RET_K = 0x06
ALU_AND_K = 0x54

NR_OFFSET, ARCH_OFFSET = 0, 4
PROT_WRITE, PROT_EXEC = 0x2, 0x4
SHM_EXEC = 0o100000
FAMILIES = {"AF_UNIX": socket.AF_UNIX, "AF_INET": socket.AF_INET, "AF_INET6": socket.AF_INET6}


def _arg(index: int) -> int:
    """Offset of the low 32 bits of syscall argument ``index`` in struct seccomp_data (little-endian)."""
    return 16 + 8 * index


@dataclass(frozen=True)
class UnitLimits:
    """The settings of one [Service] section that the kernel enforces per process."""

    allowed: frozenset[str] | None  # syscall names; None: no SystemCallFilter
    error: int | None  # SystemCallErrorNumber (None: kill the process, systemd's default)
    native_only: bool
    deny_write_execute: bool
    families: frozenset[int] | None
    no_new_privileges: bool
    drop_capabilities: bool
    umask: int | None
    nofile: int | None


def unit_settings(text: str) -> dict[str, list[str]]:
    """Every ``Key=value`` of a unit's [Service] section, in order (keys may repeat)."""
    found: dict[str, list[str]] = {}
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
        elif section == "Service":
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def syscall_groups() -> dict[str, list[str]]:
    """systemd's syscall groups (``@name`` -> members, groups included by name), from systemd-analyze."""
    text = subprocess.run(["systemd-analyze", "syscall-filter"], check=True, capture_output=True, text=True).stdout
    groups: dict[str, list[str]] = {}
    current: list[str] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if raw.startswith("@"):  # a header; members, groups among them, are indented
            current = groups.setdefault(line, [])
        elif line and not line.startswith("#") and current is not None:
            current.append(line)
    return groups


def expand(names: list[str], groups: dict[str, list[str]]) -> set[str]:
    out: set[str] = set()
    for name in names:
        out |= expand(groups[name], groups) if name.startswith("@") else {name}
    return out


def _yes(values: list[str] | None) -> bool:
    return values is not None and values[-1:] != [] and values[-1].lower() in ("yes", "true", "1", "on")


def _allowed(filters: list[str]) -> frozenset[str] | None:
    """systemd's reading of SystemCallFilter= lines: the first one decides allow- or deny-list."""
    if not filters:
        return None
    groups = syscall_groups()
    if filters[0].startswith("~"):
        raise ValueError("a deny-list SystemCallFilter is not reproduced here")
    allowed: set[str] = set()
    for line in filters:
        names = line.lstrip("~").split()
        if line.startswith("~"):
            allowed -= expand(names, groups)
        else:
            allowed |= expand(names, groups)
    return frozenset(allowed)


def limits_of(unit: Path) -> UnitLimits:
    s = unit_settings(unit.read_text())
    error = s.get("SystemCallErrorNumber", [""])[-1]
    families = s.get("RestrictAddressFamilies")
    umask = s.get("UMask")
    nofile = s.get("LimitNOFILE")
    return UnitLimits(
        allowed=_allowed(s.get("SystemCallFilter", [])),
        error=getattr(errno, error) if error else None,
        native_only=s.get("SystemCallArchitectures", [""])[-1] == "native",
        deny_write_execute=_yes(s.get("MemoryDenyWriteExecute")),
        families=frozenset(FAMILIES[f] for f in families[-1].split()) if families else None,
        no_new_privileges=_yes(s.get("NoNewPrivileges")),
        drop_capabilities=s.get("CapabilityBoundingSet", [None])[-1] == "",
        umask=int(umask[-1], 8) if umask else None,
        nofile=int(nofile[-1]) if nofile else None,
    )


def syscall_numbers() -> dict[str, int]:
    """x86_64 syscall numbers from the kernel headers."""
    found = re.findall(r"^#define __NR_(\w+)\s+(\d+)", UNISTD.read_text(), re.MULTILINE)
    return {name: int(nr) for name, nr in found}


Insn = tuple[int, int, int, int]


def _deny(code: int) -> int:
    return SECCOMP_RET_ERRNO | code


def _flag_check(nr: int, arg: int, mask: int, code: int, *, all_bits: bool = False) -> list[Insn]:
    """If the syscall is ``nr`` and argument ``arg`` has the bits of ``mask``, fail it with ``code``."""
    if all_bits:
        test = [(LD_W_ABS, 0, 0, _arg(arg)), (ALU_AND_K, 0, 0, mask), (JEQ_K, 0, 1, mask)]
    else:
        test = [(LD_W_ABS, 0, 0, _arg(arg)), (JSET_K, 0, 1, mask)]
    return [(JEQ_K, 0, len(test) + 1, nr), *test, (RET_K, 0, 0, _deny(code)), (LD_W_ABS, 0, 0, NR_OFFSET)]


def _family_check(nr: int, families: frozenset[int]) -> list[Insn]:
    body: list[Insn] = [(LD_W_ABS, 0, 0, _arg(0))]
    for i, family in enumerate(sorted(families)):
        body.append((JEQ_K, len(families) - i, 0, family))  # to the reload of nr: allowed
    body.append((RET_K, 0, 0, _deny(errno.EAFNOSUPPORT)))
    return [(JEQ_K, 0, len(body), nr), *body, (LD_W_ABS, 0, 0, NR_OFFSET)]


def build_filter(limits: UnitLimits) -> list[Insn]:
    """The seccomp program: architecture, then argument checks, then the allow-list."""
    numbers = syscall_numbers()
    prog: list[Insn] = [(LD_W_ABS, 0, 0, ARCH_OFFSET)]
    prog += [(JEQ_K, 1, 0, AUDIT_ARCH_X86_64), (RET_K, 0, 0, SECCOMP_RET_KILL_PROCESS)]
    prog.append((LD_W_ABS, 0, 0, NR_OFFSET))
    if limits.native_only:
        prog += [(JGE_K, 0, 1, X32_SYSCALL_BIT), (RET_K, 0, 0, SECCOMP_RET_KILL_PROCESS)]
    if limits.deny_write_execute:  # as systemd's seccomp_memory_deny_write_execute()
        prog += _flag_check(numbers["mmap"], 2, PROT_WRITE | PROT_EXEC, errno.EPERM, all_bits=True)
        prog += _flag_check(numbers["mprotect"], 2, PROT_EXEC, errno.EPERM)
        prog += _flag_check(numbers["pkey_mprotect"], 2, PROT_EXEC, errno.EPERM)
        prog += _flag_check(numbers["shmat"], 2, SHM_EXEC, errno.EPERM)
    if limits.families is not None:
        prog += _family_check(numbers["socket"], limits.families)
    if limits.allowed is None:
        return [*prog, (RET_K, 0, 0, SECCOMP_RET_ALLOW)]
    for nr in sorted(numbers[name] for name in limits.allowed if name in numbers):
        prog += [(JEQ_K, 0, 1, nr), (RET_K, 0, 0, SECCOMP_RET_ALLOW)]
    refuse = SECCOMP_RET_KILL_PROCESS if limits.error is None else _deny(limits.error)
    return [*prog, (RET_K, 0, 0, refuse)]


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def apply(limits: UnitLimits) -> None:
    """Restrict this process (and whatever it execs) as the unit would."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p, ctypes.c_ulong, ctypes.c_ulong]
    if limits.umask is not None:
        os.umask(limits.umask)
    if limits.nofile is not None:
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]  # raising it needs CAP_SYS_RESOURCE, which we may lack
        if hard != resource.RLIM_INFINITY:
            hard = min(hard, limits.nofile)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if limits.drop_capabilities:
        last = int(Path("/proc/sys/kernel/cap_last_cap").read_text())
        for cap in range(last + 1):
            _check(libc.prctl(PR_CAPBSET_DROP, cap, None, 0, 0), "PR_CAPBSET_DROP")
    if limits.no_new_privileges or limits.allowed is not None:
        _check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, None, 0, 0), "PR_SET_NO_NEW_PRIVS")
    prog = build_filter(limits)
    packed = b"".join(struct.pack("=HBBI", *insn) for insn in prog)
    buf = ctypes.create_string_buffer(packed, len(packed))
    fprog = struct.pack("=HxxxxxxQ", len(prog), ctypes.addressof(buf))
    fbuf = ctypes.create_string_buffer(fprog, len(fprog))
    _check(libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(fbuf), 0, 0), "PR_SET_SECCOMP")


def main(argv: list[str]) -> None:
    apply(limits_of(Path(os.environ["SANDBOX_UNIT"])))
    if argv[:1] == ["--"]:
        os.execvp(argv[1], argv[1:])
    os.execv(sys.executable, [sys.executable, "-m", "resolver.cli", *argv])


if __name__ == "__main__":
    main(sys.argv[1:])
