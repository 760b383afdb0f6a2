"""Batched greedy decoding through transformers, with left padding.

The backend is one function, ``generate_answers``; a vLLM backend can replace it on GPUs without
touching prompts or metrics. Prompts come from the rows themselves (``prompt_messages``), in one place.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import groupby

from medmo_pipeline.data.model_images import decode_images
from medmo_pipeline.data.prompts import prompt_text


def prompt_messages(row: dict) -> list[dict]:
    """The user turn as the model sees it: one image item per image, then the question."""
    content = [{"type": "image"} for _ in row["images"]] + [{"type": "text", "text": prompt_text(row)}]
    return [{"role": "user", "content": content}]


def generate_answers(
    model,
    processor,
    rows: list[dict],
    *,
    max_new_tokens: dict[str, int],
    batch_size: int,
    default_max_new_tokens: int = 64,
    progress: Callable[[int, int], None] | None = None,
) -> list[str]:
    """Greedy answers for ``rows``, in order. Rows are batched by (task, image or not)."""
    import torch

    tokenizer = processor.tokenizer
    order = sorted(range(len(rows)), key=lambda i: (rows[i]["task"], len(rows[i]["images"]) > 0))
    answers: list[str] = [""] * len(rows)
    done = 0
    model.eval()
    for (task, _), group in groupby(order, key=lambda i: (rows[i]["task"], len(rows[i]["images"]) > 0)):
        indices = list(group)
        for start in range(0, len(indices), batch_size):
            batch = indices[start : start + batch_size]
            texts = [
                processor.apply_chat_template(prompt_messages(rows[i]), add_generation_prompt=True, tokenize=False)
                for i in batch
            ]
            images = [img for i in batch for img in decode_images(rows[i])] or None
            inputs = processor(text=texts, images=images, return_tensors="pt", padding=True, padding_side="left")
            with torch.inference_mode():
                output = model.generate(
                    **inputs,
                    do_sample=False,
                    max_new_tokens=max_new_tokens.get(task, default_max_new_tokens),
                    pad_token_id=tokenizer.pad_token_id,
                    eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
                )
            new_tokens = output[:, inputs["input_ids"].shape[1] :]
            for i, text in zip(batch, tokenizer.batch_decode(new_tokens, skip_special_tokens=True)):
                answers[i] = text.strip()
            done += len(batch)
            if progress:
                progress(done, len(rows))
    return answers
