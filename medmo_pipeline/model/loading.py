"""One loading path for the tiny local base model and for hub checkpoints such as Qwen/Qwen3-VL-8B-Instruct.

Weights are loaded from safetensors only: pickle files can execute code when unpickled, so a local
directory holding any pickle file is refused unless the recipe opts in (``base_model.allow_pickle``).
Remote code is never run unless the recipe sets ``base_model.trust_remote_code``.
"""

from __future__ import annotations

import math
import os
import re
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from medmo_pipeline.safe_paths import FileTooLarge, UnsafePathError, check_relative, read_bounded

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


class UnsafeCheckpointError(ValueError):
    """A checkpoint holds pickle files and the recipe does not allow them."""


def _is_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def _local_dir(path_or_id: str | os.PathLike) -> Path | None:
    path = Path(path_or_id).expanduser()
    return path if path.is_dir() else None


def _hub_kwargs(path_or_id, revision: str | None, trust_remote_code: bool) -> dict[str, Any]:
    local = _local_dir(path_or_id) is not None
    kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code}
    if revision is not None and not local:
        kwargs["revision"] = revision
    if local or _is_offline():
        kwargs["local_files_only"] = True
    return kwargs


def check_weights_are_safe(directory: Path) -> None:
    """Raise `UnsafeCheckpointError` when `directory` holds any pickle file.

    Even beside safetensors weights a pickle file is refused: whatever later loads it (a trainer
    resuming, a custom loader) runs the code it carries.
    """
    pickles = sorted(p for p in Path(directory).rglob("*") if p.suffix.lower() in PICKLE_SUFFIXES and p.is_file())
    if pickles:
        names = ", ".join(str(p.relative_to(directory)) for p in pickles[:3])
        more = f" and {len(pickles) - 3} more" if len(pickles) > 3 else ""
        raise UnsafeCheckpointError(
            f"{directory} contains pickle files ({names}{more}), which can run arbitrary code when loaded. "
            "Convert them to safetensors, or set base_model.allow_pickle: true in the recipe "
            "(allow_pickle=True) if you trust their origin."
        )


class CorruptCheckpointError(ValueError):
    """A checkpoint file (a safetensors header, a JSON file) that cannot be read, or weights that do
    not match the model its config describes; the message names the file or the checkpoint."""


SAFETENSORS_MAX_HEADER = 100 << 20  # what the safetensors library itself accepts
# The dtypes the safetensors format defines, in bits per element (the library's own list)
SAFETENSORS_DTYPE_BITS = {"BOOL": 8, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6, "U8": 8, "I8": 8, "F8_E5M2": 8,
                          "F8_E4M3": 8, "F8_E8M0": 8, "I16": 16, "U16": 16, "F16": 16, "BF16": 16, "I32": 32,
                          "U32": 32, "F32": 32, "C64": 64, "F64": 64, "I64": 64, "U64": 64}
# A weight has at most 5 dimensions (a Conv3d kernel); the bound keeps the size product small
MAX_TENSOR_DIMS = 16
MAX_DIMENSION = 2**63  # a dimension is a torch int64 (the library reads a u64 and fails past it)
CHECKPOINT_JSON_MAX_BYTES = 256 << 20  # a tokenizer.json of a large vocabulary is tens of MB
# Files of settings, a few KB each: read within 4 MB, so a config.json of a gigabyte costs nothing
SETTINGS_FILES = frozenset({"config.json", "generation_config.json", "preprocessor_config.json",
                            "processor_config.json", "video_preprocessor_config.json", "special_tokens_map.json",
                            "chat_template.json", "chat_template.jinja", "lineage.json"})
SETTINGS_MAX_BYTES = 4 << 20
CHAT_TEMPLATE_MAX_CHARACTERS = 256 << 10  # Qwen3-VL's is 5 KB; the longest on the hub tens of KB
# JSON files transformers reads as one object (a list there was an AttributeError naming nothing)
OBJECT_FILES = SETTINGS_FILES - {"chat_template.jinja"} | {"tokenizer.json", "tokenizer_config.json",
                                                            "added_tokens.json", "vocab.json"}
