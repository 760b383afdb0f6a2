"""Run the rehearsal: corpus, model, then every stage under torchrun with ZeRO-3; print what it measured.

    medmo rehearse [--rows 2000000] [--steps 3] [--stages stage1 ...] [--work DIR]

Per stage it reports each rank's peak RSS and share of the model's parameters (held right after
loading), the time from launch to the first logged training step, and how fast the stage's data
path yields rows (measured beside the job, on one rank's view, see ``data_path``). Everything lands
under ``--work``: the corpus (reused when its size matches), the base model, one log per stage and
``rehearsal.json``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import yaml

from medmo_pipeline.rehearsal import data_path

FIRST_STEP = re.compile(r"\bstep 1/\d+ ")
JOB_OF = {"rl": "grpo"}  # every other stage is an SFT stage


def build_base_model(out: Path, *, image_side: int, seed: int) -> Path:
    """A randomly initialised Qwen3-VL with the 8B's layer structure, small widths (``model.shapes``)."""
    from medmo_pipeline.model.shapes import scaled_down
    from medmo_pipeline.model.tiny import build_tiny_base_model
    from medmo_pipeline.rehearsal.corpus import PROMPTS

    if (out / "config.json").is_file():
        return out
    spec = {**scaled_down("8b"), "min_pixels": image_side * image_side, "max_pixels": image_side * image_side}
    modalities = ("xray", "ct", "multi", "pathology", "text")
    texts = [text.format(m=m) for m in modalities for pair in PROMPTS.values() for text in pair] * 20
    texts += [f"lesion <box>[[{i}, {i + 1}, {i + 2}, {i + 3}]]</box>" for i in range(0, 997, 7)]
    from medmo_pipeline.atomic import staged_dir

    with staged_dir(out) as tmp:
        build_tiny_base_model(tmp, texts=texts, spec=spec, seed=seed)
    return out


