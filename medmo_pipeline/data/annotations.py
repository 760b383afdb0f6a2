"""Annotation files read within a cost bound, with errors that name the file and the line.

Line-based formats (JSONL, CSV/TSV) are read line by line through ``BoundedLines``: a line longer
than ``MAX_LINE`` is read through to its end in pieces and refused (naming the file and line) as
its record's problem, and a run of whitespace of any length is skipped in bounded pieces, so memory
stays bounded whatever the file holds. A JSON file of records (a list, a list or object under a
key, an object of records by id) is read record by record (``json_items``): the file a piece at a
time, each record decoded by json's own scanner and at most ``MAX_LINE`` characters long, so memory
is one record's, not the file's (a 150 MB list of empty objects took over 1 GB parsed whole). A
record that cannot be read (too long, not JSON, nested too deeply) is stepped over and named.
"""

from __future__ import annotations

import codecs
import csv
import json
import re
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

MAX_LINE = 16 << 20  # characters of one JSONL / CSV line: far beyond any real record
# Fields of one CSV line: tables have tens of columns. Each field is a Python string, so a line of
# 16 Mi characters split at every third one held 5.5 million of them (280 MB)
MAX_FIELDS = 100_000
# Lines one CSV record may span (its quoted fields' line breaks): a clinical note runs to hundreds.
# Each line of the record being read is kept (to be read again if its quote never closes), so a
# field of millions of one-character lines, within MAX_LINE, would hold about 100 bytes a line.
MAX_RECORD_LINES = 100_000
# Real reports and contexts exceed csv's 128 KiB default; the bound also ends a field that a stray
# quote would otherwise run on through the rest of the file
csv.field_size_limit(MAX_LINE)
# Bytes of a file holding one record's text (a report, a caption sidecar, a YOLO label file, one
# image's box JSON), read whole: one line's bound is plenty
MAX_RECORD_FILE = MAX_LINE

_WIDE_MARKS = {b"\xff\xfe\x00\x00": "UTF-32", b"\x00\x00\xfe\xff": "UTF-32", b"\xff\xfe": "UTF-16",
               b"\xfe\xff": "UTF-16"}


def wide_text(head: bytes) -> str:
    """Why a file starting with ``head`` (its first 4 bytes) is no UTF-8 text: a UTF-16 or UTF-32
    byte-order mark (a spreadsheet's "Unicode text" export), or the same saved without the mark,
    told by the NUL bytes of its first characters (read as UTF-8, every other character was a NUL:
    no column name matched, every image path was unsafe); '' for any other start."""
    for mark, encoding in _WIDE_MARKS.items():
        if head.startswith(mark):
            return f"is {encoding} text (it starts with a {encoding} byte-order mark)"
    nul = bytes(index for index, byte in enumerate(head[:4]) if byte == 0)
    encoding = {b"\x01\x03": "UTF-16", b"\x00\x02": "UTF-16", b"\x01\x02\x03": "UTF-32",
                b"\x00\x01\x02": "UTF-32"}.get(nul) if len(head) >= 4 else None  # LE, BE; for ASCII text
    return f"is {encoding} text without a byte-order mark (NUL bytes between its characters)" if encoding else ""


class AnnotationError(ValueError):
    """An annotation file that cannot be read within its bounds; the message names file and line."""


class LineTooLong(AnnotationError):
    """One line over the bound, read through to its end: the lines after it can still be read."""


class RecordTooLong(AnnotationError):
    """A CSV record spanning more than MAX_RECORD_LINES lines: the lines it took in are read again."""


