"""One corpus source at a time: its cheap fingerprint, and curating it into shards.

A source is either synthetic (rows from the seeded generator) or a registry dataset read from a local
copy under the recipe's data root. ``corpus_shards`` is partitioned by source, so each partition
curates exactly one source; the fingerprint is what an observation of the source records, so a
changed source shows its partition as stale without reading the data.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

from medmo_pipeline.recipe_schema import CorpusRecipe, stable_hash

FINGERPRINT_HEAD_BYTES = 64 * 1024  # per record file: enough to notice an edit
# Image files, the millions of files of a mirror, are known by path, size and mtime alone: opening
# each one to hash its head read about 1 TB to observe MedTrinity's 20M unpacked images (and cost
# 10x a walk's time here, with the files in the page cache). The record files (CSV, JSON, Parquet:
# a few per source, what an edit usually changes) keep their head hashed.
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".dcm", ".dicom", ".tif", ".tiff", ".bmp", ".gif", ".webp",
                            ".jp2", ".nii"})


class UnknownSource(ValueError):
    pass


def data_root(corpus: CorpusRecipe) -> Path:
    """The registry data root, with ${VAR} expanded from the environment."""
    raw = os.path.expandvars(corpus.registry.data_root)
    if "$" in raw:
        raise UnknownSource(f"corpus.registry.data_root {corpus.registry.data_root!r}: an environment variable "
                            "in it is not set")
    return Path(raw).expanduser()


def registry_entry(corpus: CorpusRecipe, source: str):
    from medmo_pipeline.data.registry import load_registry

    return load_registry(*corpus._registry_path()).get(source)


def layout_version(corpus: CorpusRecipe, source: str) -> str:
    """The published layout version the recipe reads ``source`` in ('' = the registry default)."""
    return corpus.registry.versions.get(source, "") if corpus.registry else ""


def synthetic_revision(corpus: CorpusRecipe, source: str, seed: int) -> str:
    spec = corpus.synthetic
    return (f"synthetic:seed={seed}:size={spec.image_size}:"
            f"{spec.train_rows.get(source, 0)}+{spec.eval_rows.get(source, 0)}")


def _check_known(corpus: CorpusRecipe, source: str) -> None:
    if source not in corpus.source_names():
        raise UnknownSource(f"source {source!r} is not in the corpus recipe (sources: {corpus.source_names()})")


def fingerprint(corpus: CorpusRecipe, source: str, *, seed: int) -> dict:
    """A cheap version of a source's input, without reading it all.

    Synthetic: the generator's parameters and the hash of its code. Registry: every file's relative
    path, size and mtime plus a hash of its first bytes (an image's: none), the pinned revision if
    any, and the options its adapters read it with. Returns {"version", "revision", "files"}.
    """
    _check_known(corpus, source)
    if source in corpus.synthetic_sources():
        from medmo_pipeline.data import synthetic

        code = _tree_digest(Path(synthetic.__file__).parent, pattern="*.py")
        revision = synthetic_revision(corpus, source, seed)
        return {"version": stable_hash({"revision": revision, "code": code}, length=64),
                "revision": revision, "files": None}
    from medmo_pipeline.data.registry import resolve_source

    entry = registry_entry(corpus, source)
    version = layout_version(corpus, source)
    specs = entry.adapters_for(version)  # an unknown version is an error before anything is read
    directory = resolve_source(entry, data_root(corpus))
    digest, content, count = _files_digest(directory)
    # The published revision names the files by what they hold: a copy that did not keep mtimes
    # curates to the same data version; an mtime still makes the fingerprint say "look again".
    revision = entry.origin.revision or f"local:{content[:12]}"
    # How the files are read counts too: a registry update that changes an adapter's options (another
    # image folder, a split kept) curates other rows from the same files, so its partition is stale
    identity = {"revision": entry.origin.revision, "files": digest,
                "adapters": [spec.model_dump(mode="json") for spec in specs]}
    if version and version != entry.version:  # the default keeps the versions fingerprinted before
        identity["layout_version"] = version
    return {"version": stable_hash(identity, length=64), "revision": revision, "files": count}


def _files_digest(directory: Path) -> tuple[str, str, int]:
    """(digest of every file's path, size, mtime and first bytes (an image's: none, see
    ``IMAGE_SUFFIXES``); the same without the mtimes; the number of files)."""
    digest, content = hashlib.sha256(), hashlib.sha256()
    count = 0
    for path in files_in_path_order(directory):
        stat = path.stat()
        head = ""
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            with path.open("rb") as handle:
                head = hashlib.sha256(handle.read(FINGERPRINT_HEAD_BYTES)).hexdigest()
        name = os.fsencode(path.relative_to(directory))  # a name that is not UTF-8 keeps its own bytes
        digest.update(name + f"\0{stat.st_size}\0{stat.st_mtime_ns}\0{head}\n".encode())
        content.update(name + f"\0{stat.st_size}\0{head}\n".encode())
        count += 1
    return digest.hexdigest(), content.hexdigest(), count


def files_in_path_order(directory: Path) -> Iterator[Path]:
    """The regular files under ``directory`` (not symlinked files), in the order of their sorted
    paths, one directory listed at a time: sorting every path of an 18.5M-file mirror first would
    hold gigabytes. A folder's entries are sorted by name and a subfolder's files come where its
    name sorts, which is how paths compare part by part.

    A symlinked folder whose real location is inside ``directory`` is walked as the adapters' globs
    walk it (a mirror spread over folders), each real folder once, so a link back to an ancestor
    does not loop; one leading outside is not (the adapters refuse it)."""
    root = Path(directory).resolve()
    seen: set[tuple[int, int]] = set()

    def listing(folder: Path) -> Iterator[os.DirEntry]:
        """``folder``'s entries by name; none for a folder seen before or that cannot be looked at
        (a path deeper than the system can name: nothing in it can be opened by path either)."""
        try:
            info = folder.stat()
            if (info.st_dev, info.st_ino) in seen:
                return iter(())
            seen.add((info.st_dev, info.st_ino))
            with os.scandir(folder) as entries:
                return iter(sorted(entries, key=lambda entry: entry.name))
        except OSError as error:
            if error.errno != errno.ENAMETOOLONG:
                raise
            return iter(())

    # A stack of the folders being listed, not recursion: a tree thousands of folders deep raised
    # RecursionError, naming nothing
    stack = [listing(Path(directory))]
    while stack:
        entry = next(stack[-1], None)
        if entry is None:
            stack.pop()
        elif entry.is_dir(follow_symlinks=False) or entry.is_symlink() and _folder_inside(entry.path, root):
            stack.append(listing(Path(entry.path)))
        elif entry.is_file(follow_symlinks=False):
            yield Path(entry.path)


def _folder_inside(link: str, root: Path) -> bool:
    real = Path(os.path.realpath(link))
    return (real == root or root in real.parents) and real.is_dir()


def _tree_digest(directory: Path, *, pattern: str) -> str:
    digest = hashlib.sha256()
    for path in sorted(directory.glob(pattern)):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def source_rows(corpus: CorpusRecipe, source: str, *, seed: int) -> Iterator[dict]:
    """Every raw row of one source (synthetic: train then eval split)."""
    _check_known(corpus, source)
    if source in corpus.synthetic_sources():
        from medmo_pipeline.data import synthetic

        spec = corpus.synthetic
        for split, counts in (("train", spec.train_rows), ("eval", spec.eval_rows)):
            yield from synthetic.generate_rows(source, split, counts.get(source, 0), seed=seed,
                                               image_size=spec.image_size)
        return
    from medmo_pipeline.data.registry import iter_source_rows

    yield from iter_source_rows(registry_entry(corpus, source), data_root(corpus), layout_version(corpus, source))


def evaluation_index(corpus: CorpusRecipe, *, seed: int) -> tuple[set[str], list[str]]:
    """Image hashes and normalised questions of every evaluation item training rows must not match,
    and the names of the evaluation sets they come from.

    The synthetic eval split of every synthetic source, plus every benchmark of the evaluation
    registry whose local copy is present (``$MEDMO_HOME/benchmarks/<name>``), evaluated by this recipe
    or not: a training row that is a benchmark item is contamination whoever evaluates on it.
    """
    from medmo_pipeline.data import synthetic
    from medmo_pipeline.data.benchmarks.loading import benchmark_dir, read_benchmark
    from medmo_pipeline.data.benchmarks.registry import (
        BenchmarkUnavailable,
        load_registry,
        resolve_benchmark_dir,
    )
    from medmo_pipeline.data.curation import build_eval_index

    def rows():
        spec = corpus.synthetic
        for source in corpus.synthetic_sources():
            yield from synthetic.generate_rows(source, "eval", spec.eval_rows.get(source, 0), seed=seed,
                                               image_size=spec.image_size)
        for benchmark in present:
            yield from read_benchmark(benchmark, resolve_benchmark_dir(benchmark, benchmark_dir(benchmark)))

    present = []
    for benchmark in load_registry().benchmarks:
        if benchmark.origin.kind == "synthetic":
            continue
        try:
            resolve_benchmark_dir(benchmark, benchmark_dir(benchmark))
        except BenchmarkUnavailable:
            continue
        present.append(benchmark)
    names = [f"{s}:eval" for s in corpus.synthetic_sources()] + [b.name for b in present]
    return build_eval_index(rows()), names


def input_bytes(corpus: CorpusRecipe, source: str) -> int:
    """A source's input size: the files of its local copy (registry), or its rows' raw pixels (synthetic)."""
    if source in corpus.synthetic_sources():
        spec = corpus.synthetic
        rows = spec.train_rows.get(source, 0) + spec.eval_rows.get(source, 0)
        return rows * spec.image_size * spec.image_size * 3
    from medmo_pipeline.data.registry import resolve_source

    directory = resolve_source(registry_entry(corpus, source), data_root(corpus))
    return sum(path.stat().st_size for path in files_in_path_order(directory))  # the files the data version sees


def image_limits(corpus: CorpusRecipe):
    """The recipe's ``corpus.image_limits`` as the ImageLimits every image path checks."""
    from medmo_pipeline.data.image_limits import ImageLimits

    return ImageLimits(**corpus.image_limits.model_dump())


