"""The benchmark registry (``recipes/benchmarks.yaml``): every benchmark the paper reports, validated.

Each entry says what a benchmark measures (group, tasks, answer types, metric names), where its
files come from (hub id + split + pinned revision, or a local download with instructions), its
credentials, which training adapters read it (the same families and options as
``data/registry.py``: one set of parsers), and the paper's reported numbers.

``resolve_benchmark_dir`` checks a benchmark's directory and credentials, raising
``BenchmarkUnavailable`` naming the benchmark and what to do.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from medmo_pipeline.data.registry import SourceUnavailable
from medmo_pipeline.schema.rows import TaskName
from medmo_pipeline.yaml_registry import (
    SHIPPED_DIR,
    Credentials,
    check_credentials,
    check_readable_dir,
    check_unique,
    entry_named,
    hub_download_command,
    load_strict,
)
from medmo_pipeline.yaml_registry import Strict as _Strict

REGISTRY_PATH = SHIPPED_DIR / "benchmarks.yaml"

# Metric names ``evaluation.scoring.score_rows`` emits (the rows' tasks decide which).
SCORED_METRICS = frozenset({
    "accuracy", "closed_vqa_accuracy", "open_vqa_exact_match", "open_vqa_token_f1", "mcq_accuracy",
    "caption_rouge_l", "report_rouge_l", "instruction_rouge_l", "caption_cider", "report_cider",
    "grounding_mean_iou", "grounding_acc_iou30", "grounding_acc_iou50", "grounding_acc_iou70",
    "grounding_first_box_mean_iou", "grounding_const_box_mean_iou",
})
# Model- or API-based plug-ins (``evaluation.metrics.plugins``): computed by
# ``evaluation.scoring.score_plugins`` when the plug-in is configured; otherwise the evaluation
# table keeps the declared metric as a row with no value and the reason in its note.
PENDING_METRICS = frozenset({
    "report_ratescore", "report_sembscore", "caption_ratescore", "caption_sembscore", "open_vqa_llm_judge",
})
METRICS = SCORED_METRICS | PENDING_METRICS

Group = Literal["vqa", "text_qa", "report", "grounding", "synthetic"]
AnswerType = Literal["closed", "open", "multiple_choice", "free_text", "boxes"]
PaperColumn = Literal["accuracy", "rouge_l", "cider", "ratescore", "sembscore", "iou"]
ANSWER_TYPES_BY_TASK: dict[str, set[str]] = {
    "vqa": {"closed", "open", "multiple_choice"}, "text_qa": {"multiple_choice", "open"},
    "report": {"free_text"}, "caption": {"free_text"}, "instruction": {"free_text"}, "grounding": {"boxes"},
}


class RegistryError(ValueError):
    """A benchmark registry that cannot be used; the message names the benchmark and the field."""


class BenchmarkUnavailable(SourceUnavailable):
    """A benchmark whose files or credentials are missing; the message says what to do."""


class BenchmarkOrigin(_Strict):
    kind: Literal["hub", "local", "synthetic"]
    hub_id: str | None = None
    split: str | None = Field(None, description="the split (or file) of the release that is evaluated")
    revision: str | None = Field(None, description="pinned hub commit; null = not known / not pinned yet")
    instructions: str = ""

    @model_validator(mode="after")
    def _complete(self) -> BenchmarkOrigin:
        if self.kind == "hub" and not (self.hub_id and self.split):
            raise ValueError("origin kind 'hub' needs hub_id and split")
        if self.kind == "local" and not self.instructions:
            raise ValueError("origin kind 'local' needs instructions (how to obtain the data)")
        return self

    def how_to_get(self, directory: Path) -> str:
        if self.kind == "hub":
            command = hub_download_command(self.hub_id, self.revision, directory)
            return f"{command} (split {self.split}){'; then ' + self.instructions if self.instructions else ''}"
        return self.instructions


class BenchmarkLoader(_Strict):
    """One reader + options; ``subset`` names it when a benchmark has several.

    ``family`` is a training adapter family (``data/adapters``) or a benchmark reader of
    ``data.benchmarks.readers`` (release formats no training source uses). ``layouts`` are alternative
    option sets for other published layouts of the same files, tried in order when the main
    ``file`` pattern matches nothing (a layout may name another ``family``). ``record_filter`` keeps only records whose field has one of
    the listed values (MedSG's ``task`` column: one benchmark entry per sub-task).
    """

    subset: str = ""
    family: str
    options: dict[str, Any] = Field(default_factory=dict)
    layouts: list[dict[str, Any]] = Field(default_factory=list)
    where: dict[str, list[str]] = Field(default_factory=dict)  # keep records whose field has one of these values

    @model_validator(mode="after")
    def _known_family_and_options(self) -> BenchmarkLoader:
        from medmo_pipeline.data.benchmarks.readers import reader

        for family, options in self.option_sets():
            reader(family).Options.model_validate(options)  # errors name the family or the option
        return self

    def option_sets(self) -> list[tuple[str, dict[str, Any]]]:
        """(family, options) of the main layout, then of each alternative: overrides on top of the main
        options, or, for a layout naming its own ``family``, that reader with only its own options."""
        sets = [(self.family, dict(self.options))]
        for layout in self.layouts:
            if "family" in layout:
                sets.append((layout["family"], {k: v for k, v in layout.items() if k != "family"}))
            else:
                sets.append((self.family, {**self.options, **layout}))
        return sets


class AnswerRules(_Strict):
    types: list[AnswerType] = Field(min_length=1)
    closed_when: Literal["yes_no_answer"] | None = None  # scoring's rule: gold answer yes/no = closed
    mcq_gold: Literal["option_letter"] | None = None  # adapters turn index/text answers into the letter
    # Scale of the boxes in a benchmark's gold replies, read by ``data.benchmarks.gold`` where a row has no
    # pixel boxes of its own: relative_1000 = Qwen3-VL's 0-1000 scale, pixels = the original image's
    # pixels. Scoring is always on the original image's pixels.
    box_scale: Literal["relative_1000", "pixels"] | None = None

    @model_validator(mode="after")
    def _rules_for_types(self) -> AnswerRules:
        for answer_type, rule, value in (("closed", "closed_when", self.closed_when),
                                         ("multiple_choice", "mcq_gold", self.mcq_gold),
                                         ("boxes", "box_scale", self.box_scale)):
            if (answer_type in self.types) != (value is not None):
                raise ValueError(f"{rule} is required with answer type {answer_type!r} and only then")
        return self


class Reported(_Strict):
    """The paper's numbers for one column, one per model; null where the paper does not give it.

    Tables 1-2 of the paper (accuracy %, ROUGE-L, CIDEr, RaTEScore, SembScore) and, for grounding,
    the IoU % its text gives; ``tests/data/paper_tables.tsv`` keeps a copy of those tables and a
    test checks every number here against it.
    """

    medmo_8b: float | None = None
    medmo_4b: float | None = None
    qwen3_vl_8b: float | None = None
    fleming_vl_8b: float | None = None
    lingshu_7b: float | None = None
    medmo_8b_before_rl: float | None = None  # grounding, before the RL stage


# Display names of the reported models, in the order tables show them.
REPORTED_MODELS = {"medmo_8b": "MedMO-8B", "medmo_4b": "MedMO-4B", "qwen3_vl_8b": "Qwen3VL-8B",
                   "fleming_vl_8b": "Fleming-VL-8B", "lingshu_7b": "Lingshu-7B",
                   "medmo_8b_before_rl": "MedMO-8B before RL"}


class Exclusion(_Strict):
    """Rows the benchmark's own evaluation protocol leaves out, filtered and counted by reason."""

    reason: Literal["empty_reference"]
    note: str = ""


class Benchmark(_Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    title: str
    group: Group
    tasks: list[TaskName] = Field(min_length=1)
    modality: str
    origin: BenchmarkOrigin
    licence: str
    credentials_required: bool
    credentials: Credentials | None = None
    loaders: list[BenchmarkLoader]
    answers: AnswerRules
    metrics: list[str] = Field(min_length=1)
    reported: dict[PaperColumn, Reported]
    directory: str = Field("", description="folder under the benchmarks root; default the name (MedSG's "
                           "sub-tasks share one copy)")
    layout_source: str = Field("", description="where the release layout the loaders read was verified")
    expected_rows: int | None = Field(None, gt=0, description="rows of the full release, as documented; "
                                      "a complete copy loading fewer fails")
    exclude: list[Exclusion] = Field(default_factory=list)
    paper_average: Literal["vqa", "text_qa"] | None = None  # the Table 1 "Avg." column it counts in
    notes: str = ""

    @model_validator(mode="after")
    def _consistent(self) -> Benchmark:
        if self.credentials_required != (self.credentials is not None):
            raise ValueError("credentials_required and credentials must agree (say which credentials)")
        if (self.origin.kind == "synthetic") == bool(self.loaders):
            raise ValueError("a file benchmark needs loaders; a synthetic one has none")
        unknown = [m for m in self.metrics if m not in METRICS]
        if unknown:
            raise ValueError(f"unknown metrics {unknown}; known: {sorted(METRICS)}")
        allowed = set().union(*(ANSWER_TYPES_BY_TASK[task] for task in self.tasks))
        stray = [t for t in self.answers.types if t not in allowed]
        if stray:
            raise ValueError(f"answer types {stray} do not fit tasks {self.tasks}")
        if any(loader.where for loader in self.loaders) and self.modality != "text":
            raise ValueError("loaders[].where reads a filtered copy of the record file: text-only benchmarks only")
        if self.origin.kind != "synthetic" and not self.layout_source:
            raise ValueError("a file benchmark needs layout_source (where its release layout was verified)")
        subsets = [loader.subset for loader in self.loaders]
        if len(set(subsets)) != len(subsets):
            raise ValueError("loaders of one benchmark need distinct subset names")
        return self


class BenchmarkRegistry(_Strict):
    version: int
    reported_averages: dict[Literal["vqa", "text_qa"], Reported]  # Table 1's "Avg." columns
    benchmarks: list[Benchmark]

    @model_validator(mode="after")
    def _unique(self) -> BenchmarkRegistry:
        check_unique(self.names(), "benchmark")
        return self

    def names(self) -> list[str]:
        return [b.name for b in self.benchmarks]

    def paper_benchmarks(self) -> list[str]:
        """Every benchmark of the paper (all file benchmarks), in registry order."""
        return [b.name for b in self.benchmarks if b.origin.kind != "synthetic"]

    def average_members(self, group: str) -> list[str]:
        """The benchmarks a Table 1 "Avg." column is the plain mean of."""
        return [b.name for b in self.benchmarks if b.paper_average == group]

    def get(self, name: str) -> Benchmark:
        return entry_named(self.benchmarks, name, "benchmark")

    def reported_rows(self) -> list[dict]:
        """The paper's numbers as long rows (benchmark, column, model, value), nulls left out."""
        rows = []
        for benchmark in self.benchmarks:
            for column, numbers in benchmark.reported.items():
                for model, value in numbers.model_dump().items():
                    if value is not None:
                        rows.append({"benchmark": benchmark.name, "group": benchmark.group, "column": column,
                                     "model": model, "value": value})
        return rows


def load_registry(path: Path = REGISTRY_PATH) -> BenchmarkRegistry:
    """Load and validate the benchmark registry; errors name the file, the benchmark and the field."""
    return load_strict(path, BenchmarkRegistry, RegistryError, what="the benchmark registry", entries="benchmarks",
                       entry="benchmark")


def resolve_benchmark_dir(benchmark: Benchmark, directory: Path) -> Path:
    """``directory`` checked to exist and be readable, with the benchmark's credentials set."""
    check_credentials(f"benchmark {benchmark.name!r}", benchmark.credentials, BenchmarkUnavailable)
    directory = Path(directory)
    return check_readable_dir(f"benchmark {benchmark.name!r}", directory, benchmark.origin.how_to_get(directory),
                              BenchmarkUnavailable, elsewhere="pass another root")

