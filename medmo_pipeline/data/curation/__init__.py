"""Curation: adapter rows -> validated, normalised, de-duplicated, decontaminated shards, plus a
quarantine table saying why each rejected row was rejected.

The modules, bottom up (each imports only those above it in this list):

- ``rules``: what a kept row must be, one row at a time (``check_row``, ``REASONS``, ``Rejected``,
  ``CurationLimits``, ``ImageChecker``, text normalisation).
- ``columns``: Arrow column helpers the batch checks and the keys share.
- ``keys``: the 64-bit id and content keys of kept rows, and the evaluation index.
- ``quarantine``: the quarantine table's writer, published only with its shards.
- ``batch``: the same rules applied to a whole batch at once (``check_batch``), deferring to
  ``check_row`` for every row it is not sure about.
- ``stream``: the streaming pass (``curate``): check, quarantine, decontaminate, de-duplicate, write.
- ``parts``: one large source curated in processes side by side and merged into one version.

The names other modules use are importable from this package.
"""

from medmo_pipeline.data.curation.batch import CheckedBatch, check_batch
from medmo_pipeline.data.curation.keys import build_eval_index
from medmo_pipeline.data.curation.quarantine import QUARANTINE_NAME, QuarantineWriter
from medmo_pipeline.data.curation.rules import (
    REASONS,
    CurationLimits,
    ImageChecker,
    Rejected,
    check_row,
    clean_text,
    normalise_question,
)
from medmo_pipeline.data.curation.stream import curate

__all__ = [
    "QUARANTINE_NAME", "REASONS", "CheckedBatch", "CurationLimits", "ImageChecker", "QuarantineWriter", "Rejected",
    "build_eval_index", "check_batch", "check_row", "clean_text", "curate", "normalise_question",
]
