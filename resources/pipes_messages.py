"""A Pipes message reader that parses only whole lines.

Dagster's ``PipesFileMessageReader`` tails the job's message file with ``readline`` and parses what it
gets. A long message (a log line holding sampled completions, a report with an inline plot) reaches
the file in several writes, so under load the reader can read its first part alone; ``json.loads``
then fails, the reader thread dies, and every later message of the job is lost, its final report
included, so the asset fails with "reports no path" although the job succeeded. This reader keeps an
unterminated tail until its newline arrives.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import dagster as dg

POLL_SECONDS = 0.01
MESSAGE_FILE = "messages.jsonl"


def complete_lines(path: str, should_stop: Callable[[], bool]) -> Iterator[str]:
    """Each newline-terminated line appended to ``path`` until ``should_stop()``; a part line waits for
    the rest of it. After the stop, what is left without a newline (a writer killed mid-line) is
    yielded as it is, so the reader names it instead of dropping it silently."""
    pending = ""
    with open(path, encoding="utf-8") as stream:
        while True:
            chunk = stream.readline()
            if chunk:
                pending += chunk
                if pending.endswith("\n"):
                    yield pending
                    pending = ""
            elif should_stop():
                chunk = stream.read()  # anything written between the last read and the stop
                pending += chunk
                lines = pending.split("\n")
                yield from (line + "\n" for line in lines[:-1])
                if lines[-1]:
                    yield lines[-1]
                return
            else:
                time.sleep(POLL_SECONDS)


class WholeLineFileMessageReader(dg.PipesFileMessageReader):
    """``PipesFileMessageReader`` reading through :func:`complete_lines`."""

    def _reader_thread(self, handler, is_resource_complete) -> None:
        try:
            for line in complete_lines(self._path, is_resource_complete.is_set):
                handler.handle_message(json.loads(line))
        except Exception:
            handler.report_pipes_framework_exception(f"{self.__class__.__name__} reader thread", sys.exc_info())
            raise


class WholeLineTempFileMessageReader(dg.PipesTempFileMessageReader):
    """``PipesTempFileMessageReader`` (the subprocess client's default) reading whole lines only."""

    @contextmanager
    def read_messages(self, handler) -> Iterator[dict]:
        with tempfile.TemporaryDirectory(prefix="medmo-pipes-") as directory:
            reader = WholeLineFileMessageReader(os.path.join(directory, MESSAGE_FILE),
                                                include_stdio_in_messages=self._include_stdio_in_messages)
            with reader.read_messages(handler) as params:
                yield params
