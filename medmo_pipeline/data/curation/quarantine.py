"""The quarantine table: every rejected row with its reason, file and record, published only
with the shards it belongs to."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

QUARANTINE_NAME = "quarantine.parquet"
QUARANTINE_BATCH = 10_000
MAX_TEXT = 2000  # characters kept of each text field: a detail may quote a hostile value

def storable(value: str) -> str:
    """``value`` as Arrow can store it: a lone surrogate (a byte that was not UTF-8 in a file name or
    a record, kept by ``surrogateescape``) written as its backslash escape, so the record that
    explains a row is never what fails."""
    return value if value.isascii() else value.encode("utf-8", "backslashreplace").decode("utf-8")


def stored_text(value: str) -> str:
    """``storable(value)`` of its first ``MAX_TEXT`` characters."""
    return storable(value[:MAX_TEXT])


class QuarantineWriter:
    """Rejected rows, appended in batches to a hidden file renamed into place on close."""

    SCHEMA = pa.schema([("row_index", pa.int64()), ("row_id", pa.string()), ("source", pa.string()),
                        ("reason", pa.string()), ("detail", pa.string()), ("file", pa.string()),
                        ("record", pa.string())])

    def __init__(self, path: Path):
        self.path = Path(path)
        self.temporary = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        for stale in self.path.parent.glob(f".{self.path.name}.tmp-*"):  # left by a killed run
            stale.unlink(missing_ok=True)
        self.writer = pq.ParquetWriter(self.temporary, self.SCHEMA, compression="zstd")
        self.pending: list[dict] = []

    def add(self, index: int, row_id: str, source: str, reason: str, detail: str, *, file: str = "",
            record: str = "") -> None:
        self.pending.append({"row_index": index, "row_id": stored_text(row_id), "source": source, "reason": reason,
                             "detail": stored_text(detail), "file": stored_text(file), "record": stored_text(record)})
        if len(self.pending) >= QUARANTINE_BATCH:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            self.writer.write_table(pa.Table.from_pylist(self.pending, schema=self.SCHEMA))
            self.pending.clear()

    def close(self) -> None:
        self.flush()
        self.writer.close()
        os.replace(self.temporary, self.path)

    def abort(self) -> None:
        self.writer.close()
        self.temporary.unlink(missing_ok=True)



@contextmanager
def published_on_success(quarantine: QuarantineWriter):
    """The quarantine table is renamed into place only when the shards were all written."""
    try:
        yield quarantine
    except BaseException:
        quarantine.abort()
        raise
    quarantine.close()
