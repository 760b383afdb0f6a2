"""Supervised batches with the loss on the answers only, built from plain lists.

TRL's vision collator asks the processor for tensors, so transformers then walks the offset-mapping
tensor element by element to mark the answer tokens: about half of the collation time on the embedded
default. ``AnswerMaskedCollator`` makes the same ``apply_chat_template`` call for Python lists and
numpy arrays and converts them once; the batch is the same (``tests/test_collation.py`` compares them).
Imported by the training jobs only (it needs trl and torch).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from trl.chat_template_utils import get_training_chat_template, has_generation_markers
from trl.data_utils import prepare_multimodal_messages
from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling


class AnswerMaskedCollator(DataCollatorForVisionLanguageModeling):
    """TRL's vision collator with ``assistant_only_loss``; conversational rows take the list path."""

    def _collate_language_modeling(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        if "messages" not in examples[0]:
            return super()._collate_language_modeling(examples)
        conversations = [prepare_multimodal_messages(e["messages"], images=e["images"]) for e in examples]
        out = self.processor.apply_chat_template(
            conversations, chat_template=self.chat_template, tokenize=True, return_dict=True,
            return_tensors=None, return_assistant_tokens_mask=True,
            processor_kwargs={"padding": True, "padding_side": "right", "pad_to_multiple_of": self.pad_to_multiple_of,
                              "truncation": self.max_length is not None, "max_length": self.max_length,
                              "add_special_tokens": False},
        )
        batch = {key: torch.from_numpy(np.asarray(value)) for key, value in out.items()}
        answers = batch.pop("assistant_masks").bool()
        batch["labels"] = batch["input_ids"].masked_fill(~answers | (batch["attention_mask"] == 0), -100)
        return batch


def answer_masked_collator(processor, *, max_length: int | None = None) -> AnswerMaskedCollator:
    """The collator SFTTrainer would build for conversational vision rows with ``assistant_only_loss``:
    a template without ``{% generation %}`` marks gets TRL's training template for that model family."""
    template = None if has_generation_markers(processor.chat_template) else get_training_chat_template(processor)
    return AnswerMaskedCollator(processor=processor, max_length=max_length, assistant_only_loss=True,
                                chat_template=template)


def mirror_pad_token(model, processor) -> None:
    """What SFTTrainer does beside building its own collator: the tokenizer pads with its pad token
    (else end-of-text) and the model's configs name the same id."""
    tokenizer = processor.tokenizer
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.config.get_text_config().pad_token_id = tokenizer.pad_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
