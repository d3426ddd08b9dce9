"""Lowering the CPU and I/O priority of the calling process (Linux), so that processes that
copy files for minutes give way to those answering requests on the same machine.

A process may lower its own priority without privileges, never raise it back: both calls are
made once, when a staging worker's pool process starts (tasks.worker_priority)."""

import ctypes
import os
import platform
from dataclasses import dataclass

# ioprio_set(2): who, the class in the top bits, the level (0 first … 7 last) in the low ones.
_IOPRIO_WHO_PROCESS = 1
_IOPRIO_CLASS_SHIFT = 13
IONICE_CLASSES = {"best-effort": 2, "idle": 3}
IONICE_OFF = ("", "none")
_IOPRIO_SYSCALLS = {  # (ioprio_set, ioprio_get) by machine: no libc wrapper exists
    "x86_64": (251, 252),
    "aarch64": (30, 31),
    "arm64": (30, 31),
}


@dataclass(frozen=True)
class IoPriority:
    io_class: int
    level: int

    @property
    def value(self) -> int:
        return (self.io_class << _IOPRIO_CLASS_SHIFT) | self.level


def parse_ionice(text: str) -> IoPriority | None:
    """``best-effort:N`` (N from 0, first served, to 7, last), ``idle`` (served only when no
    one else uses the disk), or ``none``/empty (left as it is: None). ValueError, naming what
    is accepted, for anything else."""
    spec = text.strip().lower()
    if spec in IONICE_OFF:
        return None
    name, _, level = spec.partition(":")
    if name == "idle" and not level:
        return IoPriority(IONICE_CLASSES["idle"], 0)
    if name == "best-effort" and level.isdigit() and 0 <= int(level) <= 7:
        return IoPriority(IONICE_CLASSES["best-effort"], int(level))
    raise ValueError(
        f"{text!r} is not an I/O priority: use best-effort:N (N from 0 to 7, 7 last), "
        "idle, or none to leave it as it is"
    )


def _ioprio_syscall(index: int):
    numbers = _IOPRIO_SYSCALLS.get(platform.machine())
    if numbers is None:
        return None, None
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.syscall, numbers[index]


def io_priority_of(pid: int) -> IoPriority | None:
    """The I/O priority of process ``pid`` (None where it cannot be read)."""
    syscall, number = _ioprio_syscall(1)
    if syscall is None:
        return None
    value = syscall(number, _IOPRIO_WHO_PROCESS, pid)
    if value < 0:
        return None
    return IoPriority(value >> _IOPRIO_CLASS_SHIFT, value & ((1 << _IOPRIO_CLASS_SHIFT) - 1))


def lower_own_priority(nice: int, io: IoPriority | None) -> list[str]:
    """Make the calling process at least ``nice`` (0: unchanged; never raised back) and give
    it the I/O priority ``io`` (None: unchanged). Returns what could not be done, as messages
    for a warning: a missing privilege or syscall costs latency elsewhere, not correctness."""
    problems = []
    current = os.getpriority(os.PRIO_PROCESS, 0)
    if nice > current:
        try:
            os.setpriority(os.PRIO_PROCESS, 0, nice)
        except OSError as exc:
            problems.append(f"nice {nice} not set: {exc}")
    if io is not None:
        syscall, number = _ioprio_syscall(0)
        if syscall is None:
            problems.append(f"I/O priority not set: no ioprio_set on {platform.machine()}")
        elif syscall(number, _IOPRIO_WHO_PROCESS, 0, io.value) != 0:
            problems.append(f"I/O priority not set: {os.strerror(ctypes.get_errno())}")
    return problems