# Nesting of a checkpoint's JSON: a tokenizer.json nests about 6 deep; transformers copies a config
# recursively and a list nested 500 deep came out of it as a bare RecursionError
MAX_JSON_DEPTH = 64
# Keys of a config that count layers: each layer holds at least one tensor of the weights, so a count
# above the tensors the weights hold is wrong, and transformers builds every layer before it reads a
# weight (a num_hidden_layers of 10**6 ran for minutes and out of memory)
LAYER_COUNT_KEY = re.compile(r"num_(hidden_|encoder_|decoder_)?layers|n_layers?|depth|(en|de)coder_layers")


def checkpoint_root(directory: Path) -> Path:
    """The folder a checkpoint's files may resolve into: the checkpoint itself, or for a Hugging Face
    cache snapshot (``<repo>/snapshots/<revision>``, whose files are links into ``<repo>/blobs``) the
    cached repository."""
    directory = Path(directory).resolve()
    if directory.parent.name == "snapshots" and (directory.parent.parent / "blobs").is_dir():
        return directory.parent.parent
    return directory


def _check_inside(root: Path, path: Path) -> None:
    """Refuse a file of the checkpoint that is a link out of it (to /etc/passwd, to /dev/zero)."""
    try:
        target = path.resolve()
    except (OSError, RuntimeError) as error:  # RuntimeError: a symlink loop
        raise CorruptCheckpointError(f"{path}: cannot be resolved ({error})") from None
    if root not in target.parents:
        raise CorruptCheckpointError(f"{path}: resolves to {target}, outside the checkpoint folder {root}")


def read_checkpoint_json(directory: Path, path: Path) -> Any:
    """``path``'s JSON, a regular file of the checkpoint ``directory`` read within
    ``CHECKPOINT_JSON_MAX_BYTES``; any other file (a link out, a FIFO, a device) is refused naming it."""
    import json

    _check_inside(checkpoint_root(directory), path)
    if not _is_kind(path, stat.S_ISREG):  # a FIFO would block its reader, a device (/dev/zero) never ends
        raise CorruptCheckpointError(f"{path}: not a regular file (a pipe, a device, a directory or missing)")
    text = _read_checkpoint_text(path)
    try:
        content = json.loads(text)
    except (ValueError, RecursionError) as error:
        raise CorruptCheckpointError(f"{path}: not a JSON file ({type(error).__name__}: {str(error)[:200]})") from None
    if (depth := _nesting(content)) > MAX_JSON_DEPTH:
        raise CorruptCheckpointError(f"{path}: nested {depth} deep, more than the {MAX_JSON_DEPTH} a checkpoint's "
                                     "JSON file may be")
    if (path.name in OBJECT_FILES or path.name.endswith(".index.json")) and not isinstance(content, dict):
        raise CorruptCheckpointError(f"{path}: a JSON {type(content).__name__}, not the object it holds")
    return content


def _read_checkpoint_text(path: Path) -> str:
    """A file of a checkpoint read as UTF-8 text within its kind's size (``SETTINGS_MAX_BYTES`` for
    settings, ``CHECKPOINT_JSON_MAX_BYTES`` otherwise), refused naming it."""
    limit = SETTINGS_MAX_BYTES if path.name in SETTINGS_FILES else CHECKPOINT_JSON_MAX_BYTES
    try:  # read_bounded checks the type again on what it opened, without blocking
        raw = read_bounded(path, limit, what=path.name)
    except FileTooLarge as error:
        raise CorruptCheckpointError(f"{path}: {error.size} bytes, over the {error.limit} a checkpoint's "
                                     f"{path.name} is read with") from None
    except OSError as error:
        raise CorruptCheckpointError(f"{path}: cannot be read ({error.strerror or error})") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw[:error.start].count(b"\n") + 1
        raise CorruptCheckpointError(f"{path}: not UTF-8 text at line {line} (byte {error.start})") from None


