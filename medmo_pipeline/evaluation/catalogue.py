"""The benchmark list of ``docs/benchmarks.md``, written from the registry so the two never drift.

    python -m medmo_pipeline.evaluation.catalogue   # rewrites the list below the marker line
"""

from __future__ import annotations

from pathlib import Path

from medmo_pipeline.data.benchmarks.registry import BenchmarkRegistry, load_registry

MARKER = "<!-- generated from recipes/benchmarks.yaml by python -m medmo_pipeline.evaluation.catalogue -->"
DOC = Path(__file__).resolve().parents[2] / "docs" / "benchmarks.md"


def catalogue(registry: BenchmarkRegistry) -> str:
    """Per benchmark: its directory, documented size, how to get it, credentials, layout source,
    exclusions and notes, in registry order."""
    lines = []
    for benchmark in registry.benchmarks:
        if benchmark.origin.kind == "synthetic":
            continue
        directory = benchmark.directory or benchmark.name
        size = f"; documented size: {benchmark.expected_rows} rows" if benchmark.expected_rows else ""
        lines += [f"### `{benchmark.name}`: {benchmark.title}", "",
                  f"- directory: `<root>/{directory}`{size}",
                  f"- get it: {benchmark.origin.how_to_get(Path('<root>') / directory)}"]
        if benchmark.credentials:
            lines.append(f"- credentials: {benchmark.credentials.instructions}")
        lines.append(f"- layout verified against: {benchmark.layout_source}")
        lines += [f"- excluded and counted: {rule.reason} ({rule.note})" for rule in benchmark.exclude]
        if benchmark.notes:
            lines.append(f"- notes: {benchmark.notes}")
        lines.append("")
    return "\n".join(lines)


def document(text: str, registry: BenchmarkRegistry) -> str:
    """``text`` (the doc) with everything after the marker line replaced by the catalogue."""
    head = text.split(MARKER)[0]
    return f"{head}{MARKER}\n\n{catalogue(registry)}"


if __name__ == "__main__":
    DOC.write_text(document(DOC.read_text(encoding="utf-8"), load_registry()), encoding="utf-8")
