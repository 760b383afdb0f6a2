"""Recipes and checkpoints refused with an error that names the file (and, for a recipe, the field's
dotted path) whatever the file system or the file holds: names too long for it, directories,
devices, FIFOs, links out of a checkpoint, safetensors headers the library would choke on. A secret
pasted into a recipe never appears in the error, even where YAML quotes the line around it."""

from __future__ import annotations

import json
import os
import re
import struct
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml
from guards import alarm, cpu_seconds_limit

from medmo_pipeline.config import RecipeError, load_recipe
from medmo_pipeline.model.checkpoint import parent_reference, weights_version
from medmo_pipeline.model.loading import (
    CorruptCheckpointError,
    check_json_files,
    check_safetensors_headers,
    check_weight_index,
)
from medmo_pipeline.recipe_schema import RECIPES_DIR
from medmo_pipeline.safe_yaml import YamlRefused, read_yaml
from tests.conftest import embedded_recipe_data, write_recipe

TOO_LONG = 300  # characters: more than a file name may hold (255 on Linux)


@contextmanager
def _memory_grows_at_most(extra: int):
    """Fail the block with MemoryError, not the machine, should it read without end (/dev/zero)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    used = int(re.search(r"VmSize:\s+(\d+) kB", Path("/proc/self/status").read_text()).group(1)) * 1024
    limit = used + extra if hard == resource.RLIM_INFINITY else min(used + extra, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def _refused(path) -> str:
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    return str(info.value)


# ---- names the file system cannot take ---------------------------------------------------------------


def test_a_deepspeed_name_too_long_for_the_file_system_names_the_field(tmp_path):
    data = embedded_recipe_data()
    stage = next(iter(data["stages"]))
    data["stages"][stage]["optim"]["deepspeed"] = "z" * TOO_LONG + ".json"
    path = write_recipe(tmp_path / "recipe.yaml", data)
    message = _refused(path)
    assert str(path) in message
    assert re.search(rf"stages\.{stage}\.optim\.deepspeed: DeepSpeed config 'z+\.json' is not in "
                     r"recipes/deepspeed/: it cannot be read \(File name too long\)", message), message


@pytest.mark.parametrize("name", ["q" * TOO_LONG + ".yaml", "q" * TOO_LONG])
def test_a_recipe_name_too_long_for_the_file_system_is_a_recipe_error(name):
    message = _refused(name)
    assert "q" * TOO_LONG in message
    assert "File name too long" in message or "shipped recipes" in message


def test_a_directory_named_like_a_recipe_is_refused_naming_it(tmp_path):
    (tmp_path / "dir.yaml").mkdir()
    assert f"recipe file {tmp_path / 'dir.yaml'} is not a regular file" in _refused(tmp_path / "dir.yaml")


# ---- the registry a recipe names -----------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "says"), [
    ("missing", "No such file or directory"), ("directory", "{value} is not a regular file"),
    ("too long", "File name too long"),
])
def test_an_unreadable_registry_names_its_field_and_path(tmp_path, kind, says):
    value = {"missing": str(tmp_path / "no-such-registry.yaml"), "directory": str(tmp_path),
             "too long": "r" * TOO_LONG + ".yaml"}[kind]
    data = yaml.safe_load((RECIPES_DIR / "paper.yaml").read_text())
    assert data["corpus"]["registry"]["sources"] is None  # the registry is read for its dataset names
    data["corpus"]["registry"]["registry"] = value
    message = _refused(write_recipe(tmp_path / "recipe.yaml", data))
    line = next(line for line in message.splitlines() if "corpus.registry.registry" in line)
    assert f"corpus.registry.registry: registry {value}: cannot read its dataset names ({says.format(value=value)}" in line
    assert "(top level)" not in message
    assert not re.search(r"directory: \d+\)", message)  # a file descriptor, not a file


def test_read_yaml_names_a_directory_by_its_path_not_a_descriptor(tmp_path):
    with pytest.raises(OSError, match=f"] {tmp_path} is not a regular file"):
        read_yaml(tmp_path, max_nodes=10)


# ---- secrets in YAML errors ----------------------------------------------------------------------------

HF_TOKEN = "hf_" + "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"
AWS_KEY = "AKIA" + "QWERTYUIOPASDFGH"
PASSWORD = "correct-" + "horse-battery-staple"  # no pattern knows it: only leaving the line out hides it


def _embedded_with(line: str) -> str:
    text = (RECIPES_DIR / "embedded.yaml").read_text()
    assert "  experiment: medmo-embedded\n" in text
    return text.replace("  experiment: medmo-embedded\n", f"  experiment: medmo-embedded\n{line}\n", 1)


def _quotes(secret: str, message: str, run: int = 8) -> bool:
    """Whether ``message`` holds ``run`` characters of ``secret`` in a row (an excerpt cut mid-secret)."""
    return any(secret[i:i + run] in message for i in range(len(secret) - run + 1))


@pytest.mark.parametrize(("line", "secret", "says"), [
    (f"  hub_token: {HF_TOKEN}: x", HF_TOKEN, "mapping values are not allowed here"),
    (f"\t{HF_TOKEN}", HF_TOKEN, "found character '\\t' that cannot start any token"),
    (f"\thub_token: {HF_TOKEN}", HF_TOKEN, "cannot start any token"),
    (f"  aws_access_key_id: {AWS_KEY}: x", AWS_KEY, "mapping values are not allowed here"),
    (f"  password: {PASSWORD}: x", PASSWORD, "mapping values are not allowed here"),
])
def test_a_yaml_syntax_error_names_the_line_not_the_secret_on_it(tmp_path, line, secret, says):
    path = tmp_path / "recipe.yaml"
    path.write_text(_embedded_with(line))
    message = _refused(path)
    assert message.startswith(f"{path}: not valid YAML: ") and says in message
    assert re.search(r"\(line \d+, column \d+\)", message), message
    assert not _quotes(secret, message), message


def test_a_secret_stated_twice_as_a_key_is_masked(tmp_path):
    data_text = (RECIPES_DIR / "embedded.yaml").read_text().replace(
        "      logging_steps: 25\n", f"      logging_steps: 25\n      trainer_args: {{{HF_TOKEN}: 1, {HF_TOKEN}: 2}}\n", 1)
    path = tmp_path / "recipe.yaml"
    path.write_text(data_text)
    message = _refused(path)
    assert re.search(r"line \d+ states '<secret>' again", message), message
    assert not _quotes(HF_TOKEN, message)


def test_every_yaml_refusal_masks_a_secret(tmp_path):
    """The registries and the adapters read YAML through ``read_yaml`` too: the mask is on the error."""
    path = tmp_path / "registry.yaml"
    path.write_text(f"datasets: [*{AWS_KEY}]\n")  # an alias never defined, named in the error
    with pytest.raises(YamlRefused) as info:
        read_yaml(path, max_nodes=100)
    assert "found undefined alias '<secret>'" in str(info.value) and AWS_KEY not in str(info.value)


# ---- safetensors headers -------------------------------------------------------------------------------


def _write_safetensors(directory: Path, header: dict | bytes, data: bytes = b"") -> Path:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    path = directory / "model.safetensors"
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)
    return path


SOUND = {"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}


@pytest.mark.parametrize(("header", "data", "says"), [
    ({"w": {"dtype": ["F32"], "shape": [1], "data_offsets": [0, 4]}}, bytes(4), "tensor 'w': unknown dtype"),
    ({"w": {"dtype": {"F32": 1}, "shape": [1], "data_offsets": [0, 4]}}, bytes(4), "tensor 'w': unknown dtype"),
    ({"__metadata__": {"format": 1}, **SOUND}, bytes(4), "__metadata__ is not an object of text values"),
    ({"__metadata__": ["pt"], **SOUND}, bytes(4), "__metadata__ is not an object of text values"),
    ({"__metadata__": "pt", **SOUND}, bytes(4), "__metadata__ is not an object of text values"),
    ({"w": {"dtype": "F32", "shape": [0, 2**64], "data_offsets": [0, 0]}}, b"",
     r"tensor 'w': shape \[0, 18446744073709551616\] is not a list of sizes from 0 to 2\*\*63 - 1"),
    ({"w": {"dtype": "F32", "shape": [0, 2**63], "data_offsets": [0, 0]}}, b"", "tensor 'w': shape"),
    ({"w": {"dtype": "F32", "shape": [True], "data_offsets": [0, 4]}}, bytes(4), "tensor 'w': shape"),
    ({"w": {"dtype": "F4", "shape": [3], "data_offsets": [0, 2]}}, bytes(2),
     "tensor 'w': F4 \\[3\\] takes 12 bits, not a whole number of bytes"),
    (b'{"w":{"dtype":"U8","shape":[' + b",".join([b"2"] * 15000) + b'],"data_offsets":[0,0]}}', b"",
     "tensor 'w': shape has 15000 dimensions, more than the 16"),
])
def test_a_safetensors_header_the_library_would_choke_on_is_refused_naming_file_and_tensor(
        tmp_path, header, data, says):
    path = _write_safetensors(tmp_path, header, data)
    with pytest.raises(CorruptCheckpointError) as info:
        check_safetensors_headers(tmp_path)
    assert str(info.value).startswith(f"{path}: corrupt safetensors header: ")
    assert re.search(says, str(info.value)), str(info.value)
    assert len(str(info.value)) < 1000  # a shape of thousands of sizes is not quoted whole


def test_a_safetensors_header_of_many_large_dimensions_is_refused_in_linear_time(tmp_path):
    """The product of 80,000 dimensions of 2**60 took 10 s (quadratic); the count is bounded first."""
    header = b'{"w":{"dtype":"U8","shape":[' + b",".join([str(2**60).encode()] * 80_000) + b'],"data_offsets":[0,0]}}'
    _write_safetensors(tmp_path, header)
    with cpu_seconds_limit(3), pytest.raises(CorruptCheckpointError, match="shape has 80000 dimensions"):
        check_safetensors_headers(tmp_path)


def test_a_sound_header_of_five_dimensions_and_text_metadata_passes(tmp_path):
    from safetensors import safe_open

    _write_safetensors(tmp_path, {"__metadata__": {"format": "pt"},
                                  "k": {"dtype": "BF16", "shape": [2, 3, 1, 2, 2], "data_offsets": [0, 48]}},
                       bytes(48))
    check_safetensors_headers(tmp_path)
    with safe_open(str(tmp_path / "model.safetensors"), "pt") as handle:
        assert handle.metadata() == {"format": "pt"} and list(handle.keys()) == ["k"]


# ---- special files in a checkpoint ---------------------------------------------------------------------


def test_a_json_file_linked_to_dev_zero_is_refused_naming_it(tmp_path):
    os.symlink("/dev/zero", tmp_path / "config.json")
    with _memory_grows_at_most(1 << 30), pytest.raises(CorruptCheckpointError, match=re.escape(f"{tmp_path / 'config.json'}: resolves to /dev/zero, "
                                                               "outside the checkpoint folder")):
        check_json_files(tmp_path)


@pytest.mark.parametrize("name", ["model.safetensors", "shards/model-00001.safetensors"])
def test_a_fifo_named_like_weights_is_refused_not_waited_on(tmp_path, name):
    fifo = tmp_path / name
    fifo.parent.mkdir(exist_ok=True)
    os.mkfifo(fifo)
    with alarm(30), pytest.raises(CorruptCheckpointError) as info:
        check_safetensors_headers(tmp_path)
    assert str(info.value) == f"{fifo}: corrupt safetensors header: not a regular file (a pipe, a device or a directory)"
    if name == "model.safetensors":
        with alarm(30), pytest.raises(CorruptCheckpointError, match=re.escape(f"{fifo}: not a regular file")):
            weights_version(tmp_path)


def test_a_fifo_json_file_is_refused_not_waited_on(tmp_path):
    os.mkfifo(tmp_path / "tokenizer.json")
    with alarm(30), pytest.raises(CorruptCheckpointError,
                                   match=re.escape(f"{tmp_path / 'tokenizer.json'}: not a regular file")):
        check_json_files(tmp_path)


def test_links_out_of_the_checkpoint_are_not_read(tmp_path):
    outside, checkpoint = tmp_path / "outside", tmp_path / "checkpoint"
    outside.mkdir()
    checkpoint.mkdir()
    (outside / "private.json").write_text('{"private": true}')
    _write_safetensors(outside, SOUND, bytes(4))
    os.symlink(outside / "private.json", checkpoint / "config.json")
    with pytest.raises(CorruptCheckpointError, match=re.escape(f"{checkpoint / 'config.json'}: resolves to "
                                                               f"{(outside / 'private.json').resolve()}, outside")):
        check_json_files(checkpoint)
    os.symlink(outside / "private.json", checkpoint / "lineage.json")  # what a stage reads of its parent
    with pytest.raises(CorruptCheckpointError, match=re.escape(f"{checkpoint / 'lineage.json'}: resolves to")):
        parent_reference(str(checkpoint))
    (checkpoint / "config.json").unlink()
    os.symlink(outside / "model.safetensors", checkpoint / "model.safetensors")
    with pytest.raises(CorruptCheckpointError, match=re.escape(f"{checkpoint / 'model.safetensors'}: resolves to")):
        check_safetensors_headers(checkpoint)


def test_a_hugging_face_cache_snapshot_links_into_its_blobs_and_is_read(tmp_path):
    """``snapshot_download`` gives ``<repo>/snapshots/<rev>``, whose files link into ``<repo>/blobs``:
    those links stay inside the cached repository and are followed."""
    repo = tmp_path / "models--org--name"
    blobs, snapshot = repo / "blobs", repo / "snapshots" / "0123abc"
    blobs.mkdir(parents=True)
    snapshot.mkdir(parents=True)
    (blobs / "aa").write_text('{"model_type": "qwen3_vl"}')
    _write_safetensors(blobs, SOUND, bytes(4))
    (blobs / "model.safetensors").rename(blobs / "bb")
    (blobs / "cc").write_text(json.dumps({"weight_map": {"w": "model-00001-of-00001.safetensors"}}))
    os.symlink("../../blobs/aa", snapshot / "config.json")
    os.symlink("../../blobs/bb", snapshot / "model-00001-of-00001.safetensors")
    os.symlink("../../blobs/cc", snapshot / "model.safetensors.index.json")
    check_json_files(snapshot)
    check_weight_index(snapshot)
    check_safetensors_headers(snapshot)
    os.symlink("/etc/hostname", snapshot / "generation_config.json")  # out of the repository: refused
    with pytest.raises(CorruptCheckpointError, match="generation_config.json: resolves to"):
        check_json_files(snapshot)
