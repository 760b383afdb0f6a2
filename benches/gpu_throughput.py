"""Stage-2 training throughput on one GPU: a random-init Qwen3-VL shaped like the 2B and the 8B.

Run: ``python benches/gpu_throughput.py`` on a machine with a CUDA GPU (``--models 8b``, ``--steps``,
``--batch-size``, ``--peak-tflops`` for a GPU it does not know). Without a GPU it refuses; ``--dry-run``
runs the same code path on CPU with the shapes scaled down (``model.shapes.scaled_down``), small
images and one measured step, to check the script, not to measure.

Stage-2 settings of ``recipes/paper.yaml``: 1280x1280 images (6,400 patches of 16 px, 1,600 image
tokens after the 2x2 merge), bf16 weights, sdpa or flash attention (flash_attention_2 where the
flash-attn package is installed), gradient checkpointing, micro-batch 2. Each sample is one image and
``--text-tokens`` text tokens; the loss is on the text tokens. The optimizer is plain SGD (no state) so
that the 8B fits one GPU: the recipe's AdamW states live sharded across a cluster under ZeRO-3 and
add no model FLOPs.

MFU counts model FLOPs (6 per parameter per token for forward and backward, plus attention; the
recompute of gradient checkpointing is not counted as useful work) against the GPU's dense bf16 peak.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# Dense bf16 peak (no sparsity), TFLOPS, by a substring of torch.cuda.get_device_name().
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100 SXM": 989.0, "H100 80GB HBM3": 989.0, "H100 NVL": 835.0,
                    "H100 PCIe": 756.0, "H100": 756.0, "A100": 312.0, "L40S": 362.0, "A10G": 125.0, "L4": 121.0}
# Qwen's own ids, used for the full shapes (vocabulary 151,936); the dry run's vocabulary is 512.
QWEN_TOKEN_IDS = {"image_token_id": 151655, "video_token_id": 151656, "vision_start_token_id": 151652,
                  "vision_end_token_id": 151653, "bos_token_id": 151643, "eos_token_id": 151645,
                  "pad_token_id": 151643}
TIED_EMBEDDINGS = {"2b": True, "8b": False}
NO_GPU = ("benches/gpu_throughput.py measures GPU training throughput and needs a CUDA GPU "
          "(torch.cuda.is_available() is False here). Run it on a GPU machine, or pass --dry-run to check the "
          "script on CPU with tiny shapes (no figures worth reporting).")


def build_model(name: str, *, dry_run: bool, attn: str, device, dtype):
    import torch
    from transformers import Qwen3VLForConditionalGeneration

    from medmo_pipeline.model.loading import attention_implementation
    from medmo_pipeline.model.shapes import full_spec, scaled_down
    from medmo_pipeline.model.tiny import build_config

    spec = scaled_down(name) if dry_run else full_spec(name)
    ids = token_ids(spec["vocab_size"])
    config = build_config(spec, ids)
    config.tie_word_embeddings = TIED_EMBEDDINGS[name]
    config._attn_implementation = attention_implementation(attn)
    config.get_text_config().use_cache = False  # no generation here; the cache conflicts with checkpointing
    with torch.device(device):
        model = Qwen3VLForConditionalGeneration._from_config(config, dtype=dtype)
    enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
    enable()
    return model.train(), spec, ids


def token_ids(vocab_size: int) -> dict[str, int]:
    if vocab_size > max(QWEN_TOKEN_IDS.values()):
        return dict(QWEN_TOKEN_IDS)
    return {name: vocab_size - 1 - i for i, name in enumerate(QWEN_TOKEN_IDS)}


def batch(spec: dict, ids: dict, *, batch_size: int, image_px: int, text_tokens: int, device, dtype, seed: int = 0):
    """One image and ``text_tokens`` random text tokens per sample, as Qwen3-VL's processor lays them out."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    side = image_px // spec["patch_size"]
    merge = spec["spatial_merge_size"]
    patches = side * side
    image_tokens = patches // (merge * merge)
    patch_dim = 3 * spec["temporal_patch_size"] * spec["patch_size"] ** 2
    text_low, text_high = 10, min(ids.values()) - 1
    rows = []
    for _ in range(batch_size):
        text = torch.randint(text_low, text_high, (text_tokens,), generator=generator)
        rows.append(torch.cat([text[:4], torch.tensor([ids["vision_start_token_id"]]),
                               torch.full((image_tokens,), ids["image_token_id"]),
                               torch.tensor([ids["vision_end_token_id"]]), text[4:]]))
    input_ids = torch.stack(rows)
    labels = input_ids.clone()
    labels[(input_ids == ids["image_token_id"]) | (input_ids == ids["vision_start_token_id"])
           | (input_ids == ids["vision_end_token_id"])] = -100
    return {
        "input_ids": input_ids.to(device),
        "attention_mask": torch.ones_like(input_ids).to(device),
        # 1 marks image tokens (M-RoPE places them on the image grid), as the processor returns it.
        "mm_token_type_ids": (input_ids == ids["image_token_id"]).long().to(device),
        "labels": labels.to(device),
        "pixel_values": torch.randn(batch_size * patches, patch_dim, generator=generator).to(device, dtype),
        "image_grid_thw": torch.tensor([[1, side, side]] * batch_size).to(device),
    }


