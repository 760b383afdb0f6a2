"""Builders of small datasets in each source's real on-disk format, for the adapter tests.

``build_fixture(family, root, options)`` writes a dataset that adapter ``family`` configured with
``options`` (the registry's, or a test's) reads, and returns how many rows it should yield. File and
field names come from the options, so a registry entry's fixture has that dataset's layout.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from PIL import Image
from pydicom.data import get_testdata_files

from medmo_pipeline.data.adapters import adapter


def png_bytes(width: int = 64, height: int = 48, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 255, size=(height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def jpeg_bytes(width: int = 64, height: int = 48, seed: int = 0) -> bytes:
    buffer = io.BytesIO()
    Image.open(io.BytesIO(png_bytes(width, height, seed))).save(buffer, format="JPEG")
    return buffer.getvalue()


def png16_bytes(values: np.ndarray) -> bytes:
    """A 16-bit grayscale PNG of uint16 ``values``."""
    buffer = io.BytesIO()
    Image.fromarray(values.astype(np.uint16)).save(buffer, format="PNG")
    return buffer.getvalue()


def write_file(root: Path, relative: str, data: bytes | str) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def concrete(name: str) -> str:
    """A file name for a glob option ('data/*.parquet' -> 'data/fixture.parquet')."""
    return name.replace("*", "fixture")


def write_records(root: Path, file: str, records: list[dict]) -> None:
    path = root / concrete(file)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    if suffix == ".json":
        path.write_text(json.dumps(records))
    elif suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
    elif suffix in (".csv", ".tsv"):
        # As exported by Excel/pandas on Windows: a byte-order mark, CRLF line ends, a header name
        # with a trailing space, fields holding the delimiter or newlines quoted.
        fields = list(dict.fromkeys(k for r in records for k in r))
        with open(path, "w", newline="", encoding="utf-8-sig") as handle:
            delimiter = "\t" if suffix == ".tsv" else ","
            csv.writer(handle, delimiter=delimiter).writerow([*fields[:-1], fields[-1] + " "])
            writer = csv.DictWriter(handle, fields, delimiter=delimiter)
            writer.writerows({k: (json.dumps(v) if isinstance(v, (dict, list)) else v) for k, v in r.items()}
                             for r in records)
    elif suffix == ".parquet":
        pq.write_table(pa.Table.from_pylist(records), path)
    else:
        raise ValueError(f"no record writer for {file}")


def image_value(root: Path, options, name: str, seed: int, *, embedded: bool):
    """An image reference as the dataset stores it: a struct in hub Parquet, else a file path."""
    data = png_bytes(seed=seed)
    if embedded:
        return {"bytes": data, "path": name}
    write_file(root, f"{options.image_dir}/{name}" if options.image_dir else name, data)
    return name


def _parquet(options) -> bool:
    return concrete(options.file).endswith(".parquet")


# ---- record families ----------------------------------------------------------------------------

def build_caption(root: Path, options) -> int:
    if options.columns:  # a header-less text table whose first column names the image (ROCO's captions.txt)
        lines = []
        for i in range(3):
            write_file(root, f"{options.image_dir}/ROCO_{i:05d}{options.image_suffix}", jpeg_bytes(seed=i))
            lines.append(f"ROCO_{i:05d}\t Axial CT, \"contrast-enhanced\", showing finding number {i}.\n")
        write_file(root, options.file, "".join(lines))
        return 3
    if options.image_lookup == "tree":  # MedTrinity-25M's full release: bare file names, images unpacked deep
        from medmo_pipeline.data.adapters.common import other_part

        names = [name for name in (f"8031efe0-1b5c-11ef-8929-{i:012d}.jpg" for i in range(50))
                 if not other_part(name, options)][:3]
        records = []
        for i, name in enumerate(names):
            write_file(root, f"{options.image_dir}/shard_{i}/mnt/data/medtrinity/{i}/images/{name}", jpeg_bytes(seed=i))
            records.append({options.image_field: name, options.caption_field: f"A CT scan of the chest, finding {i}.",
                            **({options.source_field: "nih_chest"} if options.source_field else {})})
        write_records(root, options.file, records)
        return 3
    records = [{options.image_field: image_value(root, options, f"cap{i}.png", i, embedded=_parquet(options)),
                options.caption_field: f"Axial CT, contrast-enhanced,\nshowing finding number {i}."} for i in range(3)]
    if options.id_field and options.id_field != options.image_field:  # FairVLMed: the file name is the id
        for i, record in enumerate(records):
            record[options.id_field] = f"c{i}"
    write_records(root, options.file, records)
    return 3


def build_vqa(root: Path, options) -> int:
    records = []
    for i in range(4):
        if options.image_suffix:  # names stored without their extension
            write_file(root, f"{options.image_dir}/vqa{i}{options.image_suffix}", jpeg_bytes(seed=i))
            image = f"vqa{i}"
        else:
            image = image_value(root, options, f"vqa{i}.png", i, embedded=_parquet(options))
        record = {options.image_field: image,
                  options.question_field: f"Is there an abnormality in region {i}? ",
                  options.answer_field: "Yes " if i % 2 else "Left lung"}  # mixed case, trailing space
        if options.answer_type_field:
            record[options.answer_type_field] = "CLOSED" if i % 2 else "OPEN"
        if options.option_fields:  # PMC-VQA writes each option's letter into it: "A:Diffuse uptake"
            for j, field in enumerate(options.option_fields):
                record[field] = f"{'ABCD'[j]}:option {j} of {i}, with a comma"
            record[options.answer_field] = {"letter": "B", "auto": "B", "index": "1", "text": f"option 1 of {i}"}[
                options.answer_format]
        if options.id_field:
            record[options.id_field] = f"q{i}"
        if options.language_field:
            record[options.language_field] = options.language
        records.append(record)
    expected = len(records)
    if options.language_field:  # one record in another language, filtered out
        other = "en" if options.language == "zh" else "zh"
        records.append({**records[0], options.language_field: other, options.question_field: "哪个器官不正常？"})
    if options.delimiter_fields:
        lines = [f"{r[options.image_field]}|{r[options.question_field]}|{r[options.answer_field]}" for r in records]
        write_file(root, options.file, "\n".join(lines) + "\n")
    else:
        write_records(root, options.file, records)
    return expected


def build_llava_json(root: Path, options) -> int:
    records = []
    for i in range(3):
        images = [options.image_strip_prefix + image_value(root, options, f"conv{i}_{k}.png", 10 * i + k, embedded=False)
                  for k in range(1 + i % 2)]  # the release's leading folder, where it writes one (MedSG)
        box = "<|box_start|>(1,2),(10,12)<|box_end|>" if options.reply_box_scale == "pixels" else \
            "<box>[[10, 20, 300, 400]]</box>"
        records.append({options.id_field: f"conv{i}", options.image_field: images if len(images) > 1 else images[0],
                        options.conversations_field: [
                            {"from": "human", "value": "<image>\n" * len(images) + "What is shown?"},
                            {"from": "gpt", "value": f"A lesion {box} {i}"},
                            {"from": "human", "value": "Which organ?"},
                            {"from": "gpt", "value": "The liver."}]})
    write_records(root, options.file, records)
    return 3


def build_multiple_choice(root: Path, options) -> int:
    records = []
    for i in range(3):
        texts = ["Aspirin", "Heparin", "Warfarin", "Insulin"]
        record = {options.question_field: f"Which drug treats case {i}?"}
        if options.fixed_choices:
            texts = list(options.fixed_choices)
        elif options.option_fields:
            record.update(dict(zip(options.option_fields, texts, strict=False)))
            texts = texts[: len(options.option_fields)]
        else:
            record[options.options_field] = {"ABCD"[j]: t for j, t in enumerate(texts)}
        gold = i % len(texts)
        record[options.answer_field] = {"letter": "ABCD"[gold], "index": str(gold + options.index_base),
                                        "text": texts[gold]}[options.answer_format]
        if options.context_field:
            record[options.context_field] = {"contexts": ["Background sentence.", f"Result {i}."]}
        if options.id_field:
            record[options.id_field] = 1000 + i
        records.append(record)
    write_records(root, options.file, records)
    return 3


def build_text_instruction(root: Path, options) -> int:
    records = []
    for i in range(3):
        record = {options.output_field: f"Answer {i}: rest and fluids."}
        if not options.instruction:
            record[options.instruction_field] = f"Patient question {i}: what should I do for a cold?"
        if options.input_field:
            record[options.input_field] = f"Context {i}"
        if options.reasoning_field:
            record[options.reasoning_field] = f"Step by step reasoning {i}."
        if options.id_field:
            record[options.id_field] = f"n{i}"
        records.append(record)
    write_records(root, options.file, records)
    return 3


def build_report(root: Path, options) -> int:
    if options.layout == "study_folders":
        base = f"{options.image_dir}/p10/p10000032" if options.image_dir else "p10/p10000032"
        reports = [f"WET READ: none\n FINDINGS: Lungs are clear {s}.\n IMPRESSION: No acute process {s}.\n"
                   for s in range(2)]
        # About 10k real reports have one combined section; PhysioNet's files are LF, copies may be CRLF.
        reports.append("                                 FINAL REPORT\r\n EXAMINATION:  CHEST (PA AND LAT)\r\n \r\n"
                       " FINDINGS AND IMPRESSION:  Heart size is normal.  No pneumothorax.\r\n")
        for s, report in enumerate(reports):
            write_file(root, f"{base}/s5000000{s}.txt", report)
            write_file(root, f"{base}/s5000000{s}/view1.dcm", Path(get_testdata_files("CT_small.dcm")[0]).read_bytes())
            write_file(root, f"{base}/s5000000{s}/view2.jpg", jpeg_bytes(seed=s))
        if options.split_file:  # MIMIC-CXR-JPG's split table beside files/, every study in train
            write_mimic_split(root, image_dir=options.image_dir, file=options.split_file)
        return len(reports)
    records = []
    for i in range(3):
        record = {options.findings_field: f"Heart size normal {i}.", options.impression_field: f"No acute disease {i}."}
        key = options.join_key or options.id_field
        if key:
            record[key] = f"{i}"
        if not options.images_file:
            record[options.image_field] = image_value(root, options, f"rep{i}.png", i, embedded=False)
        records.append({**record, **{field: values[0] for field, values in options.keep_where.items()}})
    write_records(root, options.file, records)
    if options.images_file:
        projections = [{options.join_key: f"{i}", options.image_field: image_value(
            root, options, f"rep{i}_{view}.png", 10 * i + k, embedded=False), "projection": view}
            for i in range(3) for k, view in enumerate(("Frontal", "Lateral"))]
        write_records(root, options.images_file, projections)
    return 3


MIMIC_SPLIT_FILE = "mimic-cxr-2.0.0-split.csv.gz"
MIMIC_SPLIT_HEADER = ("dicom_id", "study_id", "subject_id", "split")  # as mimic-cxr-jpg 2.1.0 ships it


def write_mimic_split(root: Path, splits: dict[str, str] | None = None, *, image_dir: str = "files",
                      file: str = MIMIC_SPLIT_FILE, extra_lines: tuple[str, ...] = ()) -> Path:
    """MIMIC-CXR-JPG's split table (gzipped CSV, one row per image: ``dicom_id, study_id,
    subject_id, split``) for every study under ``root/image_dir`` (``pXX/pSUBJECT/sSTUDY.txt``,
    linked patient folders too), written anew: a study's split is ``splits[study name]``
    (``"s50000001"``), else ``train``; a study without images gets one row of its own. A name in
    ``splits`` mapped to None is left out of the table; ``extra_lines`` are appended as written."""
    import gzip

    splits = splits or {}
    base = root / image_dir if image_dir else root
    lines = [",".join(MIMIC_SPLIT_HEADER)]
    for report in sorted(base.glob("p*/p*/s*.txt")):
        study, subject = report.stem, report.parent.name
        if (split := splits.get(study, "train")) is None:
            continue
        folder = report.with_suffix("")
        images = sorted(p.stem for p in folder.iterdir()) if folder.is_dir() else [f"{study}-none"]
        lines += [f"{dicom},{study[1:]},{subject[1:]},{split}" for dicom in images]
    path = root / file
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "\n".join([*lines, *extra_lines]) + "\n"
    path.write_bytes(gzip.compress(text.encode()) if file.endswith(".gz") else text.encode())
    return path


# ---- detection families -------------------------------------------------------------------------

def build_coco(root: Path, options) -> int:
    images = [{"id": i, "file_name": f"coco{i}.png", "width": 64, "height": 48} for i in range(2)]
    for image in images:
        write_file(root, f"{options.image_dir}/{image['file_name']}" if options.image_dir else image["file_name"],
                   png_bytes(seed=image["id"]))
    annotations = [
        {"id": 1, "image_id": 0, "category_id": 1, "bbox": [4, 6, 20, 10], "iscrowd": 0},
        {"id": 2, "image_id": 0, "category_id": 2, "bbox": [30, 20, 10, 10], "iscrowd": 0},
        {"id": 3, "image_id": 1, "category_id": 1, "bbox": [1, 1, 8, 8], "iscrowd": 0},
        {"id": 4, "image_id": 1, "category_id": 1, "bbox": [0, 0, 64, 48], "iscrowd": 1},
    ]
    write_file(root, options.file, json.dumps({"images": images, "annotations": annotations,
                                               "categories": [{"id": 1, "name": "nodule"}, {"id": 2, "name": "mass"}]}))
    return 3  # image 0: nodule + mass; image 1: nodule (the crowd box skipped)


def build_nih_bbox_csv(root: Path, options) -> int:
    blank = io.BytesIO()
    Image.fromarray(np.zeros((1024, 1024), dtype=np.uint8)).save(blank, format="PNG")
    lines = ["Image Index,Finding Label,Bbox [x,y,w,h],,,",
             "00013118_008.png,Atelectasis,225.084745762712,547.019216763771,86.7796610169491,79.1864406779661",
             "00014716_007.png,Atelectasis,686.101694915254,131.543498411097,185.491525423729,313.491525423729",
             "00014716_007.png,Nodule,100,100,50,40"]
    if options.keep_ids_file:  # the release's test_list.txt: a box of a training image is left out
        write_file(root, options.keep_ids_file, "00013118_008.png\n00014716_007.png\n")
        lines.append("00000032_037.png,Mass,300,300,60,60")
    write_file(root, options.file, "\n".join(lines) + "\n")
    for name in ("00013118_008.png", "00014716_007.png"):
        write_file(root, f"{options.image_dir}/{name}", blank.getvalue())
    return 3


DL_COLUMNS = ["File_name", "Patient_index", "Study_index", "Series_ID", "Key_slice_index",
              "Measurement_coordinates", "Bounding_boxes", "Lesion_diameters_Pixel_", "Normalized_lesion_location",
              "Coarse_lesion_type", "Possibly_noisy", "Slice_range", "Spacing_mm_px_", "Image_size",
              "DICOM_windows", "Patient_gender", "Patient_age", "Train_Val_Test"]


def build_deeplesion_csv(root: Path, options, *, image_size: int = 64, csv_size: int = 64) -> int:
    hu = np.full((image_size, image_size), -1000, dtype=np.int32)
    hu[16:40, 16:40] = 60  # soft-tissue lesion
    write_file(root, f"{options.image_dir}/000001_01_01/103.png", png16_bytes(hu + 32768))
    write_file(root, f"{options.image_dir}/000002_02_01/015.png", png16_bytes(hu + 32768))
    rows = [
        ["000001_01_01_103.png", 1, 1, 1, 103, "", "16.5, 16.5, 39.5, 39.5", "", "", 4, 0, "98, 108",
         "0.8, 0.8, 5", f"{csv_size}, {csv_size}", "-175, 275", "F", 51, 1],
        ["000001_01_01_103.png", 1, 1, 1, 103, "", "2, 3, 10, 12", "", "", 4, 0, "98, 108",
         "0.8, 0.8, 5", f"{csv_size}, {csv_size}", "-175, 275", "F", 51, 1],
        ["000002_02_01_015.png", 2, 2, 1, 15, "", "20, 20, 30, 30", "", "", -1, 0, "10, 20",
         "0.7, 0.7, 2", f"{csv_size}, {csv_size}", "-1500, 500", "M", 60, 3],
    ]
    with open(root / options.file, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(DL_COLUMNS)
        writer.writerows(rows)
    return 2  # one row per (slice, label): liver lesion on slice 103, plain lesion on slice 15


def build_yolo(root: Path, options) -> int:
    names = options.classes or ["boneanomaly", "bonelesion", "foreignbody", "fracture", "metal",
                                "periostealreaction", "pronatorsign", "softtissue", "text"]
    if options.classes_file:
        write_file(root, options.classes_file, yaml.safe_dump({"names": dict(enumerate(names))}))
    for i in range(2):
        write_file(root, f"{options.image_dir}/0001_{i}{options.image_suffix}", png_bytes(80, 40, seed=i))
        lines = ["3 0.5 0.5 0.25 0.5", "3 0.2 0.3 0.1 0.1", "8 0.9 0.1 0.1 0.1"]
        write_file(root, f"{options.labels_dir}/0001_{i}.txt", "\n".join(lines) + "\n")
    per_image = len({names[3], *(n for n in [names[8]] if n not in options.skip_classes)})
    return 2 * per_image


def build_instance_masks(root: Path, options) -> int:
    """Two images of the part the options read and, with a held-out split, one of the other part."""
    from medmo_pipeline.data.adapters.common import other_part

    names = [f"cells{i}" for i in range(200)]
    mine = [name for name in names if not other_part(name, options)][:2]
    others = [name for name in names if other_part(name, options)][:1]
    if options.mask_name:  # a release's own tree: the Cell Tracking Challenge's, two sequences of a dataset
        mine, others = ["Fluo-N2DH-GOWT1/01/t000", "Fluo-N2DH-GOWT1/02/t000"], []
    for i, stem in enumerate(mine + others):
        if options.mask_name:  # the frames as shipped: TIFF
            frame = io.BytesIO()
            Image.open(io.BytesIO(png_bytes(32, 32, seed=i))).convert("L").save(frame, format="TIFF")
            write_file(root, "/".join(p for p in (options.image_dir, f"{stem}.tif") if p), frame.getvalue())
        else:
            write_file(root, f"{options.image_dir}/{stem}.png", png_bytes(32, 32, seed=i))
        mask = np.zeros((32, 32), dtype=np.uint16)
        mask[2:6, 3:9] = 1
        mask[20:30, 10:12] = 7
        buffer = io.BytesIO()
        Image.fromarray(mask).save(buffer, format="TIFF" if options.mask_suffix.endswith((".tif", ".tiff"))
                                   or options.mask_name.endswith((".tif", ".tiff")) else "PNG")
        folder, _, name = stem.rpartition("/")
        write_file(root, options.mask_name.format(folder=folder, stem=name, number=name.lstrip("t")) if options.mask_name
                   else f"{options.masks_dir}/{stem}{options.mask_suffix}", buffer.getvalue())
    return 2


def build_box_json_per_image(root: Path, options) -> int:
    for i in range(2):
        folder = f"{options.image_dir}/xmlab{i}"
        write_file(root, f"{folder}/{options.image_file}", jpeg_bytes(seed=i))
        write_file(root, f"{folder}/{options.boxes_file}",
                   json.dumps([{"Liver": [5, 6, 20, 10]}, {"Kidney": [30, 20, 8, 8]}, {"Kidney": [40, 5, 6, 6]}]))
    return 4


def build_image_folder(root: Path, options) -> int:
    base = root / options.image_dir if options.image_dir else root
    suffix = options.pattern.rsplit(".", 1)[-1] if "." in options.pattern.rsplit("/", 1)[-1] else "png"
    files = []
    for label in ("class_a", "class_b"):
        if suffix == "dcm":
            for name in ("CT_small.dcm", "MR_small.dcm"):
                files.append(base / label / name)
                write_file(base, f"{label}/{name}", Path(get_testdata_files(name)[0]).read_bytes())
        elif options.png16_offset is not None:
            values = np.linspace(-1000, 1000, 32 * 32).reshape(32, 32) + options.png16_offset
            files.append(write_file(base, f"{label}/slice.png", png16_bytes(values)))
        else:
            files.append(write_file(base, f"{label}/img.{suffix}", png_bytes(seed=len(files)) if suffix == "png"
                                    else jpeg_bytes(seed=len(files))))
        if options.text_from == "sidecar":
            for path in files[-1:]:
                path.with_suffix(".txt").write_text(f"Microscopy of {label}.")
    return len(files)


def build_label_csv(root: Path, options) -> int:
    """A label table: CheXpert's train.csv (image paths, one column per label holding 1.0 / 0.0 /
    -1.0 / blank) or ChestX-ray14's Data_Entry csv (one cell listing the labels, '|'-separated)."""
    columns = [options.labels_field] if options.labels_field else list(options.label_fields)
    lines = [",".join([options.image_field, "Sex", "Age", *columns])]
    folders = [options.image_dir, *options.other_image_dirs]
    for i in range(3):
        if options.image_strip_prefix:  # CheXpert's batch zips: Path names the v1.0 tree, the images lie in
            image = f"{options.image_strip_prefix}patient{i:05d}/study1/view1_frontal.jpg"  # one of the batches
            write_file(root, f"{folders[i % len(folders)]}/{image.removeprefix(options.image_strip_prefix)}",
                       jpeg_bytes(seed=i))
        elif options.image_dir:  # ChestX-ray14: images/, or the Kaggle copy's images_0NN/images/
            image = f"0000000{i}_000.png"
            write_file(root, f"{folders[i % len(folders)]}/{image}", png_bytes(seed=i))
        else:
            image = f"{Path(options.file).parent.as_posix()}/train/patient{i:05d}/study1/view1_frontal.jpg"
            write_file(root, image, jpeg_bytes(seed=i))
        if options.labels_field:
            labels = ["Cardiomegaly|Effusion" if i else "No Finding"]
        else:
            labels = ["1.0" if j == i else ("-1.0" if j == i + 1 else "") for j in range(len(columns))]
        lines.append(",".join([image, "Female", "60", *labels]))
    write_file(root, options.file, "\r\n".join(lines) + "\r\n")
    return 3


