"""One rank of a rehearsed stage: the real training job, plus what the rehearsal measures on it.

    python -m torch.distributed.run --standalone --nproc_per_node=2 -m medmo_pipeline.rehearsal.probe \
        --out DIR --job sft -- --recipe R --stage stage1 --parent P --corpus C --output O

Runs ``training.sft`` or ``training.grpo`` unchanged. It wraps ``training.trainer_setup.load_for_training``
to record how many of the model's parameters this rank holds right after loading (ZeRO-3 keeps a
partition, ``ds_tensor``, of each parameter of ``ds_numel`` elements), and writes
``DIR/rank-<R>.json`` with that and the process's peak RSS once the job returns.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from medmo_pipeline.jobs import entry_point
from medmo_pipeline.process_memory import peak_rss_mib

JOBS = {"sft": "medmo_pipeline.training.sft", "grpo": "medmo_pipeline.training.grpo"}


def parameter_share(model) -> dict:
    """Elements of the model's parameters this rank holds, and the model's total."""
    held = total = 0
    for parameter in model.parameters():
        if hasattr(parameter, "ds_numel"):  # partitioned by ZeRO-3
            total += parameter.ds_numel
            held += parameter.ds_tensor.numel()
        else:
            total += parameter.numel()
            held += parameter.numel()
    return {"parameters_held": int(held), "parameters_total": int(total)}


@entry_point  # the job's ranks leave together; this program ends them once its record is written
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--job", choices=sorted(JOBS), required=True)
    parser.add_argument("job_args", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    job_args = args.job_args[1:] if args.job_args[:1] == ["--"] else args.job_args
    started = time.time()
    import faulthandler
    import signal

    faulthandler.register(signal.SIGUSR1, all_threads=True)  # `kill -USR1 <pid>`: where a slow rank is
    rank = int(os.environ.get("RANK", "0"))
    record: dict = {"rank": rank, "world_size": int(os.environ.get("WORLD_SIZE", "1"))}

    import importlib

    from medmo_pipeline.training import trainer_setup

    load = trainer_setup.load_for_training

    def measured_load(*load_args, **load_kwargs):
        model = load(*load_args, **load_kwargs)
        record.update(parameter_share(model), loaded_after_s=round(time.time() - started, 2))
        return model

    trainer_setup.load_for_training = measured_load
    importlib.import_module(JOBS[args.job]).main(job_args)
    record["peak_rss_mb"] = round(peak_rss_mib(), 1)
    record["wall_s"] = round(time.time() - started, 2)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"rank-{rank}.json").write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
