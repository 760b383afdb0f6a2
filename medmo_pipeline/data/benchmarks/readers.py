"""Readers of benchmark releases that no training source shares, beside the training adapters.

``reader(family)`` returns a training adapter (``data/adapters``) or one of the readers here; each
has an ``Options`` model and ``iter_samples(root, options)`` yielding sample-contract rows.

- ``mmmu_parquet``: MMMU as the hub ships it (``<Subject>/validation-*.parquet``; columns ``id,
  question, options, answer, question_type, image_1 .. image_7``). ``options`` is a Python-literal
  list; options may themselves be images (``'<image 2>'``). Every non-empty ``image_k`` column is
  kept, in k order, so a question that says ``<image 2>`` has its second image. Multiple-choice
  answers are the option letter; open questions keep their text answer (a list literal: its first).
- ``mimic_cxr_split``: MIMIC-CXR as downloaded (the whole ``files/`` tree with reports beside the
  JPG study folders), restricted to the studies the official split file lists for ``split_name``.
- ``medsg_json``: MedSG-Bench's task JSON (a list of ``{"task", "images": [...], "question",
  "answer": [x1, y1, x2, y2], "size"?: [w, h]}``; ``answer`` in pixels of the released image,
  ``size`` the frame of multi-view answers). The reply is written in MedSG's own form,
  ``<|box_start|>(x1,y1),(x2,y2)<|box_end|>``, on the first image's pixels (``answers.box_scale:
  pixels``), so the one box conversion in ``data.benchmarks.gold`` reads it; ``tasks`` keeps the listed
  sub-tasks (one registry entry per sub-task).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType, SimpleNamespace

from pydantic import Field

from medmo_pipeline.data.adapters import ADAPTERS
from medmo_pipeline.data.adapters.choices import lettered_question, resolve_answer
from medmo_pipeline.data.adapters.common import (
    ImageRecordOptions,
    RecordOptions,
    guarded,
    limited,
    load_image,
    make_row,
    rows_only,
    strip_image_tokens,
    text,
    turn,
)
from medmo_pipeline.data.adapters.records import iter_records
from medmo_pipeline.data.adapters.report import split_table
from medmo_pipeline.data.outcomes import RowError

MMMU_IMAGE_COLUMNS = [f"image_{k}" for k in range(1, 8)]


class MMMUOptions(RecordOptions):
    modality: str = "multi"


# Characters of one MMMU options / answers literal: a few options of a sentence or two each. Python's
# parser holds about 0.5 KB per character of a literal (a 3 MB list took 1.4 GB), so a longer value is
# refused before it is parsed.
MAX_LITERAL = 64 << 10


def _literal_list(value, what: str = "") -> list:
    """MMMU's options / open answers: a Python-literal list in a string (or a list already); a
    literal over ``MAX_LITERAL`` characters raises RowError('malformed_record'), and so does a
    ``what`` (the options) that starts a list and does not parse (its text was read as one option,
    and the row failed as "no gold answer")."""
    if isinstance(value, (list, tuple)):
        return list(value)
    spelled = text(value)
    if len(spelled) > MAX_LITERAL:
        raise RowError("malformed_record", f"a literal list of {len(spelled):,} characters (at most {MAX_LITERAL:,} "
                                           "are parsed)")
    try:
        parsed = ast.literal_eval(spelled)
    except (ValueError, SyntaxError, RecursionError, MemoryError):
        if what and spelled.lstrip().startswith(("[", "(")):
            raise RowError("malformed_record", f"{what} {spelled[:80]!r} is not a Python-literal list") from None
        return [spelled] if spelled else []
    return list(parsed) if isinstance(parsed, (list, tuple)) else [parsed]


# "<image 2>" as MMMU writes it in questions and options (at most two digits: linear in the text)
_IMAGE_PLACEHOLDER = re.compile(r"<image ?(\d{1,2})>")


def _check_image_placeholders(question: str, choices: list[str], present: list[int]) -> None:
    """RowError('malformed_record') where the question or an option names ``<image k>`` and the
    model would not be shown image_k as its k-th image: image_k is empty, or an earlier image_j is
    (the images are passed in order, so ``<image 2>`` would then be another image, or none).

    >>> _check_image_placeholders("<image 1> or <image 2>?", ["<image 3>"], [1, 2, 3])
    >>> _check_image_placeholders("Compare <image 1> and <image 2>", [], [1])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    medmo_pipeline.data.outcomes.RowError: malformed_record: <image 2> is named, but image_2 is empty ...
    """
    named = sorted({int(k) for part in (question, *choices) for k in _IMAGE_PLACEHOLDER.findall(part)})
    for k in named:
        if k not in present or present.index(k) != k - 1:
            given = ", ".join(f"image_{j}" for j in present) or "none"
            said = "is empty" if k not in present else f"would be shown as image {present.index(k) + 1}"
            raise RowError("malformed_record", f"<image {k}> is named, but image_{k} {said} (images given: {given})")


def iter_mmmu(root: Path, options: MMMUOptions | dict) -> Iterator:
    """Rows of MMMU's Parquet; a record that cannot be read (an image path out of the root, say) is
    quarantined by its row, and the load names it."""
    options = MMMUOptions.model_validate(options)

    def convert(index: int, record: dict) -> list[dict]:
        present = [k for k, column in enumerate(MMMU_IMAGE_COLUMNS, 1) if record.get(column) not in (None, "", {})]
        question, answer = text(record.get("question")), text(record.get("answer"))
        choices = [text(option) for option in _literal_list(record.get("options"), "options")]
        _check_image_placeholders(question, choices, present)
        images = [load_image(root, record[f"image_{k}"], options) for k in present]
        if text(record.get("question_type")) == "open" or not choices:
            open_answers = _literal_list(answer) if answer.startswith("[") else [answer]
            choices, answer = [], text(open_answers[0]) if open_answers else ""
        else:
            # the letter MMMU writes, else an option's text ("Heart's apex"); "Cb" or "E" of four options
            # names none, and the row says which answer (it failed as "no gold answer")
            gold = resolve_answer(answer, choices, "letter") or resolve_answer(answer, choices, "text")
            if not gold:
                raise RowError("malformed_record", f"answer {answer[:80]!r} names none of its {len(choices)} options")
            answer, question = gold, lettered_question(question, choices)
        local_id = record.get(options.id_field or "id", index)
        return [make_row(local_id, "vqa", options, turn(question, answer), images=images, choices=choices)]

    yield from guarded(limited(iter_records(root, options.file, options.format), options), options.file, convert)


class MedSGOptions(ImageRecordOptions):
    modality: str = "multi"
    image_field: str = "images"
    id_field: str = "id"
    tasks: list[str] = Field(default_factory=list)  # keep only these values of the record's "task" ([] = all)

def _present_suffix(root: Path, options: MedSGOptions, path: str) -> str:
    """``path`` as written, or else its shortest-dropped tail that exists under the image folder:
    the release writes paths from its own download root (``MedSG-Bench/MedSG-Bench/Task8/x.png``),
    which a copy may or may not keep."""
    from medmo_pipeline.safe_paths import safe_join

    base = safe_join(root, options.image_dir) if options.image_dir else Path(root)
    parts = [part for part in path.replace("\\", "/").split("/") if part]  # an absolute path's tail too
    for start in range(len(parts)):
        candidate = "/".join(parts[start:])
        if candidate and (base / candidate).is_file():
            return candidate
    return path


def _is_number(value) -> bool:
    """A JSON number, or a string of one ("157")."""
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            return False
        return True
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def medsg_reply(box: list[float]) -> str:
    """A box in MedSG's own reply form."""
    x1, y1, x2, y2 = (round(float(v), 2) for v in box)
    return f"<|box_start|>({x1:g},{y1:g}),({x2:g},{y2:g})<|box_end|>"


