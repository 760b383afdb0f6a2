"""One line per job on the terminal while the Dagster CLI materializes assets.

``dagster asset materialize`` prints every engine event; ``medmo`` keeps all of it in a log file and
shows, per asset step, one line that says what the job is doing (its latest progress or log message),
then whether it succeeded and how long it took. On a terminal the line is rewritten in place;
otherwise a line is printed when a job starts, each tenth of its progress, and when it ends.
"""

from __future__ import annotations

import re
import sys
import time
from dataclasses import dataclass, field
from typing import IO

# "<date> <time> <tz> - dagster - LEVEL - JOB - RUN_ID - [pid - ][step - ][EVENT_TYPE - ]message"
LINE = re.compile(r"^\S+ \S+ \S+ - dagster - (?P<level>[A-Z]+) - \S+ - [0-9a-f-]{36} - (?P<rest>.*)$")
EVENT = re.compile(r"^(?:\d+ - )?(?:(?P<step>[\w.\[\]]+) - )?(?P<event>[A-Z][A-Z_]+[A-Z]) - (?P<message>.*)$")
PLAIN = re.compile(r"^(?P<step>[\w.\[\]]+) - (?P<message>.*)$")
PERCENT = re.compile(r"\((\d+)%\)")
# Where a second log line begins inside one. Dagster mirrors a step's console output through a `tail -F`
# that it terminates when the step ends (dagster-io/dagster#23336): a line it cut short runs on into the next.
EMBEDDED = re.compile(r"(?<=.)(?=\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4} - dagster - )")
WIDTH = 100


@dataclass
class Job:
    step: str
    started: float = field(default_factory=time.monotonic)
    status: str = "started"
    shown_tenth: int = -1


class ProgressView:
    """Reads the Dagster CLI's output line by line: writes each to ``log``, and a short view to ``out``."""

    def __init__(self, log: IO[str], out: IO[str] | None = None, tty: bool | None = None, prefix: str | None = None):
        self.log, self.out, self.prefix = log, out or sys.stdout, prefix
        self.tty = self.out.isatty() if tty is None else tty
        self.jobs: dict[str, Job] = {}
        self.errors: list[str] = []
        self._open_line = False

    def feed(self, raw: str) -> None:
        self.log.write(raw)
        for line in EMBEDDED.split(raw.rstrip("\n")):
            self._line(line)

    def _line(self, line: str) -> None:
        match = LINE.match(line)
        if not match:
            return
        level, rest = match["level"], match["rest"]
        event = EVENT.match(rest)
        if event and event["event"] in {"STEP_START", "STEP_SUCCESS", "STEP_FAILURE", "RUN_FAILURE"}:
            self._event(event["step"], event["event"], event["message"])
            return
        if event:
            return  # the other engine events stay in the log
        plain = PLAIN.match(rest)
        if plain and plain["step"] in self.jobs:
            message = plain["message"]
            if level in {"ERROR", "CRITICAL"}:
                self.errors.append(f"{plain['step']}: {message}")
            self._update(self.jobs[plain["step"]], message)

    def _event(self, step: str | None, kind: str, message: str) -> None:
        if kind == "STEP_START" and step:
            job = self.jobs[step] = Job(step)
            self._show(job, "started", final=not self.tty)
        elif kind == "STEP_SUCCESS" and step in self.jobs:
            job = self.jobs[step]
            job.status = "done"
            self._show(job, f"done in {time.monotonic() - job.started:.0f} s", final=True)
        elif kind == "STEP_FAILURE" and step in self.jobs:
            job = self.jobs[step]
            job.status = "failed"
            self.errors.append(f"{step}: {message}")
            self._show(job, "FAILED: " + message, final=True)
        elif kind == "RUN_FAILURE":
            self.errors.append(message)

    def _update(self, job: Job, message: str) -> None:
        if self.tty:
            self._show(job, message, final=False)
            return
        percent = PERCENT.search(message)
        if percent and int(percent[1]) // 10 > job.shown_tenth:
            job.shown_tenth = int(percent[1]) // 10
            self._show(job, message, final=True)

    def _show(self, job: Job, text: str, *, final: bool) -> None:
        elapsed = f"{time.monotonic() - job.started:5.0f}s"
        name = (self.prefix if job.step in self.prefix else f"{self.prefix}: {job.step}") if self.prefix else job.step
        line = f"{name[:48]:<28} {elapsed} {' '.join(text.split())}"[:WIDTH - 1]
        if self.tty:
            self.out.write("\r\x1b[K" + line + ("\n" if final else ""))
            self._open_line = not final
        else:
            self.out.write(line + "\n")
        self.out.flush()

    def close(self, succeeded: bool = False) -> None:
        """End the view; ``succeeded`` is the command's exit status. The same `tail -F` can drop the
        last lines of a step (its STEP_SUCCESS among them), so a job still open when the command
        succeeded is shown done, at the time the command ended."""
        if succeeded:
            for job in self.jobs.values():
                if job.status == "started":
                    job.status = "done"
                    self._show(job, f"done in {time.monotonic() - job.started:.0f} s", final=True)
        if self._open_line:
            self.out.write("\n")
            self._open_line = False
        self.out.flush()
