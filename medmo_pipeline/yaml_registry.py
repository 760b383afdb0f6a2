"""What the three YAML registries share: recipes (``recipes/*.yaml``), the source registry
(``recipes/sources.yaml``) and the benchmark registry (``recipes/benchmarks.yaml``).

- strict models: an unknown key is an error, a loaded entry is frozen (:class:`Strict`)
- strict loading: a file that cannot be read or validated raises the registry's own error, whose
  message names the file, the entry (by its ``name``) and the dotted field (:func:`load_strict`)
- credentials: an entry needing them names its provider, the environment variables that must be set
  and how to get them (:class:`Credentials`, :func:`check_credentials`)
- "how to get it": the download command of a hub copy (:func:`hub_download_command`) and the check
  that a local copy is a readable directory (:func:`check_readable_dir`)

It sits below every registry (docs/architecture.md): it imports nothing of the pipeline but
:mod:`medmo_pipeline.safe_yaml`.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import UnionType
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from medmo_pipeline.safe_yaml import (
    YamlRefused,
    number_type,
    read_yaml,
    refuse_other_than_true_or_false,
    refuse_yes_or_no,
)

# Where the shipped recipes and registries live (a data folder inside the package).
SHIPPED_DIR = Path(__file__).parent / "recipes"
# A registry is a few thousand YAML nodes (the shipped sources: 2,847); one may hold, or its aliases
# expand it to, at most this many (see safe_yaml).
REGISTRY_MAX_NODES = 100_000


class Strict(BaseModel):
    # Unknown keys are errors (a typo must not silently fall back to a default), and so are NaN and
    # infinity for a number (YAML's .nan and .inf): no rate, weight or bound means either.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _no_yes_or_no_for_a_number(cls, data: Any) -> Any:
        """YAML reads yes/no/on/off/true/false as booleans, and pydantic takes one for a number (1
        or 0): ``max_steps: yes`` would have trained one step. A field of numbers refuses them, and a
        field of booleans takes nothing else (pydantic read ``trust_remote_code: 1`` as true)."""
        if isinstance(data, dict):
            for name, field in cls.model_fields.items():
                value = data.get(field.alias or name)
                refuse_yes_or_no(name, value, field.annotation)
                refuse_other_than_true_or_false(name, value, field.annotation)
                if isinstance(value, dict) and (numbers := _numbers_by_name(field.annotation)):  # {vqa: on} too
                    for key, item in value.items():
                        refuse_yes_or_no(f"{name}.{key}", item, numbers)
        return data


def _numbers_by_name(annotation: Any) -> Any:
    """The number type of a field's values when its type is (or may be) a mapping of names to
    numbers; None otherwise."""
    kinds = get_args(annotation) if get_origin(annotation) in (Union, UnionType) else (annotation,)
    return next((get_args(kind)[-1] for kind in kinds
                 if get_origin(kind) is dict and number_type(get_args(kind)[-1])), None)


class Credentials(Strict):
    provider: str
    env: list[str] = Field(min_length=1, description="environment variables that must be set")
    instructions: str


def load_strict(path: Path, model: type[BaseModel], error: type[Exception], *, what: str, entries: str,
                entry: str, max_nodes: int = REGISTRY_MAX_NODES) -> Any:
    """``path`` read with safe YAML and validated as ``model``; any problem raises ``error`` with a
    message naming the file, the entry (``entry`` plus its name, for items of the ``entries`` list) and
    the field. ``what`` names the file's kind in a read error ("the source registry")."""
    path = Path(path)
    try:
        data = read_yaml(path, max_nodes=max_nodes)
    except (OSError, YamlRefused) as problem:
        raise error(f"{path}: cannot read {what} ({problem})") from None
    try:
        return model.model_validate(data)
    except ValidationError as problem:
        raise error(f"{path}: " + "; ".join(describe_error(item, data, entries, entry)
                                            for item in problem.errors())) from None


def describe_error(item: dict, data: Any, entries: str, entry: str) -> str:
    """One pydantic error as '<entry> <name>, field <dotted path>: message'."""
    location = list(item["loc"])
    where = ""
    if len(location) >= 2 and location[0] == entries and isinstance(location[1], int):
        index = location[1]
        try:
            name = data[entries][index].get("name", f"#{index}")
        except (KeyError, IndexError, TypeError, AttributeError):
            name = f"#{index}"
        where, location = f"{entry} {name!r}, ", location[2:]
    field = ".".join(str(part) for part in location) or "(entry)"
    return f"{where}field {field}: {item['msg']}"


def check_unique(names: list[str], what: str) -> None:
    """Raise ValueError listing the names given to more than one entry ("duplicate dataset names [...]")."""
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"duplicate {what} names {duplicates}")


def entry_named(entries: list, name: str, what: str):
    """The entry called ``name``; a KeyError listing the known names otherwise."""
    for entry in entries:
        if entry.name == name:
            return entry
    raise KeyError(f"no {what} {name!r} in the registry; known: {sorted(e.name for e in entries)}")


def check_credentials(what: str, credentials: Credentials | None, unavailable: type[Exception]) -> None:
    """Raise ``unavailable`` naming ``what`` (e.g. "dataset 'mimic_cxr'") and the first unset variable."""
    for variable in credentials.env if credentials else []:
        if not os.environ.get(variable):
            raise unavailable(
                f"{what} needs {credentials.provider} credentials: environment variable "
                f"{variable} is not set. {credentials.instructions}")


def hub_download_command(hub_id: str, revision: str | None, local_dir: str | Path) -> str:
    """The command that fetches a hub data set's pinned revision into ``local_dir``."""
    return (f"huggingface-cli download {hub_id} --repo-type dataset --revision {revision or '<pin a revision>'} "
            f"--local-dir {local_dir}")


def check_readable_dir(what: str, directory: Path, how_to_get: str, unavailable: type[Exception], *,
                       elsewhere: str) -> Path:
    """``directory`` if it exists and this user can read it; else ``unavailable`` naming ``what``
    and what to do (``how_to_get``; ``elsewhere``: the other way out of a permission problem)."""
    if not directory.is_dir():
        raise unavailable(f"{what} is not at {directory} (missing). Get it with: {how_to_get}")
    if not os.access(directory, os.R_OK | os.X_OK):
        raise unavailable(
            f"{what} at {directory} is not readable by this user; fix its permissions "
            f"(chmod -R u+rX {directory}) or {elsewhere}")
    return directory