class BoundedLines:
    """The lines of an open file (text or binary), each at most ``max_line`` long.

    Iterates like the file itself (csv.reader and JSONL loops take it as they are); a whitespace-only
    line of any length comes out as one newline; a longer line is read through to its end in
    pieces of ``max_line`` and raises LineTooLong (the iteration can go on with the next line:
    one record's problem), and text that does not decode raises AnnotationError, both naming
    ``name`` and the line number.
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
            blank = True
            while True:  # read on to the line's end, a piece at a time
                blank = blank and not line.strip()
                if not line or line.endswith(self.newline):
                    break
                line = self._read()
            if blank:
                return self.newline
            raise LineTooLong(f"{self.name}: line {self.number} is longer than {self.max_line} characters")
        return line

    def _read(self):
        try:
            return self.handle.readline(self.max_line + 1)
        except UnicodeDecodeError as error:
            # text is decoded a buffer at a time: the bad byte is on this line or a few after it
            raise AnnotationError(f"{self.name}: not UTF-8 at or after line {self.number + 1} ({error})") from None


class RepeatedMember(ValueError):
    """A JSON object naming one member twice."""


def unique_members(pairs: list[tuple[str, Any]]) -> dict:
    """An object's members as a dict, RepeatedMember when one is named twice: json keeps the last
    value silently, and which one the writer meant is a guess (the record's problem, not a pick)."""
    members = dict(pairs)
    if len(members) < len(pairs):
        seen = set()
        for key, _ in pairs:
            if key in seen:
                raise RepeatedMember(f"the member {key[:80]!r} is named twice in one object: which value is "
                                     "meant is unknown")
            seen.add(key)
    return members


def json_line(line: str | bytes, name: str, number: int) -> Any:
    """One JSONL record; text that is not JSON (or nests too deeply, or names a member twice in
    one object) raises AnnotationError naming ``name`` and line ``number``."""
    try:
        return json.loads(line, object_pairs_hook=unique_members)
    except (ValueError, RecursionError) as error:
        raise AnnotationError(f"{name}: line {number} is not a JSON record ({type(error).__name__}: "
                              f"{str(error)[:200]})") from None


@dataclass(frozen=True)
class UnreadableRecord:
    """In place of a record that cannot be read (a JSON record stepped over, a CSV record a stray
    quote broke): why, naming the file and line."""

    problem: str


def csv_newline(head: bytes) -> str:
    """The ``newline`` to open a CSV/TSV with, given its first bytes: "\\n" where lines end in LF or
    CRLF, so a carriage return alone inside a record does not end its line (csv refuses it in an
    unquoted field: that record's problem, not a split record); "" for a file whose lines end in a
    carriage return alone (an old Mac export: a head holding CR but no LF)."""
    return "" if b"\r" in head.rstrip(b"\r") and b"\n" not in head else "\n"


def csv_records(lines: BoundedLines, delimiter: str) -> Iterator[tuple[int, dict]]:
    """(line number, row as a dict) of a CSV with a header row, read by ``csv_rows``; a short row's
    missing fields are None (its columns are the header's). A row that cannot be read (a stray
    quote, a field over its bound) raises AnnotationError naming the file and line: for a table
    every row of which matters (a split table)."""
    rows = csv_rows(lines, delimiter)
    header = next(rows, None)
    if header is None:
        return
    if isinstance(header[1], UnreadableRecord):
        raise AnnotationError(header[1].problem)
    names = header[1]
    for line, values in rows:
        if isinstance(values, UnreadableRecord):
            raise AnnotationError(values.problem)
        if values:
            yield line, dict(zip(names, [*values, *[None] * (len(names) - len(values))], strict=False))


class _ReplayableLines:
    """``lines`` as csv.reader takes them, one at a time, keeping the (number, line) pairs of the
    record being read (``taken``); lines put back (``again``) are handed out first. A line holding
    more than ``MAX_FIELDS`` delimiters raises LineTooLong before the csv module splits it."""

    def __init__(self, lines: BoundedLines, delimiter: str):
        self.lines, self.delimiter, self.taken, self.pending = lines, delimiter, [], deque()

    def __iter__(self) -> _ReplayableLines:
        return self

    def __next__(self) -> str:
        if self.pending:
            item = self.pending.popleft()
        else:
            line = next(self.lines)
            if line[:1] == "\ufeff":  # byte-order marks inside the file (two saved, or files saved with one
                line = line.lstrip("\ufeff")  # joined end to end) are no text: "\\ufeffid" is no column name
            if line.count(self.delimiter) >= MAX_FIELDS:
                raise LineTooLong(f"{self.lines.name}: line {self.lines.number} holds more than {MAX_FIELDS} "
                                  "fields")
            item = (self.lines.number, line)
        self.taken.append(item)
        if len(self.taken) > MAX_RECORD_LINES:
            raise RecordTooLong(f"spans more than {MAX_RECORD_LINES} lines")
        return item[1]

    def again(self, items: list[tuple[int, str]]) -> None:
        self.pending.extendleft(reversed(items))


def csv_rows(lines: BoundedLines, delimiter: str, *,
             quoted: bool = True) -> Iterator[tuple[int, list[str] | UnreadableRecord]]:
    """The records of a CSV/TSV (the header row too), each as (its first line's number, its values),
    or an ``UnreadableRecord`` naming the file and line in place of one that cannot be read.

    Quoted fields may hold the delimiter and line breaks, so one stray quote would make the lines
    after it part of one field, their records gone (or worse, kept as one wrong row). Quoting is
    therefore strict (a closing quote must end its field), and a record the csv module refuses (a
    quote followed by text, a field over the field bound, a quote still open at the end of the file)
    costs only its first line, where the quote opened: the lines it took in are read again as
    records of their own. A line longer than ``lines.max_line``, or of more than ``MAX_FIELDS``
    fields, is its own UnreadableRecord."""
    source = _ReplayableLines(lines, delimiter)
    reader = csv.reader(source, delimiter=delimiter, strict=True,
                        quoting=csv.QUOTE_MINIMAL if quoted else csv.QUOTE_NONE)
    while True:
        source.taken = []
        try:
            values = next(reader)
        except StopIteration:
            return
        except (csv.Error, LineTooLong, RecordTooLong) as error:
            taken = source.taken
            if taken:  # the record's first line is spent; the lines it took in are read again
                first, _ = taken[0]
                # csv's own words for a lone CR suggest newline='', which would split the record instead
                lone_cr = isinstance(error, csv.Error) and "new-line character seen in unquoted field" in str(error)
                if lone_cr and len(taken) == 1:
                    problem = ("the record holds a carriage return alone inside an unquoted field (quote the "
                               "field, or remove the carriage return)")
                elif isinstance(error, RecordTooLong):
                    problem = (f"a quote opened here {error}; the {len(taken) - 1} lines it took in are read as "
                               "records of their own")
                elif isinstance(error, LineTooLong):
                    problem = f"a quote opened here is still open at line {lines.number}, which cannot be read"
                elif len(taken) > 1:
                    cause = f"line {taken[-1][0]} holds a carriage return alone inside an unquoted field" \
                        if lone_cr else f"csv: {error}"
                    problem = (f"a quote opened here does not close a field ({cause}); the {len(taken) - 1} "
                               "lines it took in are read as records of their own")
                else:
                    problem = f"not a CSV record (csv: {error})"
                yield first, UnreadableRecord(f"{lines.name}: line {first}: {problem}")
                source.again(taken[1:])
            if isinstance(error, LineTooLong):
                yield lines.number, UnreadableRecord(str(error))
            continue
        yield source.taken[0][0], values  # a record takes one line at least


READ_PIECE = 1 << 20  # bytes read at a time by ``json_items``
# After a record that is not JSON, this many records are each cut out of the text before they are
# decoded (see ``_JsonReader.record``); a further bad record among them starts the count again.
CAREFUL_RECORDS = 1000
_DECODER = json.JSONDecoder(object_pairs_hook=unique_members)  # a member named twice: the record's problem
_SPACE = re.compile(r"[ \t\n\r]*")
_STRUCTURE = re.compile(r'["\[\]{},]')
_STRING_BODY = re.compile(r'[^"\\]*(?:\\.[^"\\]*)*', re.DOTALL)  # up to a string's closing quote
_NUMBER_GOES_ON = re.compile(r"[0-9eE.+-]*")  # what is left of the text after a number that may be its rest


def json_items(path: Path, name: str, key: str = "", max_record: int = MAX_LINE, *,
               required: bool = True) -> Iterator[tuple[int | str, Any]]:
    """The records of a JSON file, one at a time: ``(index, record)`` for the items of a list,
    ``(key, record)`` for the members of an object; the file's top-level value, or the value under
    ``key`` of its top-level object (the other members are stepped over record by record).

    Bytes that are not UTF-8 are kept as surrogates (curation quarantines the record holding
    them); a UTF-16 or UTF-32 file (``wide_text``) raises AnnotationError naming ``name``. A record
    longer than ``max_record`` characters, not JSON, nested too deeply or naming a member of one of
    its objects twice (``unique_members``) comes out
    as an ``UnreadableRecord`` saying so (naming ``name`` and the line), stepped over by counting
    its brackets; what leaves the file's structure unknown (no ``key``, unless not ``required``:
    no records then; a record that runs to the end of the file; a missing ',') raises
    AnnotationError naming ``name`` and the line."""
    with open(path, "rb") as handle:
        if wide := wide_text(handle.read(4)):  # every record would be unreadable: the file's problem
            raise AnnotationError(f"{name} {wide}; save it as UTF-8")
        handle.seek(0)
        reader = _JsonReader(handle, name, max_record)
        if key:
            reader.take("{", f"at the start: the records are under {key!r} of a JSON object")
            if not reader.find(key):
                if not required:
                    return
                raise AnnotationError(f"{name}: the top-level object has no member {key!r}")
        yield from reader.items()
        if not key:  # records after the top-level value would be neither read nor counted
            reader.end()


class _JsonReader:
    """A JSON text read a piece at a time: ``text[at:]`` is what is read and not yet taken."""

    def __init__(self, handle: IO[bytes], name: str, max_record: int):
        self.handle, self.name, self.max_record = handle, name, max_record
        self.decode = codecs.getincrementaldecoder("utf-8-sig")(errors="surrogateescape").decode
        self.text, self.at, self.lines, self.ended = "", 0, 0, False  # lines: those dropped with taken text
        self.counted = (0, 0)  # a position in ``text`` and the newlines before it (see ``_newlines_before``)
        self.careful = 0  # records still to cut out before decoding them (see ``record``)

    def items(self) -> Iterator[tuple[int | str, Any]]:
        """The members of the list or object that starts here."""
        opening = self.peek()
        if opening not in ("[", "{"):
            raise self.error(f"the records are not a JSON list or object (they start with {opening or 'nothing'!r})")
        closing, index = "]" if opening == "[" else "}", 0
        self.at += 1
        if self.peek() == closing:
            self.at += 1
            return
        while True:
            key = index if opening == "[" else self.member_name()
            yield key, self.record(f"record {index}" if opening == "[" else f"record {key[:80]!r}")
            following = self.peek()
            self.at += 1
            if following == closing:
                return
            if following != ",":
                raise self.error(f"expected ',' or {closing!r} after record {index}")
            if self.peek() == closing:  # a trailing comma ("[{...},]"): no record follows it
                self.at += 1
                return
            index += 1

    def end(self) -> None:
        """AnnotationError, naming the line, unless only whitespace follows the value just read."""
        if self.peek():
            raise self.error("the file goes on after its JSON list/object ends (a second JSON value or JSON "
                             "lines appended): make it one list, or write one record a line (JSON lines)")

    def find(self, key: str) -> bool:
        """Step over the members of the object being read up to ``key``'s value; False at its end."""
        if self.peek() == "}":
            return False
        while True:
            if self.member_name() == key:
                return True
            if self.peek() in ("[", "{"):
                for _ in self.items():  # a large member is stepped over a record at a time
                    pass
            else:
                self.value("a member's value")
            following = self.peek()
            self.at += 1
            if following != ",":
                return False

    def record(self, what: str) -> Any:
        """The value that starts here, or an UnreadableRecord when it cannot be decoded (not JSON,
        too long, too deep) and could be stepped over: one record's problem.

        After such a record, the next ``CAREFUL_RECORDS`` records are first stepped over (their end
        found by counting brackets) and then decoded on their own (``value``'s ``end``): json's error
        for a record counts the lines of the whole text before it, so a file of many bad records
        decoded in place cost their number times the text read at a time (80,000 ten-byte records:
        21 s). A record running past what is read is decoded in place."""
        end = None
        if self.careful:
            self.careful -= 1
            self.peek()
            end = _ValueEnd().scan(self.text, self.at)
        try:
            return self.value(what, end)
        except AnnotationError as error:
            if end is not None:
                self.at = end
            elif not self.skip():
                raise
            self.careful = CAREFUL_RECORDS
            return UnreadableRecord(str(error))

    def skip(self) -> bool:
        """Step over the value that starts here without decoding it, in bounded memory (strings
        stepped over piece by piece, brackets counted); False when the file ends first."""
        scan = _ValueEnd()
        while (end := scan.scan(self.text, self.at)) is None:
            self.at = scan.resume_at  # the text ends inside the value
            if not self._read_more("a string" if scan.in_string else "a record"):
                return False
        self.at = end
        return True

    def member_name(self) -> str:
        member = self.value("a member name")
        if not isinstance(member, str):
            raise self.error("a member name is not a string")
        self.take(":", f"after the member name {member[:80]!r}")
        return member

    def value(self, what: str, end: int | None = None) -> Any:
        """The value that starts here, decoded in place (reading on while it may go on past what is
        read), or, given ``end`` (where its brackets say it ends), from its own text cut out."""
        self.peek()
        while True:
            text, start = (self.text, self.at) if end is None else (self.text[self.at:end], 0)
            try:
                value, stop = _DECODER.raw_decode(text, start)
            except json.JSONDecodeError as error:
                cut = end is None and (error.pos >= len(text) - 12 or error.msg.startswith("Unterminated string"))
                if cut and self._read_more(what):  # the value may go on past what is read
                    continue
                raise self.error(f"{what} is not JSON ({error.msg})", self.at + error.pos - start) from None
            except ValueError as error:  # a number past Python's digit limit for an int (4,300)
                raise self.error(f"{what} is not readable ({error})") from None
            except RecursionError:
                raise self.error(f"{what} is nested too deeply to parse") from None
            if end is None and type(value) in (int, float) and _NUMBER_GOES_ON.fullmatch(text, stop) \
                    and self._read_more(what):
                continue  # "1" of "1.5e3" cut after the 1, or after "1.": the number may go on
            if stop - start > self.max_record:  # the same bound whether or not it was read in one piece
                raise self.error(f"{what} is longer than {self.max_record} characters")
            self.at += stop - start
            return value

    def take(self, char: str, where: str) -> None:
        if self.peek() != char:
            raise self.error(f"expected {char!r} {where}")
        self.at += 1

    def peek(self) -> str:
        """The next character that is not JSON whitespace ('' at the end), whitespace of any length
        skipped a piece at a time."""
        while True:
            self.at = _SPACE.match(self.text, self.at).end()
            if self.at < len(self.text):
                return self.text[self.at]
            if not self._read_more("whitespace"):
                return ""

    def _read_more(self, what: str) -> bool:
        """Read on (at least as much again as is pending, so a long record is decoded a few times at
        most); False at the end of the file. The text taken already is dropped."""
        if self.ended:
            return False
        pending = len(self.text) - self.at
        if pending > self.max_record:
            raise self.error(f"{what} is longer than {self.max_record} characters")
        data = self.handle.read(max(READ_PIECE, pending))
        self.ended = not data
        self.lines += self._newlines_before(self.at)
        self.text, self.at = self.text[self.at:] + self.decode(data, final=self.ended), 0
        self.counted = (0, 0)
        return True

    def error(self, problem: str, position: int | None = None) -> AnnotationError:
        line = self.lines + self._newlines_before(self.at if position is None else position) + 1
        return AnnotationError(f"{self.name}: line {line}: {problem}")

    def _newlines_before(self, position: int) -> int:
        """The newlines in ``text`` before ``position``, counted on from the last position asked
        about (errors come in file order: counting from the start each time cost the square)."""
        last, newlines = self.counted
        if position >= last:
            newlines += self.text.count("\n", last, position)
        else:
            newlines -= self.text.count("\n", position, last)
        self.counted = (position, newlines)
        return newlines


class _ValueEnd:
    """Where a JSON value ends, found by counting brackets and stepping over strings without
    decoding anything; ``scan`` may be called again on more text when the first ran out."""

    def __init__(self):
        self.depth, self.in_string, self.resume_at = 0, False, 0

    def scan(self, text: str, at: int) -> int | None:
        """The end of the value being scanned, read on from ``at``: after its closing bracket or
        quote, or at the ',' or closing bracket after a value that is no list, object or string;
        None when ``text`` ends first (the state is kept, and ``resume_at`` says where to go on
        in this text once more follows it: a backslash ending it is kept for its escaped character)."""
        while True:
            if self.in_string:
                at = _STRING_BODY.match(text, at).end()
                if at >= len(text) or text[at] != '"':
                    self.resume_at = at
                    return None
                at, self.in_string = at + 1, False
                if not self.depth:
                    return at
                continue
            found = _STRUCTURE.search(text, at)
            if found is None:
                self.resume_at = len(text)
                return None
            char, at = found.group(), found.end()
            if char == '"':
                self.in_string = True
            elif char in "[{":
                self.depth += 1
            elif self.depth and char in "]}":
                self.depth -= 1
                if not self.depth:
                    return at
            elif not self.depth:  # the list's ',' or closing bracket after a value that was no list, object or string
                return at - 1