def _nesting(content: Any) -> int:
    """How deep lists and objects nest in parsed JSON, without recursion; stops past ``MAX_JSON_DEPTH``."""
    deepest, stack = 0, [(content, 1)]
    while stack and deepest <= MAX_JSON_DEPTH:
        value, depth = stack.pop()
        items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else None
        if items is not None:
            deepest = max(deepest, depth)
            stack.extend((item, depth + 1) for item in items if isinstance(item, (dict, list)))
    return deepest


def check_json_files(directory: Path) -> None:
    """Check every file at the top of a checkpoint directory before transformers reads it: each a
    regular file inside the checkpoint (a ``chat_template.jinja`` linked to /etc/passwd was read, a
    FIFO would block), every ``*.json`` parsed (config, tokenizer, processor, shard index: its JSON
    error names no file; a damaged tokenizer.json came out as "Expecting property name enclosed in
    double quotes: line 1 column 2"), text files (a chat template, merges) read as UTF-8 within
    their size, and ``tokenizer.json`` built as the tokenizers library builds it (its errors, such as
    "data did not match any variant of untagged enum ModelUntagged", name no file)."""
    directory = Path(directory)
    root = checkpoint_root(directory)
    for path in sorted(directory.iterdir()):
        _check_inside(root, path)
        if _is_kind(path, stat.S_ISDIR):
            continue
        if not _is_kind(path, stat.S_ISREG):
            raise CorruptCheckpointError(f"{path}: not a regular file (a pipe, a device or a socket)")
        if path.suffix == ".json":
            read_checkpoint_json(directory, path)
        elif path.suffix in (".jinja", ".txt"):
            _read_checkpoint_text(path)
    if (tokenizer := directory / "tokenizer.json").exists():
        _check_tokenizer(tokenizer)


def _check_tokenizer(path: Path) -> None:
    from tokenizers import Tokenizer

    try:
        Tokenizer.from_str(_read_checkpoint_text(path))
    except Exception as error:  # noqa: BLE001 - the Rust library raises a bare Exception
        raise CorruptCheckpointError(f"{path}: not a tokenizer the tokenizers library reads ({str(error)[:200]})") \
            from None


def check_safetensors_headers(directory: Path) -> int:
    """Read every ``*.safetensors`` header under ``directory`` before the library does, so a corrupt
    file is named (the library's own error names no file). Checks the header length against the
    file, that the header is a JSON object, and every tensor's dtype, shape and byte range. Returns
    how many tensors the files hold."""
    root = checkpoint_root(directory)
    tensors = 0
    for path in sorted(Path(directory).rglob("*.safetensors")):
        _check_inside(root, path)
        problem = _safetensors_problem(path)
        if isinstance(problem, str):
            raise CorruptCheckpointError(f"{path}: corrupt safetensors header: {problem}")
        tensors += problem
    return tensors


def check_layer_counts(directory: Path, tensors: int) -> None:
    """Refuse a ``config.json`` counting more layers (``num_hidden_layers``, a vision ``depth``...) than
    the weights hold tensors: transformers builds every layer before it reads a weight. Without
    safetensors weights (pickle ones the recipe allows) there is nothing to count against."""
    path = Path(directory) / "config.json"
    if not tensors or not path.exists():
        return
    stack = [((), read_checkpoint_json(directory, path))]
    while stack:
        where, value = stack.pop()
        if isinstance(value, dict):
            stack.extend(((*where, str(key)), item) for key, item in value.items())
        elif where and LAYER_COUNT_KEY.fullmatch(where[-1]) and type(value) is int and value > tensors:
            raise CorruptCheckpointError(f"{path}: {'.'.join(where)} is {value}, more layers than the {tensors} "
                                         "tensors its weights hold")


def _read_header(path: Path) -> tuple[int, bytes] | str:
    """(file size, header bytes) of a safetensors file, or what is wrong with it. Opened without
    blocking (a FIFO's reader would wait for ever) and read only when a regular file."""
    import struct

    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as error:
        return f"cannot be opened ({error.strerror or error})"
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return "not a regular file (a pipe, a device or a directory)"
        size = info.st_size
        head = os.pread(fd, 8, 0)
        if len(head) < 8:
            return f"{size} bytes, shorter than the 8-byte header length"
        (length,) = struct.unpack("<Q", head)
        if length > min(SAFETENSORS_MAX_HEADER, size - 8):
            return f"declares a {length}-byte header in a {size}-byte file"
        raw = os.pread(fd, length, 8)
        if len(raw) < length:
            return f"ends within its {length}-byte header"
        return size, raw
    finally:
        os.close(fd)