def model_flops_per_sample(model, spec: dict, *, image_px: int, text_tokens: int) -> float:
    """Training model FLOPs for one sample: 6 x parameters x tokens through each tower, plus attention."""
    visual = model.model.visual
    vision_params = sum(p.numel() for p in visual.parameters())
    embed = model.model.language_model.embed_tokens.weight.numel()
    text_params = sum(p.numel() for p in model.model.language_model.parameters()) - embed
    head = model.lm_head.weight.numel()
    patches = (image_px // spec["patch_size"]) ** 2
    seq = text_tokens + patches // spec["spatial_merge_size"] ** 2 + 2
    dense = 6 * (vision_params * patches + (text_params + head) * seq)
    # Per layer, forward QK^T and AV cost 4 x seq^2 x width; backward doubles that again (x3 in all).
    attention = 12 * (spec["num_hidden_layers"] * seq * seq * spec["num_attention_heads"] * spec["head_dim"]
                      + spec["vision_depth"] * patches * patches * spec["vision_hidden_size"])
    return float(dense + attention)


def peak_tflops(device_name: str, override: float | None) -> float | None:
    if override:
        return override
    return next((peak for key, peak in PEAK_BF16_TFLOPS.items() if key in device_name), None)


def measure(name: str, args, *, device, dtype) -> dict:
    import torch

    model, spec, ids = build_model(name, dry_run=args.dry_run, attn=args.attn, device=device, dtype=dtype)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-6)
    inputs = batch(spec, ids, batch_size=args.batch_size, image_px=args.image_px, text_tokens=args.text_tokens,
                   device=device, dtype=dtype)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for step in range(args.warmup + args.steps):
        sync()
        started = time.perf_counter()
        loss = model(**inputs).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        sync()
        if step >= args.warmup:
            times.append(time.perf_counter() - started)
    if not all(torch.isfinite(p).all() for p in list(model.parameters())[:4]) or not torch.isfinite(loss):
        raise RuntimeError(f"{name}: non-finite loss or weights after {len(times)} steps")
    seconds = sum(times) / len(times)
    tokens = inputs["input_ids"].numel()
    flops = model_flops_per_sample(model, spec, image_px=args.image_px, text_tokens=args.text_tokens) * args.batch_size
    result = {"model": name, "parameters": sum(p.numel() for p in model.parameters()),
              "attention": model.config._attn_implementation, "seconds_per_step": seconds,
              "tokens_per_s": tokens / seconds, "samples_per_s": args.batch_size / seconds,
              "tflops": flops / seconds / 1e12, "loss": float(loss.detach())}
    if device.type == "cuda":
        result["peak_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
    del model, optimizer
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=["2b", "8b"], default=["2b", "8b"])
    parser.add_argument("--batch-size", type=int, default=2, help="micro-batch (stage 2 of the paper: 2)")
    parser.add_argument("--image-px", type=int, default=1280, help="image side (stage 2: 1280)")
    parser.add_argument("--text-tokens", type=int, default=256)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--attn", choices=["auto", "sdpa", "flash_attention_2"], default="auto")
    parser.add_argument("--peak-tflops", type=float, default=None, help="the GPU's dense bf16 peak, if not known")
    parser.add_argument("--dry-run", action="store_true", help="CPU, scaled-down shapes, 64 px, one step after one warm-up")
    args = parser.parse_args(argv)

    import torch

    if args.dry_run:
        args.image_px, args.text_tokens, args.steps, args.warmup = 64, 16, 1, 1
        device, dtype, device_name = torch.device("cpu"), torch.float32, "CPU (dry run)"
        torch.set_num_threads(1)  # it checks the path; on a busy CPU more threads mostly wait on each other
    elif not torch.cuda.is_available():
        print(NO_GPU, file=sys.stderr)
        return 2
    else:
        device, dtype, device_name = torch.device("cuda"), torch.bfloat16, torch.cuda.get_device_name()
    peak = None if args.dry_run else peak_tflops(device_name, args.peak_tflops)
    print(f"device: {device_name}; {args.image_px} px images, {args.text_tokens} text tokens, micro-batch "
          f"{args.batch_size}, {'fp32' if args.dry_run else 'bf16'}, gradient checkpointing, {args.steps} steps "
          f"after {args.warmup} warm-up")
    print("| model | parameters | attention | s/step | tokens/s | samples/s | model TFLOPS | MFU | peak GiB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in args.models:
        r = measure(name, args, device=device, dtype=dtype)
        mfu = f"{100 * r['tflops'] / peak:.1f}%" if peak else "n/a"
        memory = f"{r['peak_memory_gib']:.1f}" if "peak_memory_gib" in r else "-"
        print(f"| {name}{' (scaled down)' if args.dry_run else ''} | {r['parameters'] / 1e9:.3f} B | "
              f"{r['attention']} | {r['seconds_per_step']:.3f} | {r['tokens_per_s']:,.0f} | "
              f"{r['samples_per_s']:.2f} | {r['tflops']:.3g} | {mfu} | {memory} |", flush=True)
    if peak is None and not args.dry_run:
        print(f"MFU: unknown peak for {device_name!r}; pass --peak-tflops")
    return 0


if __name__ == "__main__":
    sys.exit(main())