def iter_medsg(root: Path, options: MedSGOptions | dict) -> Iterator:
    """Rows of MedSG-Bench task JSON; records of other sub-tasks counted as filtered; a record that
    cannot be read (not an object, a path out of the root, a malformed answer) quarantined by row."""
    from medmo_pipeline.data.outcomes import RowError, RowFiltered

    options = MedSGOptions.model_validate(options)

    def convert(index: int, record: dict) -> list:
        if not isinstance(record, dict):
            raise RowError("malformed_record", f"a record is {type(record).__name__}, not an object")
        if options.tasks and text(record.get("task")) not in options.tasks:
            return [RowFiltered("other_subtask", text(record.get("task")))]
        listed = record.get(options.image_field) or []
        listed = [listed] if isinstance(listed, str) else listed  # one path: not a list of its characters
        paths = [_present_suffix(root, options, text(p)) for p in listed]
        images = [load_image(root, path, options) for path in paths]
        answer = record.get("answer")
        if not isinstance(answer, (list, tuple)) or not all(_is_number(v) for v in answer):
            raise RowError("malformed_record", f"answer {str(answer)[:80]!r} is not a list of numbers [x1, y1, x2, y2]")
        box = [float(v) for v in answer]
        size = record.get("size")
        if size is not None and not (isinstance(size, (list, tuple)) and len(size) == 2
                                     and all(_is_number(v) and float(v) > 0 for v in size)):
            # it failed as a ZeroDivisionError, or read "400x300" as 4 x 0
            raise RowError("malformed_record", f"size {str(size)[:80]!r} is not [width, height] in pixels")
        if len(box) == 4 and size and images and images[0]["width"] > 0:
            # Answers of multi-view questions are in the `size` frame; scoring reads the first image's.
            sx, sy = images[0]["width"] / float(size[0]), images[0]["height"] / float(size[1])
            box = [box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy]
        reply = medsg_reply(box) if len(box) == 4 else str(answer)  # not four numbers: for the gold check to name
        question = strip_image_tokens(text(record.get("question")))
        # records carry no id: task, file and place (each task's records are spread over several files)
        local_id = record.get(options.id_field) or f"{text(record.get('task'))}/{Path(options.file).stem}/{index}"
        return [make_row(local_id, "grounding", options, turn(question, reply), images=images)]

    yield from guarded(limited(iter_records(root, options.file, options.format), options), options.file, convert)


