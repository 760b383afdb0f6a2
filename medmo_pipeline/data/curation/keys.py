"""The keys kept rows are compared by: 64-bit keys of ids and contents (duplicates), and the
evaluation index (decontamination).

A 64-bit key collides with probability ~n^2 / 2^65 (about 1e-5 at 26M rows): an accepted risk of
dropping one row too many, for sets of 8 bytes per key (``KeySet``; a CPython set of ints takes
about 80: 3 GB for MedTrinity's 18.5M rows' two sets, about 390 MB now). The key is Python's own
string hash (SipHash-1-3 under a key drawn at random per process): as good a spread as a
cryptographic hash cut to 64 bits, not predictable from outside the process, and computed in C
without an object per hasher. Keys are therefore compared only within one process, which is where
a curation's sets live (``curate``, and ``parts.merge_parts`` over its parts' shards).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from medmo_pipeline.data.characters import WHITESPACE_RUN
from medmo_pipeline.data.curation.columns import RECORD, UNIT, as_array, regroup
from medmo_pipeline.data.curation.rules import normalise_question, without_invisible


def build_eval_index(rows: Iterable[dict], *, question_tasks: Iterable[str] = ("text_qa", "instruction")) -> set[str]:
    """The decontamination index of evaluation rows: every image sha256, plus the normalised
    question of text items (rows without images, of tasks in ``question_tasks``).

    Questions of image items are left out on purpose, whatever their task: they are templates
    ("Describe the image.", "Write only the impression.") that every training row of the same kind
    shares; the image identifies the item.
    """
    keys, wanted = set(), set(question_tasks)
    for row in rows:
        images = row.get("images") or []
        keys.update(image["sha256"] for image in images if image.get("sha256"))
        if row.get("task") in wanted and row.get("messages") and not images:
            question = normalise_question(row["messages"][0]["content"])
            if question:
                keys.add(question)
    return keys


class BatchKeys:
    """What the decisions need from a checked batch's table, taken out of Arrow at once: ids, their
    64-bit keys and the content keys, and (for decontamination) splits, image hashes, questions.

    The content key hashes the split, the image hashes, every turn's text, the answer and the
    choices (one question over other options is another item), joined, casefolded and without
    invisible characters, whitespace runs as one space: exact duplicates up to case and spacing, from
    the normalised rows whichever path checked them.
    """

    def __init__(self, table: pa.Table, *, with_contamination: bool):
        self.ids = table.column("id").to_pylist()
        images, messages = (as_array(table.column(name)) for name in ("images", "messages"))
        hashes = regroup(images, pc.struct_field(images.flatten(), "sha256"))
        contents = regroup(messages, pc.struct_field(messages.flatten(), "content"))
        texts = pc.binary_join_element_wise(
            as_array(table.column("split")), pc.binary_join(hashes, UNIT), pc.binary_join(contents, UNIT),
            as_array(table.column("answer")), pc.binary_join(as_array(table.column("choices")), UNIT),
            RECORD)
        # Whitespace runs count as one space: a copy with CRLF line ends or a doubled space is the
        # same item (edges are stripped already). Arrow settles ASCII text; _content_text the rest.
        texts = pc.replace_substring_regex(texts, _ASCII_RUNS, " ").to_pylist()
        self.id_keys = keys64(self.ids)
        self.content_keys = keys64([_content_text(text) for text in texts])
        if with_contamination:
            self.splits = table.column("split").to_pylist()
            self.hashes = hashes.to_pylist()
            self.questions = pc.list_element(contents, 0).to_pylist() if len(contents) else []


class KeySet:
    """A set of 64-bit keys as sorted numpy runs: 8 bytes a key, where a CPython set of ints takes
    about 80. A batch's keys are looked up at once (``contains``) and added at once (``add``).

    Runs merge like a binary counter (a run is merged into the one before it while that one is no
    larger), so each key is merged about log2(keys / batch) times and there are that many runs to
    search; the largest merge briefly holds about twice the largest run."""

    def __init__(self) -> None:
        self.runs: list[np.ndarray] = []

    def __len__(self) -> int:
        return sum(len(run) for run in self.runs)

    def contains(self, keys: Iterable[int] | np.ndarray) -> np.ndarray:
        """Whether each of ``keys`` is in the set (a bool array, in their order)."""
        keys = np.asarray(keys, dtype=np.int64)
        found = np.zeros(len(keys), dtype=bool)
        for run in self.runs:
            at = np.minimum(np.searchsorted(run, keys), len(run) - 1)
            found |= run[at] == keys
        return found

    def add(self, keys: Iterable[int] | np.ndarray, *, new: bool = False) -> None:
        """Add ``keys`` (any order; repeats and keys already in the set allowed). ``new``: the
        caller knows them sorted, unique and none in the set yet (it has just looked them up)."""
        run = np.asarray(keys, dtype=np.int64)
        if not new:
            run = np.unique(run)
            run = run[~self.contains(run)]
        if not len(run):
            return
        self.runs.append(run)
        while len(self.runs) > 1 and len(self.runs[-2]) <= len(self.runs[-1]):
            newer = self.runs.pop()
            merged = np.concatenate([self.runs.pop(), newer])  # disjoint runs: no key twice
            del newer
            merged.sort()
            self.runs.append(merged)


# A run of ASCII whitespace but a lone space (which needs no change: a pattern matching every space
# costs eight times as much)
_ASCII_RUNS = "[\t\n\r][\t\n\r ]*| [\t\n\r ]+"


def _content_text(text: str) -> str:
    """A content key's text: casefolded, without invisible characters, whitespace runs as one space
    (in ASCII text, Arrow has done that already)."""
    return text.casefold() if text.isascii() else WHITESPACE_RUN.sub(" ", without_invisible(text)).casefold()


def keys64(texts: list[str]) -> list[int]:
    """The 64-bit key of each text (see the module doc), for the sets of ids and contents kept."""
    return list(map(hash, texts))


def contamination(hashes: list[str], question: str, eval_index: set[str] | frozenset[str]) -> str:
    """'image' or 'question' when the row matches an evaluation item, else ''."""
    if any(h in eval_index for h in hashes):
        return "image"
    if normalise_question(question) in eval_index:
        return "question"
    return ""

