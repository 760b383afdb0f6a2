"""The SFT collator: the same batch as TRL's vision collator with ``assistant_only_loss``, on rows of
every synthetic task (image and text-only rows, in one batch and apart), and a loss on answers only."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_processor

from medmo_pipeline.data import synthetic
from medmo_pipeline.data.prompts import formatted_messages
from medmo_pipeline.training.examples import sft_dataset


@pytest.fixture(scope="module")
def processor(tmp_path_factory):
    return tiny_processor(tmp_path_factory)


def _dataset():
    rows = [r for s in ("synth_xray", "synth_cells", "synth_medqa") for r in synthetic.generate_rows(s, "train", 8)]
    return sft_dataset(rows), rows


def _trl(processor, max_length=None):
    from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

    return DataCollatorForVisionLanguageModeling(processor, assistant_only_loss=True, max_length=max_length)


def _assert_same(ours: dict, theirs: dict):
    assert ours.keys() == theirs.keys()
    for key, expected in theirs.items():
        assert ours[key].dtype == expected.dtype, key
        assert torch.equal(ours[key], expected), key


@pytest.mark.parametrize("max_length", [None, 40])
def test_same_batch_as_trl_on_every_task(processor, max_length):
    from medmo_pipeline.training.collation import answer_masked_collator

    dataset, rows = _dataset()
    assert {r["task"] for r in rows} >= {"caption", "vqa", "report", "grounding", "text_qa", "instruction"}
    ours, theirs = answer_masked_collator(processor, max_length=max_length), _trl(processor, max_length)
    image_rows = [i for i, r in enumerate(rows) if r["images"]]
    text_rows = [i for i, r in enumerate(rows) if not r["images"]]
    batches = [list(range(i, i + 6)) for i in range(0, len(rows), 6)] + [image_rows[:5], text_rows[:5]]
    for indices in batches:  # each collator gets its own examples: TRL's edits them in place
        _assert_same(ours([dataset[i] for i in indices]), theirs([dataset[i] for i in indices]))


def test_loss_only_on_the_answers(processor):
    from medmo_pipeline.training.collation import answer_masked_collator

    dataset, rows = _dataset()
    batch = answer_masked_collator(processor)([dataset[0], dataset[len(rows) - 1]])
    tokenizer = processor.tokenizer
    for i, row in enumerate([rows[0], rows[-1]]):
        trained = batch["input_ids"][i][batch["labels"][i] != -100]
        text = tokenizer.decode(trained)
        question, reply = (m["content"] for m in formatted_messages(row["messages"], "plain"))
        assert reply in text
        assert question not in text
        assert (batch["labels"][i][batch["attention_mask"][i] == 0] == -100).all()  # no loss on padding


def test_pad_token_mirrored_onto_the_model(tmp_path):
    from medmo_pipeline.model.loading import load_model, load_processor
    from medmo_pipeline.model.tiny import build_tiny_base_model
    from medmo_pipeline.training.collation import mirror_pad_token

    directory = build_tiny_base_model(tmp_path / "base", texts=["a b c 1 2 3"] * 10, spec={}, seed=0)
    model, fresh = load_model(directory), load_processor(directory)
    fresh.tokenizer.pad_token = None  # a hub tokenizer without one pads with end-of-text, as in SFTTrainer
    model.config.get_text_config().pad_token_id = None
    mirror_pad_token(model, fresh)
    assert fresh.tokenizer.pad_token == fresh.tokenizer.eos_token
    assert model.config.get_text_config().pad_token_id == fresh.tokenizer.eos_token_id
    assert model.generation_config.pad_token_id == fresh.tokenizer.eos_token_id
