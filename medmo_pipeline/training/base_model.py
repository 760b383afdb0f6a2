"""Base-model job: build the offline tiny model, or resolve a hub model from the local cache.

    python -m medmo_pipeline.training.base_model --recipe embedded --output .medmo/models/base/<key>

The first checkpoint of the chain, so it sits with the jobs that write the others: it takes the
tokenizer's texts from the synthetic corpus generator (data) and builds the model (model), which
knows nothing of where its texts come from.
"""

from __future__ import annotations

import time
from pathlib import Path

from medmo_pipeline.config import RecipeError, checked_recipe
from medmo_pipeline.jobs import entry_point, job_parser


@entry_point
def main(argv: list[str] | None = None) -> None:
    parser = job_parser(__doc__.splitlines()[0])
    parser.add_argument("--output", required=True, type=Path)
    args = parser.parse_args(argv)
    recipe, code_version = checked_recipe(args, "base_model")

    from medmo_pipeline.jobs import job_reporter

    with job_reporter() as reporter:
        started = time.time()
        spec = recipe.base_model
        if spec.source == "tiny":
            path, lineage = build_tiny(recipe, args.output, code_version, started, reporter.log)
        else:
            path, lineage = resolve_hub(recipe, code_version, started)
        meta = {
            "path": Path(path).resolve(),
            "source": spec.source,
            "model": spec.name_or_path or "tiny offline Qwen3-VL",
            "recipe_hash": code_version,
            "parameters": int(lineage["metrics"].get("parameters", 0)),
            "wall_seconds": round(time.time() - started, 2),
        }
        reporter.report(meta, data_version=lineage["data_version"])


def build_tiny(recipe, output: Path, code_version: str, started: float, log) -> tuple[Path, dict]:
    from medmo_pipeline import tracking
    from medmo_pipeline.atomic import staged_dir, write_json_atomic
    from medmo_pipeline.data import synthetic
    from medmo_pipeline.model.checkpoint import weights_version
    from medmo_pipeline.model.tiny import build_tiny_base_model

    spec = recipe.base_model
    n = spec.tokenizer_training_rows

    def texts():  # the tokenizer learns the corpus vocabulary from the same generator, seeded
        # The words do not depend on the image size and coordinates read one token per digit, so the
        # rows are drawn at the smallest size: a third of the time of drawing them at 128 px.
        for source in synthetic.SYNTHETIC_SOURCES:
            yield from synthetic.iter_texts(synthetic.generate_rows(source, "train", n, seed=recipe.seed,
                                                                    image_size=synthetic.MIN_IMAGE_SIZE))

    log(f"training a tokenizer on {n} rows per synthetic source and building the tiny model")
    with staged_dir(output) as tmp:
        build_tiny_base_model(tmp, texts=texts(), spec=dict(spec.tiny), seed=recipe.seed)
        from medmo_pipeline.model.loading import load_model

        parameters = sum(p.numel() for p in load_model(tmp).parameters())
        lineage = tracking.lineage_record(
            stage="base_model", parent=None, corpus=None, mixture=None, recipe_name=recipe.name,
            recipe_section=recipe.section("base_model"), recipe_hash=code_version, mlflow_run_id="",
            started=started, metrics={"parameters": parameters},
        )
        lineage["data_version"] = weights_version(tmp)
        write_json_atomic(tmp / "lineage.json", lineage)
    log(f"tiny base model: {parameters} parameters at {output}")
    return output, lineage


def resolve_hub(recipe, code_version: str, started: float) -> tuple[Path, dict]:
    """A hub model must already be in the local Hugging Face cache (no downloads at run time)."""
    from huggingface_hub import snapshot_download

    from medmo_pipeline import tracking

    spec = recipe.base_model
    try:
        path = Path(snapshot_download(spec.name_or_path, revision=spec.revision, local_files_only=True))
    except Exception as exc:  # noqa: BLE001 - the hub client raises several types for "not cached"
        raise RecipeError(
            f"base_model.name_or_path: {spec.name_or_path!r} (revision {spec.revision or 'main'}) is not in "
            f"the local Hugging Face cache ({type(exc).__name__}). Download it once where there is network "
            f"(`hf download {spec.name_or_path}`) and point HF_HOME at that cache, or set name_or_path to a "
            "local directory."
        ) from None
    lineage = tracking.lineage_record(
        stage="base_model", parent=None, corpus=None, mixture=None, recipe_name=recipe.name,
        recipe_section=recipe.section("base_model"), recipe_hash=code_version, mlflow_run_id="",
        started=started, metrics={},
    )
    lineage["data_version"] = f"{spec.name_or_path}@{path.name}"
    return path, lineage


if __name__ == "__main__":
    main()
