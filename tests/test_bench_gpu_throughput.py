"""benches/gpu_throughput.py: refuses without a GPU, and its CPU dry run goes through the whole measuring
path (model build with the 2B/8B layer structure, stage-2 style batch, checkpointed training steps,
FLOP count). No GPU here: CUDA is hidden from the refusal run so it behaves the same on any machine."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from conftest import ROOT

BENCH = str(ROOT / "benches" / "gpu_throughput.py")


def run(*args: str, hide_gpu: bool = False) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    if hide_gpu:
        env["CUDA_VISIBLE_DEVICES"] = ""
    return subprocess.run([sys.executable, BENCH, *args], capture_output=True, text=True, cwd=ROOT, env=env,
                          timeout=600, check=False)


def test_refuses_to_run_without_a_gpu():
    result = run(hide_gpu=True)
    assert result.returncode == 2
    assert "needs a CUDA GPU" in result.stderr and "--dry-run" in result.stderr
    assert "| model |" not in result.stdout


@pytest.mark.slow
def test_cpu_dry_run_measures_both_shapes():
    result = run("--dry-run")
    assert result.returncode == 0, result.stderr[-3000:]
    rows = {m.group(1): m.group(0) for m in re.finditer(r"^\| (2b|8b) \(scaled down\) \|.*$", result.stdout, re.MULTILINE)}
    assert set(rows) == {"2b", "8b"}
    for row in rows.values():
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[2] == "sdpa"
        assert float(cells[3]) > 0 and float(cells[4].replace(",", "")) > 0 and float(cells[6]) > 0
        assert cells[7] == "n/a"  # no MFU claimed on a CPU


def test_flop_count_of_the_published_8b_shape():
    """Model FLOPs of one stage-2 sample on the full 8B shape (built on the meta device: no memory)."""
    import importlib.util

    import torch
    from transformers import Qwen3VLForConditionalGeneration

    from medmo_pipeline.model.shapes import full_spec
    from medmo_pipeline.model.tiny import build_config

    spec_ = importlib.util.spec_from_file_location("gpu_throughput", BENCH)
    bench = importlib.util.module_from_spec(spec_)
    spec_.loader.exec_module(bench)
    spec = full_spec("8b")
    with torch.device("meta"):
        model = Qwen3VLForConditionalGeneration(build_config(spec, bench.token_ids(spec["vocab_size"])))
    parameters = sum(p.numel() for p in model.parameters())
    assert 8.5e9 < parameters < 9.0e9  # the published 8B counts 8.77B
    flops = bench.model_flops_per_sample(model, spec, image_px=1280, text_tokens=256)
    seq = 256 + 1600 + 2
    assert 6 * parameters * seq * 0.9 < flops < 6 * parameters * 6400  # between the text-only and all-patch bounds
    assert bench.peak_tflops("NVIDIA H100 80GB HBM3", None) == 989.0
    assert bench.peak_tflops("Some GPU", None) is None and bench.peak_tflops("Some GPU", 100.0) == 100.0