def _is_kind(path: Path, kind) -> bool:
    """Whether ``path`` is of ``kind`` (``stat.S_ISREG``, ``stat.S_ISDIR``); False where it cannot be
    looked at (``Path.is_file`` raises on a name too long)."""
    try:
        return kind(os.stat(path).st_mode)
    except OSError:
        return False


def _shown(name: str) -> str:
    """A tensor's name for a message, cut short: a header may hold a name of megabytes."""
    return repr(name) if len(name) <= 200 else repr(name[:200]) + "..."


def _safetensors_problem(path: Path) -> str | int:
    """What is wrong with a safetensors file's header, or how many tensors it holds."""
    import json

    read = _read_header(path)
    if isinstance(read, str):
        return read
    size, raw = read
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        return f"not a JSON header ({type(error).__name__}: {str(error)[:200]})"
    if not isinstance(header, dict):
        return f"a JSON {type(header).__name__}, not an object"
    data_size = size - 8 - len(raw)
    metadata = header.get("__metadata__")
    if metadata is not None and not (isinstance(metadata, dict)
                                     and all(type(value) is str for value in metadata.values())):
        return "__metadata__ is not an object of text values"
    spans = []
    for name, tensor in header.items():
        if name == "__metadata__":
            continue
        if problem := _tensor_problem(tensor, data_size):
            return f"tensor {_shown(name)}: {problem}"
        spans.append((*tensor["data_offsets"], name))
    end = 0  # the tensors tile the data bytes: no gap, no overlap, nothing after them
    for start, stop, name in sorted(spans):
        if start != end:
            return f"tensor {_shown(name)} starts at data byte {start}, not at {end} where the previous one ends"
        end = stop
    if end != data_size:
        return f"the tensors end at data byte {end} of {data_size}"
    return len(spans)


def _tensor_problem(tensor: Any, data_size: int) -> str:
    """What is wrong with one tensor's entry of a safetensors header, in time linear in its size."""
    offsets = tensor.get("data_offsets") if isinstance(tensor, dict) else None
    if (not isinstance(offsets, list) or len(offsets) != 2 or not all(type(v) is int for v in offsets)
            or not 0 <= offsets[0] <= offsets[1] <= data_size):
        return f"data_offsets {str(offsets)[:100]} outside the {data_size} data bytes"
    dtype, shape = tensor.get("dtype"), tensor.get("shape")
    if type(dtype) is not str or dtype not in SAFETENSORS_DTYPE_BITS:
        return f"unknown dtype {str(dtype)[:100]!r}"
    # the number of dimensions is bounded before any is read, so the product below stays small
    if not isinstance(shape, list):
        return f"shape {str(shape)[:100]!r} is not a list of sizes"
    if len(shape) > MAX_TENSOR_DIMS:
        return f"shape has {len(shape)} dimensions, more than the {MAX_TENSOR_DIMS} a tensor may have"
    if not all(type(v) is int and 0 <= v < MAX_DIMENSION for v in shape):
        return f"shape {str(shape)[:200]} is not a list of sizes from 0 to 2**63 - 1"
    bits = math.prod(shape) * SAFETENSORS_DTYPE_BITS[dtype]
    if bits % 8:
        return f"{dtype} {shape} takes {bits} bits, not a whole number of bytes"
    if bits // 8 != offsets[1] - offsets[0]:
        return f"{dtype} {shape} takes {bits // 8} bytes, its data_offsets {offsets} hold {offsets[1] - offsets[0]}"
    return ""


