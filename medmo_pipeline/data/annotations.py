"""Annotation files read within a cost bound, with errors that name the file and the line.

Line-based formats (JSONL, CSV/TSV) are read line by line through ``BoundedLines``: a line longer
than ``MAX_LINE`` is refused (naming the file and line) once that many characters are read, and a
run of whitespace of any length is skipped in bounded pieces, so memory stays bounded whatever the
file holds. Formats read whole (a JSON list) are refused over ``MAX_WHOLE_FILE`` from the size the
file system declares, before any byte is read; nesting too deep for the parser is named too.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

MAX_LINE = 16 << 20  # characters of one JSONL / CSV line: far beyond any real record
MAX_WHOLE_FILE = 512 << 20  # bytes of a JSON file parsed whole (its objects take several times that)


class AnnotationError(ValueError):
    """An annotation file that cannot be read within its bounds; the message names file and line."""


class BoundedLines:
    """The lines of an open file (text or binary), each at most ``max_line`` long.

    Iterates like the file itself (csv.reader and JSONL loops take it as they are); a whitespace-only
    line of any length comes out as one newline; a longer line, or text that does not decode, raises
    AnnotationError naming ``name`` and the line number.
    """

    def __init__(self, handle: IO, name: str, max_line: int = MAX_LINE):
        self.handle, self.name, self.max_line, self.number = handle, name, max_line, 0
        self.newline = b"\n" if isinstance(handle.read(0), bytes) else "\n"

    def __iter__(self) -> BoundedLines:
        return self

    def __next__(self):
        line = self._read()
        if not line:
            raise StopIteration
        self.number += 1
        if len(line) > self.max_line and not line.endswith(self.newline):
            if line.strip():
                raise AnnotationError(f"{self.name}: line {self.number} is longer than {self.max_line} characters")
            while line and not line.endswith(self.newline):  # whitespace: read on to the line's end
                if line.strip():
                    raise AnnotationError(f"{self.name}: line {self.number} is longer than {self.max_line} "
                                          "characters")
                line = self._read()
            return self.newline
        return line

    def _read(self):
        try:
            return self.handle.readline(self.max_line + 1)
        except UnicodeDecodeError as error:
            # text is decoded a buffer at a time: the bad byte is on this line or a few after it
            raise AnnotationError(f"{self.name}: not UTF-8 at or after line {self.number + 1} ({error})") from None


def json_line(line: str | bytes, name: str, number: int) -> Any:
    """One JSONL record; text that is not JSON (or nests too deeply) raises AnnotationError naming
    ``name`` and line ``number``."""
    try:
        return json.loads(line)
    except (ValueError, RecursionError) as error:
        raise AnnotationError(f"{name}: line {number} is not a JSON record ({type(error).__name__}: "
                              f"{str(error)[:200]})") from None


def csv_records(lines: BoundedLines, delimiter: str) -> Iterator[dict]:
    """``csv.DictReader`` over bounded lines; a row the csv module refuses (a field over its limit,
    a stray quote) raises AnnotationError naming the file and line."""
    reader = csv.DictReader(lines, delimiter=delimiter)
    while True:
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            raise AnnotationError(f"{lines.name}: line {lines.number}: {error}") from None
        yield record


def load_json(path: Path, name: str, max_bytes: int = MAX_WHOLE_FILE) -> Any:
    """A JSON file parsed whole: refused over ``max_bytes`` from its declared size; bytes that are
    not UTF-8, text that is not JSON, or nesting too deep raise AnnotationError naming ``name``."""
    size = path.stat().st_size
    if size > max_bytes:
        raise AnnotationError(f"{name}: {size} bytes is over the {max_bytes} a JSON file may hold to be read "
                              "whole; convert it to JSONL (one record a line)")
    raw = path.read_bytes()
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as error:
        raise AnnotationError(f"{name}: not UTF-8 at byte {error.start} ({error.reason})") from None
    except json.JSONDecodeError as error:
        raise AnnotationError(f"{name}: not JSON at line {error.lineno} column {error.colno} ({error.msg})") from None
    except RecursionError:
        raise AnnotationError(f"{name}: nested too deeply to parse") from None
