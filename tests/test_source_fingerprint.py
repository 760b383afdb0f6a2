"""What a source's data version (``sources.fingerprint``) sees: its files and how they are read.
Image files, the millions of a mirror, by path, size and mtime; record files by their first bytes
too; and the options of the adapters that read them."""

from __future__ import annotations

import os

import yaml
from fixtures_formats import build_fixture

from medmo_pipeline.config import CorpusRecipe
from medmo_pipeline.data.registry import load_registry
from medmo_pipeline.data.sources import _files_digest, fingerprint
from medmo_pipeline.recipe_schema import RECIPES_DIR


def test_the_data_version_knows_images_by_size_and_mtime_and_record_files_by_their_bytes_too(tmp_path):
    """Images are the millions of files of a mirror: not opened to be fingerprinted (an edit still
    changes their mtime); a record file's first bytes are hashed as well."""
    image, table = tmp_path / "a.PNG", tmp_path / "labels.csv"
    image.write_bytes(b"1234")
    table.write_bytes(b"id,label\n1,a\n")
    before = _files_digest(tmp_path)
    for path, same_size in ((image, b"5678"), (table, b"id,label\n1,b\n")):
        times = path.stat().st_atime_ns, path.stat().st_mtime_ns
        path.write_bytes(same_size)
        os.utime(path, ns=times)  # a copy that kept the mtime
    after = _files_digest(tmp_path)
    assert after[2] == before[2] == 2 and after[1] != before[1]  # the table's new bytes are seen
    table.write_bytes(b"id,label\n1,a\n")
    os.utime(table, ns=(table.stat().st_atime_ns, times[1]))
    assert _files_digest(tmp_path) == before  # the image's own bytes are not read


def test_a_registry_entry_read_with_other_options_is_another_data_version(tmp_path, monkeypatch):
    """The same files read with another adapter option curate other rows: the source's data version
    moves with the registry entry, so its curated partition shows as stale."""
    entry = load_registry().get("tcga")
    build_fixture(entry.adapters[0].family, tmp_path / "data" / entry.origin.local_dir, entry.adapters[0].options)
    packaged = yaml.safe_load((RECIPES_DIR / "sources.yaml").read_text())

    def version(modality: str) -> str:
        registry = {**packaged, "datasets": [
            {**item, "adapters": [{**spec, "options": {**spec["options"], "modality": modality}}
                                  for spec in item["adapters"]]} if item["name"] == "tcga" else item
            for item in packaged["datasets"]]}
        path = tmp_path / f"sources-{modality}.yaml"
        path.write_text(yaml.safe_dump(registry))
        corpus = CorpusRecipe(kind="registry", registry={"data_root": str(tmp_path / "data"), "sources": ["tcga"],
                                                         "registry": str(path)})
        return fingerprint(corpus, "tcga", seed=0)["version"]

    assert version("pathology") == version("pathology") != version("microscopy")
