"""What an adapter yields besides sample rows: a record it could not turn into a row
(``RowQuarantined``) or one it left out on purpose (``RowFiltered``), each saying why and where.

Curation counts both by reason, so every input record ends as kept, quarantined or filtered.
Adapters never stop a source over one record: ``RowError`` raised while converting a record
becomes a ``RowQuarantined`` naming the file and the record (``adapters.common.guarded``).
"""

from __future__ import annotations

from dataclasses import dataclass

# Why an adapter quarantines a record (curation's own reasons are in curation.REASONS).
ROW_REASONS = {
    "unsafe_path": "a path from the data file is absolute, climbs out with '..' or links out of the root",
    "bad_number": "a number that does not parse, is not finite, or is past any plausible value",
    "box_nan": "a box coordinate is NaN or infinite",
    "invalid_utf8": "a text field is not valid UTF-8",
    "missing_join_key": "the record's key has no match in the table it is joined with",
    "missing_field": "a field the layout requires is absent or empty",
    "malformed_record": "a record that does not parse, or has a value of the wrong type",
    "unreadable_file": "a file the record names cannot be read",
    "image_ambiguous": "the image name the record gives names two or more files of the folder it is looked for in",
    "file_too_large": "a file the record names is larger than its kind of file may be (its declared size, before reading)",
    "out_of_memory": "converting the record took more memory than the job has (a file within the limits that still "
                     "costs that much: give the job more memory, or lower corpus.image_limits)",
}


def out_of_memory_detail(error: MemoryError) -> str:
    """What a row's MemoryError says (often nothing: the allocator's message is empty)."""
    return f"MemoryError{': ' + str(error) if str(error) else ''} (the job's memory, or its address-space limit)"
# Why an adapter or curation leaves a row out on purpose.
FILTER_REASONS = {
    "language": "not in the language the registry entry selects",
    "class": "a class the registry entry skips",
    "no_finding": "an image annotated as having no finding: nothing to ground",
    "crowd": "an image whose boxes are all crowd annotations, which the entry skips",
    "no_row": "a record that gives nothing to train on (no box, no text), counted rather than lost",
    "unannotated": "an image the release leaves without annotation (CTC annotates some frames only)",
    "no_positive_label": "a label-table row with no positive label: nothing to answer",
    "subset": "a record outside the part of the release the entry reads (another split)",
    "image_not_released": "a record whose image the release does not ship (MedTrinity-25M's sources outside its "
                          "accessible shards: the images come from their original datasets)",
    "duplicate": "an exact duplicate of a kept row",
    "decontamination": "matches an evaluation item",
}


class RowError(ValueError):
    """A record that cannot become a row; ``reason`` is a key of ROW_REASONS. ``path``: the file it
    looked for, where that is the problem (an image missing), for the registry's hint of where it is."""

    def __init__(self, reason: str, detail: str, *, path: str = ""):
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail, self.path = reason, detail, path


@dataclass(frozen=True)
class RowQuarantined:
    reason: str
    detail: str
    file: str = ""
    record: str = ""  # the record's position in the file (0-based data row, line, or key)
    local_id: str = ""
    path: str = ""  # the file the record looked for, where that is the problem (``RowError.path``)


@dataclass(frozen=True)
class RowFiltered:
    reason: str
    detail: str = ""
    rows: int = 1  # how many sample rows the record would have given


def is_outcome(value) -> bool:
    return type(value) is RowQuarantined or type(value) is RowFiltered