def check_weight_index(directory: Path) -> None:
    """The shard files a ``*.safetensors.index.json`` maps weights to are files of ``directory``:
    a ``weight_map`` entry naming a path out of it (``../other/w.safetensors``) or a missing file is
    an error naming the index."""
    root = checkpoint_root(directory)
    for index in sorted(Path(directory).glob("*.index.json")):
        content = read_checkpoint_json(directory, index)
        weight_map = content.get("weight_map") if isinstance(content, dict) else None
        if not isinstance(weight_map, dict):
            raise CorruptCheckpointError(f"{index}: no weight_map object")
        for name in sorted(set(map(str, weight_map.values()))):
            try:
                check_relative(name)
                _check_inside(root, Path(directory) / name)
            except (UnsafePathError, CorruptCheckpointError) as error:
                raise CorruptCheckpointError(f"{index}: weight_map names {_shown(name)}, outside the checkpoint "
                                             f"({error})") from None
            if Path(name).name != name or not _is_kind(Path(directory) / name, stat.S_ISREG):
                raise CorruptCheckpointError(f"{index}: weight_map names {_shown(name)}, not a file beside the index")


def load_model(
    path_or_id: str | os.PathLike,
    *,
    revision: str | None = None,
    trust_remote_code: bool = False,
    dtype: Any = None,
    allow_pickle: bool = False,
    attn_implementation: str | None = None,
):
    """Load a vision-language model (e.g. `Qwen3VLForConditionalGeneration`) from a directory or hub id.

    ``attn_implementation`` ``"auto"`` picks `attention_implementation`'s choice; None keeps
    transformers' default."""
    from transformers import AutoModelForImageTextToText

    local = _local_dir(path_or_id)
    if local is not None and not allow_pickle:
        check_weights_are_safe(local)
    if local is not None:
        check_json_files(local)
        check_weight_index(local)
        check_layer_counts(local, check_safetensors_headers(local))
    kwargs = _hub_kwargs(path_or_id, revision, trust_remote_code)
    # None lets from_pretrained fall back to pickle weights where safetensors are absent.
    kwargs["use_safetensors"] = None if allow_pickle else True
    if dtype is not None:
        kwargs["dtype"] = dtype
    if attn_implementation is not None:
        kwargs["attn_implementation"] = attention_implementation(attn_implementation)
    # transformers' account of which weights it found: a missing one it would only log, then initialise
    # at random. A size mismatch is reported there too (it raised a RuntimeError naming no weight)
    kwargs["output_loading_info"] = True
    kwargs["ignore_mismatched_sizes"] = True
    with _naming(local, "its config.json or the weights it describes"):
        model, info = AutoModelForImageTextToText.from_pretrained(str(path_or_id), **kwargs)
    check_loading_info(info, local or str(path_or_id), type(model).__name__)
    return model


LOADING_INFO_SHOWN = 5  # weights named in a refusal; the count says how many more


def check_loading_info(info: dict, where: Path | str, model_class: str = "model") -> None:
    """Refuse weights that do not match the model built from the checkpoint's config, from what
    ``from_pretrained(..., output_loading_info=True)`` reports: missing keys (transformers initialises
    them at random and only logs it), unexpected keys (dropped) and mismatched sizes. The message
    names ``where``, how many keys, the first few, and what to do.

    What transformers leaves out of its report stays allowed: a weight tied to another one that is
    there (``lm_head.weight`` with ``tie_word_embeddings``) and the keys a model class lists as
    ignorable (``_keys_to_ignore_on_load_missing`` / ``_unexpected``). Under DeepSpeed ZeRO-3
    transformers reports only missing keys (every rank the same, so every rank refuses); a size
    mismatch there is its own RuntimeError, re-raised naming the checkpoint by ``_naming``."""
    problems = []
    for kind, keys in (("missing from the checkpoint (they would start from random values)",
                        info.get("missing_keys")),
                       ("in the checkpoint but not in the model (they would be dropped)", info.get("unexpected_keys"))):
        if keys:
            problems.append(_some_keys(sorted(map(str, keys)), kind))
    if mismatched := info.get("mismatched_keys"):
        shown = sorted(f"{_shown(str(key))} (checkpoint {list(saved)}, model {list(built)})"
                       for key, saved, built in mismatched)
        problems.append(_some_keys(shown, "of another size in the checkpoint than in the model", quoted=False))
    if problems:
        raise CorruptCheckpointError(
            f"{where}: its weights do not match the {model_class} its config.json describes: "
            + "; ".join(problems)
            + ". If the checkpoint was damaged or partly copied, copy it again (every *.safetensors file and "
            "its index); if it is a checkpoint of another architecture, point the recipe at one of this model's."
        )


