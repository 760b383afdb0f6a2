"""Corpus job: curate and shard the recipe's corpus; report the corpus index and its version.

    python -m medmo_pipeline.data.build --recipe embedded
"""

from __future__ import annotations

import time

from medmo_pipeline import home
from medmo_pipeline.config import RecipeError
from medmo_pipeline.jobs import checked_recipe, job_parser


def main(argv: list[str] | None = None) -> None:
    parser = job_parser(__doc__.splitlines()[0])
    args = parser.parse_args(argv)
    recipe, code_version = checked_recipe(args, "corpus")
    if recipe.corpus.kind != "synthetic":
        raise RecipeError(
            "corpus.kind: 'registry' curation of the real datasets is not available in this version; "
            "use the embedded default's synthetic corpus"
        )

    from medmo_pipeline.data.corpus import build_synthetic_corpus
    from medmo_pipeline.jobs import Md, job_reporter

    with job_reporter() as reporter:
        started = time.time()
        index = build_synthetic_corpus(recipe.corpus, home.corpus_dir(), seed=recipe.seed, log=reporter.log)
        table = "| source | rows | train | eval | shards | data version |\n|---|---|---|---|---|---|\n" + "\n".join(
            f"| {name} | {info['rows']} | {info['splits'].get('train', '')} | {info['splits'].get('eval', '')} "
            f"| {info['shards']} | `{info['data_version'][:12]}` |"
            for name, info in index["sources"].items()
        )
        reporter.report(
            {
                "index_path": __import__("pathlib").Path(index["index_path"]),
                "rows": sum(info["rows"] for info in index["sources"].values()),
                "sources": Md(table),
                "recipe_hash": code_version,
                "wall_seconds": round(time.time() - started, 2),
            },
            data_version=index["data_version"],
        )


if __name__ == "__main__":
    main()
