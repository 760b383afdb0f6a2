"""Limits that make a test fail instead of hanging or running on: CPU time (not wall-clock time,
which other jobs on the machine stretch) and, for a block that could wait for ever, an alarm."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager


class GuardTripped(BaseException):
    """A guard's limit reached. Not an Exception: code under test that catches ``Exception`` (a
    decoder turning any error into a refusal) must not swallow it and pass as a verdict."""


@contextmanager
def cpu_seconds_limit(seconds: float) -> Iterator[None]:
    """Stop the block with GuardTripped once this process has used ``seconds`` of CPU time."""
    def stop(signum, frame):
        raise GuardTripped(f"still running after {seconds} CPU second(s)")

    previous = signal.signal(signal.SIGPROF, stop)
    signal.setitimer(signal.ITIMER_PROF, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.signal(signal.SIGPROF, previous)


@contextmanager
def alarm(seconds: int) -> Iterator[None]:
    """Stop the block with GuardTripped after ``seconds`` of wall-clock time: a guard against a
    block that waits for ever (a FIFO opened for reading), far above what the work takes."""
    def stop(signum, frame):
        raise GuardTripped(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, stop)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