def build_instance_masks_npz(root: Path, options) -> int:
    """Arrays as TissueNet ships them: X [n, H, W, 2] floats, y [n, H, W, 2] instance ids."""
    images = np.random.default_rng(1).random((3, 16, 20, 2)).astype(np.float32)
    labels = np.zeros((3, 16, 20, 2), dtype=np.int32)
    for i in range(3):
        labels[i, 1 + i:5 + i, 2:7, options.label_channel] = i + 1
    buffer = io.BytesIO()
    np.savez(buffer, **{options.image_key: images, options.label_key: labels})
    write_file(root, options.file, buffer.getvalue())
    return 3


BUILDERS = {
    "caption": build_caption, "vqa": build_vqa, "llava_json": build_llava_json,
    "multiple_choice": build_multiple_choice, "text_instruction": build_text_instruction,
    "report": build_report, "coco": build_coco, "nih_bbox_csv": build_nih_bbox_csv,
    "deeplesion_csv": build_deeplesion_csv, "yolo": build_yolo, "instance_masks": build_instance_masks,
    "box_json_per_image": build_box_json_per_image, "image_folder": build_image_folder,
    "label_csv": build_label_csv, "instance_masks_npz": build_instance_masks_npz,
}  # fmt: skip


def build_fixture(family: str, root: Path, options: dict) -> int:
    """Write a dataset for adapter ``family`` with ``options`` under ``root``; return expected rows."""
    root.mkdir(parents=True, exist_ok=True)
    return BUILDERS[family](root, adapter(family).Options.model_validate(options))


def copy_dicom(name: str, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(get_testdata_files(name)[0], target)
    return target