def curate_source(
    corpus: CorpusRecipe, source: str, root: Path, *, seed: int, log: Callable[[str], None] = print
) -> dict:
    """Curate one source into ``<root>/<source>/<manifest hash>/``; returns the curation report.

    Curation runs into a staging directory and is published under its manifest hash, so an
    identical re-run reuses what is there, a killed run resumes from its complete shards, and a
    reader never sees a half-written source. A source larger than ``corpus.split_above_bytes`` curates
    in ``corpus.curation_parts`` processes side by side (``curation.parts``). The
    quarantine table sits beside the shard directory as ``<manifest hash>.quarantine.parquet``.
    """
    from medmo_pipeline.atomic import staged_dir
    from medmo_pipeline.data import shards
    from medmo_pipeline.data.curation import CurationLimits, curate
    from medmo_pipeline.data.curation.parts import curate_in_parts, planned_parts
    from medmo_pipeline.data.image_limits import using_limits

    source_fingerprint = fingerprint(corpus, source, seed=seed)  # a missing source stops here, nothing written
    source_root = Path(root) / source
    source_root.mkdir(parents=True, exist_ok=True)
    # Not cleared first: after a kill, the writer keeps the staged shards that match and writes the rest.
    staging = source_root / ".staging"
    eval_index, eval_sets = evaluation_index(corpus, seed=seed)
    log(f"{source}: decontaminating against {len(eval_sets)} evaluation sets: {', '.join(eval_sets) or 'none'}")
    parts = planned_parts(corpus.curation_parts, corpus.split_above_bytes, lambda: input_bytes(corpus, source))
    limits = image_limits(corpus)
    try:
        if parts > 1:  # each part puts the limits in force in its own process
            report = curate_in_parts(functools.partial(source_rows, corpus, source, seed=seed), staging,
                                     source=source, parts=parts, shard_rows=corpus.shard_rows, limits=limits,
                                     eval_index=eval_index, revision=source_fingerprint["revision"], log=log)
        else:
            with using_limits(limits):  # the adapters' conversions (DICOM, 16-bit PNG, masks) are bounded too
                report = curate(
                    source_rows(corpus, source, seed=seed), staging, source=source,
                    eval_index=eval_index, shard_rows=corpus.shard_rows,
                    source_revision=source_fingerprint["revision"], limits=CurationLimits(image=limits),
                    progress=lambda c: log(f"{source}: {c['rows_in']} rows read, {c['rows_kept']} kept, "
                                           f"{c['quarantined']} quarantined"),
                    progress_every=100_000,
                )
    except Exception:
        # A source that cannot be read (its message names it) leaves nothing behind; a killed run
        # (a signal, not an exception) keeps its staged shards to resume from.
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(staging.with_name(f"{staging.name}.parts"), ignore_errors=True)
        for stale in source_root.glob(".staging.quarantine.parquet*"):
            stale.unlink(missing_ok=True)
        for stale in source_root.glob("..staging.quarantine.parquet.tmp-*"):
            stale.unlink(missing_ok=True)
        if not any(source_root.iterdir()):
            source_root.rmdir()
        raise
    final = source_root / report["data_version"]
    quarantine = Path(report["quarantine_path"])
    if final.exists() and not shards.verify_shards(final):
        shutil.rmtree(staging)  # identical content already published
    else:
        with staged_dir(final) as tmp:
            for item in staging.iterdir():
                item.rename(tmp / item.name)
        shutil.rmtree(staging, ignore_errors=True)
    published_quarantine = final.with_name(f"{final.name}.quarantine.parquet")
    if quarantine.exists():
        quarantine.replace(published_quarantine)
    manifest = report.pop("manifest")
    return {**report, "shard_dir": str(final), "quarantine_path": str(published_quarantine),
            "splits": manifest.get("splits", {}), "shards": len(manifest["shards"]),
            "revision": manifest.get("source_revision", ""), "fingerprint": source_fingerprint["version"],
            "decontaminated_against": eval_sets}
