"""The curated corpus: one shard directory per source, and an index that ties them together.

Layout (DESIGN.md): ``<corpus>/<source>/<data_version>/part-NNNNN.parquet`` + ``manifest.json``,
where a source's data version is its manifest hash. The corpus index
``<corpus>/index/<corpus_data_version>.json`` lists the sources of one build; its hash over the
sources' data versions is the ``corpus_shards`` data version that every checkpoint records.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

from medmo_pipeline.atomic import staged_dir, write_json_atomic
from medmo_pipeline.config import CorpusRecipe, stable_hash
from medmo_pipeline.data import shards


def build_synthetic_corpus(
    corpus: CorpusRecipe, root: Path, *, seed: int, log: Callable[[str], None] = print
) -> dict:
    """Generate and shard every synthetic source; returns the corpus index (see module doc)."""
    from medmo_pipeline.data import synthetic

    if corpus.kind != "synthetic" or corpus.synthetic is None:
        raise ValueError(f"corpus kind {corpus.kind!r} is not synthetic")
    spec = corpus.synthetic
    unknown = sorted((set(spec.train_rows) | set(spec.eval_rows)) - set(synthetic.SYNTHETIC_SOURCES))
    if unknown:
        raise ValueError(f"corpus.synthetic: unknown sources {unknown}; known: {synthetic.SYNTHETIC_SOURCES}")
    sources = {}
    for source in sorted(set(spec.train_rows) | set(spec.eval_rows)):
        counts = {"train": spec.train_rows.get(source, 0), "eval": spec.eval_rows.get(source, 0)}
        log(f"{source}: generating {counts['train']} train + {counts['eval']} eval rows")

        def rows(source=source, counts=counts):
            for split, n in counts.items():
                yield from synthetic.generate_rows(source, split, n, seed=seed, image_size=spec.image_size)

        revision = f"synthetic:seed={seed}:size={spec.image_size}:{counts['train']}+{counts['eval']}"
        sources[source] = write_source(rows(), root / source, source=source, revision=revision,
                                       shard_rows=corpus.shard_rows)
        log(f"{source}: {sources[source]['rows']} rows in {sources[source]['shards']} shards "
            f"(data version {sources[source]['data_version'][:12]})")
    return write_index(root, sources)


def write_source(rows, source_root: Path, *, source: str, revision: str, shard_rows: int) -> dict:
    """Shard one source into ``<source_root>/<manifest hash>``; reuse it if already there."""
    source_root.mkdir(parents=True, exist_ok=True)
    staging = source_root / ".staging"
    shutil.rmtree(staging, ignore_errors=True)
    manifest = shards.write_shards(rows, staging, shard_rows=shard_rows, source=source,
                                   source_revision=revision)
    version = shards.manifest_hash(manifest)
    final = source_root / version
    if final.exists() and not shards.verify_shards(final):
        shutil.rmtree(staging)  # identical content already published
    else:
        with staged_dir(final) as tmp:
            for item in staging.iterdir():
                item.rename(tmp / item.name)
        shutil.rmtree(staging, ignore_errors=True)
    return {
        "path": str(final),
        "data_version": version,
        "revision": revision,
        "rows": manifest["total_rows"],
        "splits": manifest.get("splits", {}),
        "shards": len(manifest["shards"]),
    }


def write_index(root: Path, sources: dict) -> dict:
    data_version = stable_hash({name: info["data_version"] for name, info in sources.items()}, length=64)
    index = {"data_version": data_version, "sources": sources}
    path = root / "index" / f"{data_version}.json"
    write_json_atomic(path, index)
    index["index_path"] = str(path)
    return index


def load_index(path: Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"corpus index {path} does not exist; materialize corpus_shards first")
    index = json.loads(path.read_text())
    index["index_path"] = str(path)
    return index


def lineage_view(index: dict) -> dict:
    """What a checkpoint records about its corpus: the data version per source with its revision."""
    return {
        "data_version": index["data_version"],
        "index_path": index["index_path"],
        "sources": {
            name: {"data_version": info["data_version"], "revision": info["revision"]}
            for name, info in index["sources"].items()
        },
    }