def job_environment(work: Path, nproc: int) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("DAGSTER_PIPES_CONTEXT", None)  # the rehearsal reports to the console, never to a Dagster run
    env.update(MEDMO_HOME=str(work / "home"), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false", PYTHONWARNINGS="ignore::FutureWarning", MLFLOW_TRACKING_URI=f"sqlite:///{work / 'home' / 'mlflow.db'}",
               OMP_NUM_THREADS=str(max(1, (os.cpu_count() or 1) // nproc)))
    (work / "home").mkdir(parents=True, exist_ok=True)
    return env


def run_stage(stage: str, *, recipe_path: Path, parent: Path, index_path: Path, work: Path, nproc: int,
              log=print) -> dict:
    """Train ``stage`` under torchrun with ``nproc`` processes through the probe; its measurements."""
    from medmo_pipeline.launch.local import job_command

    probe_dir, output = work / "probe" / stage, work / "checkpoints" / stage
    job_args = ["--recipe", str(recipe_path), "--stage", stage, "--parent", str(parent),
                "--corpus", str(index_path), "--output", str(output)]
    command = job_command("medmo_pipeline.rehearsal.probe",
                          ["--out", str(probe_dir), "--job", JOB_OF.get(stage, "sft"), "--", *job_args],
                          nproc_per_node=nproc)
    log_path = work / "logs" / f"{stage}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    started, first_step, tail = time.time(), None, []
    with open(log_path, "w", buffering=1) as log_file:  # line-buffered: the log can be followed live
        process = subprocess.Popen(command, env=job_environment(work, nproc), stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True)
        for line in process.stdout:
            log_file.write(f"{time.time() - started:7.1f}s {line}")
            tail = [*tail[-39:], line.rstrip()]
            if first_step is None and FIRST_STEP.search(line):
                first_step = time.time() - started
        code = process.wait()
    if code != 0:
        raise RuntimeError(f"{stage} failed (exit {code}); last lines of {log_path}:\n" + "\n".join(tail))
    ranks = [json.loads((probe_dir / f"rank-{r}.json").read_text()) for r in range(nproc)]
    return {"stage": stage, "checkpoint": str(output), "wall_s": round(time.time() - started, 1),
            "time_to_first_step_s": None if first_step is None else round(first_step, 1), "ranks": ranks,
            "log": str(log_path)}


def rehearse(work: Path, *, rows: int = 2_000_000, steps: int = 3, stages: list[str] | None = None,
             nproc: int = 2, image_side: int = 32, log=print) -> dict:
    from medmo_pipeline.config import load_recipe
    from medmo_pipeline.model.shapes import scaled_down
    from medmo_pipeline.rehearsal.corpus import build_corpus
    from medmo_pipeline.rehearsal.recipe import rehearsal_recipe

    work = Path(work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    started = time.time()
    index = build_corpus(work / "corpus", total_rows=rows, image_side=image_side, log=log)
    recipe_path = work / "rehearsal.yaml"
    recipe_path.write_text(yaml.safe_dump(rehearsal_recipe(spec=scaled_down("8b"), data_root=work / "corpus",
                                                           steps=steps, image_side=image_side), sort_keys=False))
    recipe = load_recipe(recipe_path)
    parent = build_base_model(work / "base", image_side=image_side, seed=recipe.seed)
    log(f"base model: Qwen3-VL, 8B layer structure (36 text / 27 vision layers), at {parent}")
    results = []
    for stage in stages or recipe.checkpoints()[1:]:
        mixture = recipe.stage(stage).mixture
        rate = data_path.measure(index, mixture, seed=recipe.seed, rank=0, world_size=nproc)
        log(f"{stage}: {rate['planned_samples']:,} samples planned in {rate['plan_seconds']} s; data path "
            f"{rate['description']}: {rate['rows']:,} rows in {rate['seconds']} s ({rate['rows_per_s']:,.0f} rows/s, "
            f"peak RSS +{rate['rss_growth_mb']} MB)")
        result = run_stage(stage, recipe_path=recipe_path, parent=parent, index_path=Path(index["index_path"]),
                           work=work, nproc=nproc, log=log)
        result["data_path"] = rate
        results.append(result)
        log(summary_line(result))
        parent = Path(result["checkpoint"])
    report = {"rows": sum(s["rows"] for s in index["sources"].values()), "sources": len(index["sources"]),
              "nproc": nproc, "steps_per_stage": steps, "wall_s": round(time.time() - started, 1),
              "stages": results}
    (work / "rehearsal.json").write_text(json.dumps(report, indent=2))
    log(f"rehearsal: {report['rows']:,} corpus rows in {report['sources']} sources, {len(results)} stages, "
        f"{report['wall_s']:.0f} s; report {work / 'rehearsal.json'}")
    return report


def summary_line(result: dict) -> str:
    ranks = " ".join(f"rank {r['rank']}: {r['peak_rss_mb']:.0f} MB peak, "
                     f"{r['parameters_held']:,}/{r['parameters_total']:,} params" for r in result["ranks"])
    return (f"{result['stage']}: first step after {result['time_to_first_step_s']} s, "
            f"stage {result['wall_s']} s; {ranks}")


def main(argv: list[str] | None = None) -> int:
    import argparse

    from medmo_pipeline import home

    parser = argparse.ArgumentParser(prog="medmo rehearse", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000, help="corpus rows over all 45 sources")
    parser.add_argument("--steps", type=int, default=3, help="training steps per stage")
    parser.add_argument("--stages", nargs="*", default=None, help="stages to run (default: all, in order)")
    parser.add_argument("--nproc", type=int, default=2, help="processes per stage (torchrun)")
    parser.add_argument("--work", type=Path, default=None, help="default: MEDMO_HOME/rehearsal")
    args = parser.parse_args(argv)
    work = args.work or home.medmo_home() / "rehearsal"
    try:
        rehearse(work, rows=args.rows, steps=args.steps, stages=args.stages, nproc=args.nproc,
                 log=lambda m: print(m, flush=True))
    except RuntimeError as error:
        print(error, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
