"""Job start-up: a job's wall time started cold (``python -m``) against started through a warm host.

Run: ``python benches/job_start.py`` (``--quick`` for fewer rounds).

The job is a stand-in for what every training and evaluation job does first: import trl's SFT and
GRPO trainers, transformers' Qwen3-VL model and MLflow, and build one tiny model; then it exits.
Cold and warm runs alternate (a warm-up of each first), from one host started here; the table shows
the median wall time of each and their ratio (absolute times on a shared machine mean little).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

JOB = '''
import mlflow, torch
from trl import GRPOTrainer, SFTTrainer
from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration
config = Qwen3VLConfig(text_config=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                                        num_attention_heads=4, num_key_value_heads=2, head_dim=16, vocab_size=512),
                       vision_config=dict(depth=1, hidden_size=64, intermediate_size=128, num_heads=4,
                                          out_hidden_size=64, patch_size=16))
model = Qwen3VLForConditionalGeneration(config)
print(sum(p.numel() for p in model.parameters()))
'''


def timed(command: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0 or "cold" in done.stderr:
        raise SystemExit(f"{' '.join(command)} failed or ran cold:\n{done.stderr[-2000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 rounds instead of 7")
    rounds = 3 if parser.parse_args().quick else 7

    from medmo_pipeline.launch.warm_host import WarmHost

    host = WarmHost()
    with tempfile.TemporaryDirectory() as tmp, host:
        directory = Path(tmp)
        (directory / "start_job.py").write_text(JOB)
        host.wait_until_listening()
        socket = host.socket_path
        cold = [sys.executable, "-m", "start_job"]
        hot = [sys.executable, "-m", "medmo_pipeline.launch.warm_host", "run", "--socket", str(socket), "start_job"]
        times: dict[str, list[float]] = {"cold": [], "warm": []}
        for round_ in range(rounds + 1):  # round 0 warms the page cache for both
            for name, command in (("cold", cold), ("warm", hot)):
                elapsed = timed(command, directory)
                if round_:
                    times[name].append(elapsed)
    cold_s, warm_s = statistics.median(times["cold"]), statistics.median(times["warm"])
    print(f"| start | median wall s ({rounds} runs) | ratio to cold |\n|---|---|---|")
    print(f"| cold (`python -m`) | {cold_s:.2f} | 1.00x |")
    print(f"| warm host | {warm_s:.2f} | {warm_s / cold_s:.2f}x |")


if __name__ == "__main__":
    main()
