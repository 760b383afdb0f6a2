"""A checkpoint whose weights do not match the model its config describes is refused by `load_model`
(transformers would only log it and start the missing weights from random values)."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from medmo_pipeline.model.loading import CorruptCheckpointError, check_loading_info, load_model

Q_PROJ = "model.language_model.layers.0.self_attn.q_proj.weight"
EMBED = "model.language_model.embed_tokens.weight"


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    from medmo_pipeline.data import synthetic
    from medmo_pipeline.model.tiny import build_tiny_base_model

    texts = synthetic.iter_texts(r for s in synthetic.SYNTHETIC_SOURCES for r in synthetic.generate_rows(s, "train", 10))
    return build_tiny_base_model(tmp_path_factory.mktemp("tiny") / "base", texts=texts, spec={}, seed=3)


def weights(directory: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(directory / "model.safetensors")


def edited(saved: Path, target: Path, change: Callable[[dict], object], config: dict | None = None) -> Path:
    """A copy of the saved checkpoint whose safetensors file is rewritten after ``change`` edits its tensors."""
    from safetensors.torch import save_file

    shutil.copytree(saved, target)
    tensors = weights(saved)
    change(tensors)
    save_file(tensors, str(target / "model.safetensors"), metadata={"format": "pt"})
    if config:
        path = target / "config.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), **config}))
    return target


def refusal(directory: Path) -> str:
    with pytest.raises(CorruptCheckpointError) as raised:
        load_model(directory)
    message = str(raised.value)
    assert message.startswith(f"{directory}: ") and "copy it again" in message and "another architecture" in message
    return message


@pytest.mark.parametrize("key", ["lm_head.weight", Q_PROJ])
def test_a_checkpoint_missing_a_tensor_is_refused_naming_it(saved, tmp_path, key):
    message = refusal(edited(saved, tmp_path / "ckpt", lambda tensors: tensors.pop(key)))
    assert f"1 weight missing from the checkpoint (they would start from random values): '{key}'" in message


def test_a_checkpoint_missing_many_tensors_counts_them_and_names_the_first(saved, tmp_path):
    def drop_layer_1(tensors):
        for name in [name for name in tensors if ".layers.1." in name]:
            del tensors[name]

    dropped = sorted(name for name in weights(saved) if ".layers.1." in name)
    message = refusal(edited(saved, tmp_path / "ckpt", drop_layer_1))
    assert f"{len(dropped)} weights missing" in message and repr(dropped[0]) in message
    assert f"and {len(dropped) - 5} more" in message and repr(dropped[-1]) not in message


def test_a_checkpoint_with_an_extra_tensor_is_refused_naming_it(saved, tmp_path):
    import torch

    message = refusal(edited(saved, tmp_path / "ckpt", lambda tensors: tensors.update(
        {"model.extra_head.weight": torch.zeros(3)})))
    assert "1 weight in the checkpoint but not in the model (they would be dropped): 'model.extra_head.weight'" \
        in message and "missing" not in message


def test_a_checkpoint_of_another_architecture_is_refused(saved, tmp_path):
    def renamed(tensors):
        for name in list(tensors):
            tensors[name.replace("model.language_model.", "transformer.")] = tensors.pop(name)

    message = refusal(edited(saved, tmp_path / "ckpt", renamed))
    moved = sum(name.startswith("model.language_model.") for name in weights(saved))
    assert f"{moved} weights missing" in message and f"{moved} weights in the checkpoint but not in the model" in message
    assert "'transformer.embed_tokens.weight'" in message


def test_a_tensor_of_another_shape_is_refused_naming_both_shapes(saved, tmp_path):
    import torch

    message = refusal(edited(saved, tmp_path / "ckpt", lambda tensors: tensors.update({Q_PROJ: torch.zeros(3, 64)})))
    assert f"1 weight of another size in the checkpoint than in the model: '{Q_PROJ}' (checkpoint [3, 64], model " \
           f"[{weights(saved)[Q_PROJ].shape[0]}, 64])" in message


def test_the_intact_checkpoint_loads_with_the_weights_it_saved(saved):
    import torch

    model = load_model(saved)
    state = model.state_dict()
    stored = weights(saved)
    assert set(stored) <= set(state)
    for name, tensor in stored.items():
        assert torch.equal(state[name], tensor), name


def test_keys_transformers_itself_ignores_still_load(saved, tmp_path):
    # Older checkpoints stored the rotary inverse frequencies, now a buffer transformers recomputes
    import torch

    legacy = {"model.language_model.rotary_emb.inv_freq": torch.zeros(8),
              "model.language_model.layers.0.self_attn.rotary_emb.inv_freq": torch.zeros(8)}
    load_model(edited(saved, tmp_path / "ckpt", lambda tensors: tensors.update(legacy)))


def test_tied_embeddings_load_without_a_stored_lm_head(saved, tmp_path):
    import torch

    assert json.loads((saved / "config.json").read_text())["tie_word_embeddings"] is False  # the tiny model's own
    tied = edited(saved, tmp_path / "tied", lambda tensors: tensors.pop("lm_head.weight"),
                  config={"tie_word_embeddings": True})
    model = load_model(tied)
    assert model.lm_head.weight is model.model.language_model.embed_tokens.weight
    assert torch.equal(model.lm_head.weight, weights(saved)[EMBED])


def test_tied_embeddings_with_neither_tensor_stored_are_refused(saved, tmp_path):
    def drop_both(tensors):
        del tensors["lm_head.weight"], tensors[EMBED]

    message = refusal(edited(saved, tmp_path / "tied", drop_both, config={"tie_word_embeddings": True}))
    assert re.search(rf"2 weights missing .*'lm_head.weight', '{EMBED}'", message)


def test_the_report_of_a_zero3_load_is_checked_the_same_way():
    # Under ZeRO-3 transformers reports missing keys only, as lists or sets
    check_loading_info({"missing_keys": set(), "unexpected_keys": set(), "mismatched_keys": set(), "error_msgs": []},
                       "/ckpt")
    with pytest.raises(CorruptCheckpointError, match=r"^/ckpt: .*1 weight missing .*'lm_head.weight'"):
        check_loading_info({"missing_keys": ["lm_head.weight"], "unexpected_keys": set(), "mismatched_keys": set()},
                           "/ckpt")