def _some_keys(keys: list[str], kind: str, *, quoted: bool = True) -> str:
    names = ", ".join(_shown(key) if quoted else key for key in keys[:LOADING_INFO_SHOWN])
    more = f" and {len(keys) - LOADING_INFO_SHOWN} more" if len(keys) > LOADING_INFO_SHOWN else ""
    return f"{len(keys)} weight{'s' if len(keys) != 1 else ''} {kind}: {names}{more}"


@contextmanager
def _naming(directory: Path | None, files: str) -> Iterator[None]:
    """Errors transformers raises from a local checkpoint's content, re-raised naming the checkpoint
    and ``files``: a wrong type in config.json came out as ``StrictDataclassFieldValidationError``, a
    negative size as "Trying to create tensor with negative dimension", an unknown ``model_type``
    as "The checkpoint you are trying to load", each naming no file. A missing file (OSError) already
    names its path, and running out of memory is no fault of a file."""
    if directory is None:
        yield
        return
    try:
        yield
    except (OSError, MemoryError, CorruptCheckpointError):
        raise
    except Exception as error:  # whatever the library raised, named; the cause is kept
        said = " ".join(str(error).split())  # its lines joined: a field's error says what is wrong on the next
        raise CorruptCheckpointError(f"{directory}: {files} cannot be loaded ({type(error).__name__}: "
                                     f"{said[:300]})") from error


def attention_implementation(requested: str) -> str:
    """The attention kernel to load with: ``auto`` is flash_attention_2 where the flash-attn package
    and a GPU are present, else PyTorch's sdpa. Asking for flash_attention_2 without them is an error
    here, before any weight is read."""
    import importlib.util

    import torch

    flash_available = importlib.util.find_spec("flash_attn") is not None and torch.cuda.is_available()
    if requested == "auto":
        return "flash_attention_2" if flash_available else "sdpa"
    if requested == "flash_attention_2" and not flash_available:
        raise ValueError("attn_implementation: flash_attention_2 needs the flash-attn package and a CUDA GPU; "
                         "use sdpa (or auto) on this machine")
    return requested


def load_processor(
    path_or_id: str | os.PathLike,
    *,
    revision: str | None = None,
    trust_remote_code: bool = False,
    max_pixels: int | None = None,
    min_pixels: int | None = None,
):
    """Load the processor (tokenizer + image processor + chat template) and optionally set its resolution."""
    from transformers import AutoProcessor

    from . import processor as _registers_image_only_processor  # noqa: F401  (AutoProcessor.register)

    if (local := _local_dir(path_or_id)) is not None:
        check_json_files(local)
    with _naming(local, "its tokenizer or processor files"):
        processor = AutoProcessor.from_pretrained(
            str(path_or_id), **_hub_kwargs(path_or_id, revision, trust_remote_code)
        )
    if not hasattr(processor, "image_processor"):
        raise ValueError(f"{path_or_id} has no image processor; got {type(processor).__name__}")
    _check_processor_settings(processor, local or Path(str(path_or_id)))
    if max_pixels is not None or min_pixels is not None:
        set_image_resolution(processor, max_pixels, min_pixels)
    return processor


