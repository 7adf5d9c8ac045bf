"""When a run started: the clock ``RunTimes`` (tracking.py) counts a run's time from. Light: the entry point
imports it before the heavy libraries, whose import is part of the time measured."""

from __future__ import annotations

import os
import time

_run_started_at: float | None = None  # set by mark_run_start(); None: the process's start
_runs_marked = 0
_earlier_attempts_s = 0.0  # a continued run's earlier attempts (stopped, requeued, failed), set as it starts


def process_started_at() -> float:
    """When this process started (wall clock, to ~10 ms), from /proc; where there is none, now."""
    try:
        with open("/proc/self/stat") as f:
            started_ticks = int(f.read().rsplit(")", 1)[1].split()[19])  # field 22: start time, clock ticks after boot
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return time.time() - (uptime - started_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return time.time()


def mark_run_start() -> None:
    """Called as each (sweep) job starts: the first run of a process counts from the process's start (interpreter,
    imports), later ones (a sweep's jobs one after another in one process) from their own start."""
    global _run_started_at, _runs_marked, _earlier_attempts_s
    _run_started_at = process_started_at() if _runs_marked == 0 else time.time()
    _runs_marked += 1
    _earlier_attempts_s = 0.0


def run_started_at() -> float:
    return _run_started_at if _run_started_at is not None else process_started_at()


def mark_earlier_attempts(seconds: float) -> None:
    """The time a run continued from its checkpoint took before this attempt (its stop records say)."""
    global _earlier_attempts_s
    _earlier_attempts_s = seconds


def earlier_attempts_s() -> float:
    return _earlier_attempts_s