class MimicSplitOptions(RecordOptions):
    modality: str = "xray"
    image_dir: str = "files"
    split_name: str = "test"
    image_suffixes: list[str] = Field(default_factory=lambda: [".jpg"])


def iter_mimic_split(root: Path, options: MimicSplitOptions | dict) -> Iterator:
    """MIMIC-CXR as PhysioNet ships it: the studies that ``mimic-cxr-2.0.0-split.csv(.gz)`` (one row
    per image: dicom_id, study_id, subject_id, split) puts in ``split_name``, each read by the report
    adapter from its own path ``files/pXX/pSUBJECT/sSTUDY.txt`` (no walk of the whole tree); a listed
    study whose report is missing yields a quarantine record naming it."""
    from medmo_pipeline.data.adapters import report
    from medmo_pipeline.data.outcomes import RowFiltered, RowQuarantined
    from medmo_pipeline.safe_paths import safe_join

    options = MimicSplitOptions.model_validate(options)
    studies, others = {}, set()
    for index, record in enumerate(split_table(safe_join(root, options.file))):
        key = (text(record.get("subject_id")), text(record.get("study_id")))
        if text(record.get("split")) == options.split_name:
            studies.setdefault(key, index)
        else:
            others.add(key)
    if others - set(studies):
        yield RowFiltered("split", f"studies outside the {options.split_name} split", rows=len(others - set(studies)))
    base = safe_join(root, options.image_dir)
    for _, ((subject, study), index) in limited(iter(studies.items()), options):
        if not (subject.isascii() and subject.isdigit() and study.isascii() and study.isdigit()):
            yield RowQuarantined("malformed_record", f"subject_id {subject[:20]!r} / study_id {study[:20]!r} are not "
                                 "MIMIC ids (numbers)", options.file, f"row {index + 2}")
            continue
        relative = f"p{subject[:2]}/p{subject}/s{study}.txt"
        if not (base / relative).is_file():
            yield RowQuarantined("unreadable_file", f"report {options.image_dir}/{relative} of a {options.split_name} "
                                 f"study is missing", options.file, f"row {index + 2}", f"s{study}")
            continue
        yield from report.iter_outcomes(root, {
            "layout": "study_folders", "image_dir": options.image_dir, "reports_glob": relative,
            "image_suffixes": options.image_suffixes, "modality": options.modality, "split": options.split})


READERS: dict[str, SimpleNamespace] = {
    "mimic_cxr_split": SimpleNamespace(Options=MimicSplitOptions, iter_outcomes=iter_mimic_split,
                                       iter_samples=iter_mimic_split),
    "mmmu_parquet": SimpleNamespace(Options=MMMUOptions, iter_outcomes=iter_mmmu, iter_samples=rows_only(iter_mmmu)),
    "medsg_json": SimpleNamespace(Options=MedSGOptions, iter_outcomes=iter_medsg, iter_samples=iter_medsg),
}


def items(family: str, root: Path, options: dict, where: dict[str, list[str]] | None = None) -> Iterator:
    """Rows and record outcomes of ``family`` on ``root`` (``iter_outcomes`` where it has one).

    ``where`` keeps only the records whose fields hold one of the listed values (SuperGPQA's
    ``discipline: [Medicine]``): the others are counted as filtered ("subset"), and the reader runs on
    a filtered copy of the record file in a scratch folder, so it serves text-only benchmarks."""
    module = reader(family)
    run = module.iter_outcomes if hasattr(module, "iter_outcomes") else module.iter_samples
    if not where:
        yield from run(root, options)
        return
    import json
    import tempfile

    from medmo_pipeline.data.outcomes import RowFiltered

    kept, others = [], 0
    for record in iter_records(root, options["file"], options.get("format", "auto")):
        if isinstance(record, dict) and all(text(record.get(field)) in values for field, values in where.items()):
            kept.append(record)
        else:
            others += 1
    if others:
        yield RowFiltered("subset", f"records outside {where}", rows=others)
    with tempfile.TemporaryDirectory(prefix="medmo-benchmark-") as scratch:
        copy = Path(scratch) / "records.jsonl"
        copy.write_text("".join(json.dumps(record, default=str) + "\n" for record in kept), encoding="utf-8")
        yield from run(Path(scratch), {**options, "file": copy.name, "format": "jsonl"})


def reader(family: str) -> ModuleType | SimpleNamespace:
    """The training adapter or benchmark reader named ``family``."""
    if family in READERS:
        return READERS[family]
    if family in ADAPTERS:
        return ADAPTERS[family]
    raise ValueError(f"unknown adapter family {family!r}; known: {sorted(set(ADAPTERS) | set(READERS))}")