def _check_processor_settings(processor, where: Path) -> None:
    """The image processor's pixel budget and patch sizes, and the chat template, as the processor
    will use them: a ``shortest_edge`` of 10**13 upscaled every image to that many pixels, a
    ``patch_size`` of 0 divided by zero, and a template that does not compile failed at the first
    prompt; each was loaded without a word. Errors name the checkpoint's file."""
    from medmo_pipeline.recipe_schema import MAX_PIXELS

    image_processor = processor.image_processor
    settings = next((where / name for name in ("processor_config.json", "preprocessor_config.json")
                     if (where / name).exists()), where)
    sizes = {name: getattr(image_processor, name, None) for name in ("patch_size", "merge_size", "temporal_patch_size")}
    if odd := {name: value for name, value in sizes.items() if value is not None and not _whole(value, 1, 1 << 12)}:
        raise CorruptCheckpointError(f"{settings}: image processor {odd} are not whole numbers from 1 to 4096")
    size = getattr(image_processor, "size", None) or {}
    bounds = [size.get(name) if hasattr(size, "get") else getattr(size, name, None)
              for name in ("shortest_edge", "longest_edge")]
    if all(bound is not None for bound in bounds):
        low, high = bounds
        if not (_whole(low, 1, MAX_PIXELS) and _whole(high, 1, MAX_PIXELS) and low <= high):
            raise CorruptCheckpointError(f"{settings}: image processor size {{shortest_edge: {low}, longest_edge: "
                                         f"{high}}} is not a pixel budget from 1 to {MAX_PIXELS} with the "
                                         "shortest edge at most the longest")
    template = getattr(processor, "chat_template", None)
    if isinstance(template, str):
        try:  # the compiler transformers applies the template with (private: absent from another version)
            from transformers.utils.chat_template_utils import _compile_jinja_template
        except ImportError:
            return
        source = next((where / name for name in ("chat_template.jinja", "chat_template.json", "tokenizer_config.json")
                       if (where / name).exists()), where)
        if len(template) > CHAT_TEMPLATE_MAX_CHARACTERS:  # jinja2 compiles about 500 KB a second
            raise CorruptCheckpointError(f"{source}: a chat template of {len(template)} characters, over the "
                                         f"{CHAT_TEMPLATE_MAX_CHARACTERS} one is compiled with")
        try:
            _compile_jinja_template(template)
        except Exception as error:  # noqa: BLE001 - jinja2's TemplateSyntaxError, a RecursionError of its parser
            raise CorruptCheckpointError(f"{source}: the chat template does not compile ({type(error).__name__}: "
                                         f"{str(error)[:200]})") from None


def _whole(value: Any, low: int, high: int) -> bool:
    return type(value) is int and low <= value <= high


def image_resolution(processor) -> tuple[int, int]:
    """(min_pixels, max_pixels) the processor's image processor currently resizes into."""
    image_processor = getattr(processor, "image_processor", processor)
    size = image_processor.size
    return int(size["shortest_edge"]), int(size["longest_edge"])


def set_image_resolution(processor, max_pixels: int | None, min_pixels: int | None = None):
    """Set the pixel budget images are resized into (Qwen2-VL `smart_resize`), in place.

    In transformers 5 the Qwen2-VL/Qwen3-VL image processors keep the budget as
    `size={"shortest_edge": min_pixels, "longest_edge": max_pixels}`; `min_pixels`/`max_pixels`
    attributes, when set, would override it at call time, so they are cleared. Accepts a processor or
    a bare image processor; returns it.
    """
    from transformers.image_utils import SizeDict

    image_processor = getattr(processor, "image_processor", processor)
    current_min, current_max = image_resolution(image_processor)
    new_max = current_max if max_pixels is None else int(max_pixels)
    new_min = min(current_min, new_max) if min_pixels is None else int(min_pixels)
    factor = image_processor.patch_size * image_processor.merge_size
    if new_max < factor * factor:
        raise ValueError(f"max_pixels={new_max} is below one merged patch ({factor}x{factor} pixels)")
    if new_min > new_max:
        raise ValueError(f"min_pixels={new_min} exceeds max_pixels={new_max}")
    image_processor.size = SizeDict(shortest_edge=new_min, longest_edge=new_max)
    for legacy in ("min_pixels", "max_pixels"):
        if getattr(image_processor, legacy, None) is not None:
            setattr(image_processor, legacy, None)
    return processor


def save_model_and_processor(model, processor, out_dir: str | os.PathLike, *, state_dict: dict | None = None) -> Path:
    """Write model (safetensors), generation config and processor into one Hugging Face directory.

    ``state_dict`` (weights gathered from a sharded run) replaces the model's own parameters."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, state_dict=state_dict)  # safetensors is the only format transformers 5 writes
    processor.save_pretrained(out)
    return out
