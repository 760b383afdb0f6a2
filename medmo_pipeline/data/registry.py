"""The source registry (``recipes/sources.yaml``): every dataset of the MedMO corpus, validated.

Each entry says what a dataset is for (roles, stages, tasks), where it comes from (hub id + pinned
revision, or a local download with instructions), its licence and credentials, and which adapter
family reads it with which options (checked against that adapter's ``Options``).

Each entry also says where its file layout was verified (``layout_source``: the dataset card or
official repository, and the release). Where a dataset was published in several layouts
(PMC-VQA v1/v2, MIMIC-CXR DICOM/JPG, SLAKE's languages), ``adapters`` reads the current public
release, named by ``version``, and ``other_versions`` the others; the corpus recipe picks one with
``corpus.registry.versions``.

``resolve_source`` turns an entry into its local directory, or raises ``SourceUnavailable`` naming
the dataset and what to do; ``iter_source_rows`` reads it into sample-contract rows and the
outcomes of the records that give none.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from medmo_pipeline.data.adapters import ADAPTERS, adapter
from medmo_pipeline.data.adapters.records import SourceLayoutError
from medmo_pipeline.data.outcomes import RowQuarantined
from medmo_pipeline.safe_paths import UnsafePathError, safe_join
from medmo_pipeline.schema.rows import TASKS_WITH_IMAGES, TaskName
from medmo_pipeline.yaml_registry import (
    SHIPPED_DIR,
    Credentials,
    check_credentials,
    check_readable_dir,
    check_unique,
    entry_named,
    hub_download_command,
    load_strict,
)
from medmo_pipeline.yaml_registry import Strict as _Strict

REGISTRY_PATH = SHIPPED_DIR / "sources.yaml"
Role = Literal["caption", "report", "vqa", "text_qa", "grounding"]
Stage = Literal["stage1", "stage2", "stage3", "rl"]


class RegistryError(ValueError):
    """A registry file that cannot be used; the message names the dataset and the field."""


class SourceUnavailable(RuntimeError):
    """A dataset that cannot be read now; the message names it and says what to do."""


class Origin(_Strict):
    kind: Literal["hub", "local"]
    hub_id: str | None = None
    revision: str | None = Field(None, description="pinned hub commit; null = not pinned yet")
    local_dir: str = Field(description="directory under the data root holding the dataset")
    instructions: str = ""

    @model_validator(mode="after")
    def _hub_needs_id(self) -> Origin:
        if self.kind == "hub" and not self.hub_id:
            raise ValueError("origin kind 'hub' needs hub_id")
        if self.kind == "local" and not self.instructions:
            raise ValueError("origin kind 'local' needs instructions (how to obtain the data)")
        return self

    def how_to_get(self) -> str:
        if self.kind == "hub":
            command = hub_download_command(self.hub_id, self.revision, f"<data root>/{self.local_dir}")
            return f"{command}{'; ' + self.instructions if self.instructions else ''}"
        return self.instructions


class AdapterSpec(_Strict):
    family: str
    options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _known_family_and_options(self) -> AdapterSpec:
        if self.family not in ADAPTERS:
            raise ValueError(f"unknown adapter family {self.family!r}; known: {sorted(ADAPTERS)}")
        adapter(self.family).Options.model_validate(self.options)  # errors name the option
        return self


class LayoutVersion(_Strict):
    """Another published layout of a dataset, read by its own adapters."""

    layout_source: str = Field(min_length=1)
    adapters: list[AdapterSpec] = Field(min_length=1)
    instructions: str = ""


class SourceEntry(_Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    title: str
    roles: list[Role] = Field(min_length=1)
    stages: list[Stage]
    modality: str
    tasks: list[TaskName] = Field(min_length=1)
    origin: Origin
    licence: str
    credentials_required: bool
    credentials: Credentials | None = None
    adapters: list[AdapterSpec] = Field(min_length=1)
    layout_source: str = Field(min_length=1, description="where the layout was verified: card URL or "
                                                         "repository/path, and the release")
    version: str = Field("", description="the published layout ``adapters`` reads (the current release)")
    other_versions: dict[str, LayoutVersion] = Field(default_factory=dict)
    part_of: str | None = Field(None, description="the dataset this one is only used through")

    @model_validator(mode="after")
    def _consistent(self) -> SourceEntry:
        if self.credentials_required != (self.credentials is not None):
            raise ValueError("credentials_required and credentials must agree (say which credentials)")
        if self.part_of is None and not self.stages:
            raise ValueError("a dataset trained on needs at least one stage")
        if self.part_of is not None and self.stages:
            raise ValueError(f"a dataset used only through {self.part_of!r} has no stages of its own")
        if self.other_versions and not self.version:
            raise ValueError("a dataset with other_versions names its default layout in version")
        return self

    def versions(self) -> list[str]:
        return [self.version, *self.other_versions] if self.version else []

    def adapters_for(self, version: str | None = None) -> list[AdapterSpec]:
        """The adapters reading layout ``version`` (None or '': the default, current release)."""
        if not version or version == self.version:
            return list(self.adapters)
        if version not in self.other_versions:
            raise SourceUnavailable(
                f"dataset {self.name!r} has no layout version {version!r}; known: {self.versions() or ['(one)']}. "
                f"Fix corpus.registry.versions.{self.name} in the recipe, or remove it to read {self.version or 'the default'}")
        return list(self.other_versions[version].adapters)

    def layout_of(self, version: str | None = None) -> tuple[str, str]:
        """(where layout ``version`` was verified, how to get it), for messages about that layout."""
        if not version or version == self.version:
            return self.layout_source, self.origin.how_to_get()
        other = self.other_versions[version]
        return other.layout_source, "; ".join(filter(None, [self.origin.how_to_get(), other.instructions]))


class SourceRegistry(_Strict):
    version: int
    datasets: list[SourceEntry]

    @model_validator(mode="after")
    def _unique_and_linked(self) -> SourceRegistry:
        names = [entry.name for entry in self.datasets]
        check_unique(names, "dataset")
        dangling = sorted({e.part_of for e in self.datasets if e.part_of and e.part_of not in names})
        if dangling:
            raise ValueError(f"part_of names unknown datasets {dangling}")
        return self

    def get(self, name: str) -> SourceEntry:
        return entry_named(self.datasets, name, "dataset")

    def trained(self) -> list[SourceEntry]:
        """Datasets trained on directly (the corpus partitions)."""
        return [entry for entry in self.datasets if entry.part_of is None]

    def for_stage(self, stage: str) -> list[SourceEntry]:
        return [entry for entry in self.datasets if stage in entry.stages]


def load_registry(path: Path = REGISTRY_PATH) -> SourceRegistry:
    """Load and validate a registry file; errors name the file, the dataset and the field."""
    return load_strict(path, SourceRegistry, RegistryError, what="the source registry", entries="datasets",
                       entry="dataset")


def resolve_source(entry: SourceEntry, root: Path) -> Path:
    """The dataset's local directory under ``root``, checked readable, with its credentials set.

    Raises ``SourceUnavailable`` naming the dataset and saying what to do; never returns a path that
    is missing or unreadable.
    """
    check_credentials(f"dataset {entry.name!r}", entry.credentials, SourceUnavailable)
    try:
        path = safe_join(Path(root), entry.origin.local_dir)
    except UnsafePathError as error:
        raise SourceUnavailable(f"dataset {entry.name!r}: origin.local_dir is unsafe ({error})") from None
    return check_readable_dir(f"dataset {entry.name!r}", path, entry.origin.how_to_get(), SourceUnavailable,
                              elsewhere="point the data root elsewhere")


def iter_source_rows(entry: SourceEntry, root: Path, version: str | None = None) -> Iterator:
    """Every adapter's rows for ``entry`` (layout ``version``, default the current release), stamped
    with the source name, licence and a ``source:local_id`` id (ids of a second adapter are prefixed
    with its family to stay unique), and the outcome of each record that gives no row.

    A problem of the whole source (a file of the layout missing, a path option leaving the root)
    raises ``SourceUnavailable`` naming the dataset and how to fix it.
    """
    specs = entry.adapters_for(version)
    path = resolve_source(entry, root)
    layout_source, how_to_get = entry.layout_of(version)
    chosen = version or entry.version
    others = [name for name in entry.versions() if name != chosen]
    for position, spec in enumerate(specs):
        prefix = "" if position == 0 else f"{spec.family}/"
        try:
            read, images_found, first_missing = 0, False, ""
            for row in adapter(spec.family).iter_outcomes(path, spec.options):
                if type(row) is dict:
                    row["id"] = f"{entry.name}:{prefix}{row['id']}"
                    row["source"], row["license"] = entry.name, entry.licence
                if not images_found and _image_missing(row):
                    first_missing = first_missing or _missing_path(row)
                else:
                    images_found = True
                read += 1
                yield row
            if not read:
                raise SourceLayoutError(f"its {spec.family} reader found no records (options {spec.options})")
            if not images_found:  # every record's image is missing: not there, or another layout's files
                raise SourceLayoutError(f"none of its {read} records found its image file"
                                        f"{image_found_elsewhere(path, first_missing)}")
        except SourceUnavailable:
            raise
        except Exception as error:  # noqa: BLE001 - adapters quarantine row problems; what escapes is the source's
            raise SourceUnavailable(
                f"dataset {entry.name!r} at {path} does not have the layout its registry entry reads "
                f"({layout_source}{', version ' + chosen if chosen else ''}): "
                f"{type(error).__name__}: {error}. Fix: get it with {how_to_get.rstrip('.')}"
                f"{'; or pick another layout with corpus.registry.versions.' + entry.name + ' (' + ', '.join(others) + ')' if others else ''}"
            ) from None


FIND_IMAGE_ENTRIES = 200_000  # directory entries looked at to find where a missing image sits


def _missing_path(outcome) -> str:
    """The path (under the dataset's folder) a row looked for its first image at, '' if none; for a
    box list's image quarantined as missing (NIH's, DeepLesion's, a YOLO image), the one it carries."""
    if type(outcome) is RowQuarantined:
        return outcome.path if outcome.reason == "image_missing" else ""
    images = outcome.get("images") if type(outcome) is dict else None
    return str(images[0].get("path") or "") if images and type(images[0]) is dict else ""


def image_found_elsewhere(root: Path, relative: str) -> str:
    """A hint for a source none of whose images were found: where under ``root`` a file of the first
    missing image's name sits (any extension, in the folder most like the one looked in), when one
    does. An archive unzipped into a folder of its own name (``PNG/PNG/...``), or a release that names
    its files otherwise, costs every row with the same "not there", and where the files are says
    which. The walk stops after ``FIND_IMAGE_ENTRIES`` entries and does not follow links."""
    if not relative:
        return ""
    wanted = Path(relative)
    stem, parents = wanted.stem.casefold(), [part.casefold() for part in reversed(wanted.parent.parts)]
    best, best_score, seen = None, -1, 0
    for folder, folders, files in os.walk(root):
        folders.sort()
        seen += len(folders) + len(files)
        for name in sorted(files):
            if Path(name).stem.casefold() != stem:
                continue
            found = (Path(folder) / name).relative_to(root)
            score = 0  # the folders it shares with the path looked for, from the file up
            for mine, theirs in zip(reversed(found.parent.parts), parents):
                if mine.casefold() != theirs:
                    break
                score += 1
            if score > best_score:
                best, best_score = found.as_posix(), score
        if best_score == len(parents) or seen > FIND_IMAGE_ENTRIES:
            break
    if best is None:
        return f"; the first looked for: {relative}"
    return (f"; the first, {relative}, is not there, but {best} is: the images sit elsewhere or under other "
            "names than the entry reads (an archive unzipped into a folder of its own name?): move them, or "
            "fix the adapter's image_dir / image_extension")


def _image_missing(outcome) -> bool:
    """Whether an adapter's outcome found no image where it needs one: a row whose image files are
    not there (no bytes, and no decoding error), a row of an image task without images, or a record
    quarantined for that."""
    if type(outcome) is RowQuarantined:
        return outcome.reason == "image_missing"
    if type(outcome) is not dict:
        return False
    images = outcome.get("images") or []
    if not images:
        return outcome.get("task") in TASKS_WITH_IMAGES
    return all(type(image) is dict and image.get("bytes") is None and not image.get("error") for image in images)

