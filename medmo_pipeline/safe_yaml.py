"""YAML read with safe types only and a bound on what aliases may expand to.

``yaml.safe_load`` builds whatever the aliases describe: nine levels of nine aliases (a "billion
laughs") is a few hundred bytes of YAML and billions of objects. ``read_yaml`` counts the nodes the
document expands to on the composed node graph, where an alias is one shared node, and refuses it
beyond a limit (or when an alias refers to a node containing it) before any object is built.

Without aliases the cost is the file's own: PyYAML composes about 50,000 nodes a second and holds
several hundred bytes per node, so a 6 MB list of three million numbers took 67 s and 2.3 GB. A file
is therefore refused over ``BYTES_PER_NODE`` bytes per allowed node before it is read, and
composing stops at the limit.
"""

from __future__ import annotations

from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

import yaml

from medmo_pipeline.safe_paths import FileTooLarge, read_bounded
from medmo_pipeline.tracking import SECRET_VALUE

BYTES_PER_NODE = 64  # far more than any recipe or registry holds per node (about 18)
_SET_TAG = "tag:yaml.org,2002:set"


class YamlRefused(ValueError):
    """A YAML file that is not read; the message names the file. A secret it would quote (a token
    pasted into a recipe) is masked: the message is printed and logged."""

    def __init__(self, message: str):
        super().__init__(SECRET_VALUE.sub("<secret>", message))


class _CountingLoader(yaml.SafeLoader):
    """The safe loader, stopping once the document holds more than ``max_nodes`` nodes (an alias
    is not counted here: ``_check_expansion`` counts what it expands to)."""

    def __init__(self, text: str, path: Path, max_nodes: int):
        super().__init__(text)
        self.path, self.max_nodes, self.composed = path, max_nodes, 0

    def compose_node(self, parent, index):
        if not self.check_event(yaml.AliasEvent):
            self.composed += 1
            if self.composed > self.max_nodes:
                raise YamlRefused(f"{self.path}: holds more than {self.max_nodes} nodes "
                                  f"(line {self.peek_event().start_mark.line + 1})")
        return super().compose_node(parent, index)


def read_yaml(path: Path, *, max_nodes: int, unique_keys: bool = True) -> Any:
    """``path``'s YAML with safe types only (a file can never execute code), refused when it is
    larger than ``max_nodes`` nodes can take, holds more nodes, or its aliases expand it beyond
    ``max_nodes`` or refer to themselves: checked on the node graph, where an alias is one shared
    node, before any Python object is built. With ``unique_keys``, a mapping that states a key twice
    is refused too (YAML forbids it; PyYAML keeps the last, so a recipe's second ``learning_rate:``
    would silently win)."""
    most_bytes = max_nodes * BYTES_PER_NODE
    try:
        raw = read_bounded(path, most_bytes)
    except FileTooLarge as error:
        raise YamlRefused(f"{path}: {error.size} bytes, more than {most_bytes} for at most {max_nodes} "
                          "nodes") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw[:error.start].count(b"\n") + 1
        raise YamlRefused(f"{path}: not UTF-8 at line {line} (byte {error.start}: {error.reason})") from None
    try:
        loader = _CountingLoader(text, path, max_nodes)
        try:
            node = loader.get_single_node()
            if node is None:
                return None
            _check_expansion(node, path, max_nodes)
            if unique_keys:
                _check_unique_keys(node, path)
            return loader.construct_document(node)
        finally:
            loader.dispose()
    except YamlRefused:
        raise
    except yaml.YAMLError as exc:
        raise YamlRefused(f"{path}: not valid YAML: {_syntax_problem(exc)}") from None
    except RecursionError:
        raise YamlRefused(f"{path}: nested too deeply to read") from None
    except ValueError as exc:  # a scalar its type cannot hold (an integer past Python's 4,300 digits)
        raise YamlRefused(f"{path}: a value cannot be read ({exc})") from None


def _syntax_problem(error: yaml.YAMLError) -> str:
    """What PyYAML found and where, without the excerpt of the file it quotes: that excerpt may hold a
    secret, cut where no pattern recognises it."""
    if not isinstance(error, yaml.MarkedYAMLError):  # a character the reader refuses: its position, no excerpt
        where = f" (character {error.position + 1})" if isinstance(getattr(error, "position", None), int) else ""
        return str(error).split("\n", 1)[0] + where
    parts = [f"{text} (line {mark.line + 1}, column {mark.column + 1})" if mark else text
             for text, mark in ((error.context, error.context_mark), (error.problem, error.problem_mark)) if text]
    return ": ".join(parts) or type(error).__name__


def _check_expansion(root: yaml.Node, path: Path, max_nodes: int) -> None:
    """Count the nodes ``root`` expands to (aliases counted each time they are used), depth first
    without recursion; stop at ``max_nodes`` or at a node that contains itself."""
    sizes: dict[int, int] = {}
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    open_nodes: set[int] = set()
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        children = _children(node)
        if children_done:
            open_nodes.discard(key)
            sizes[key] = 1 + sum(sizes[id(child)] for child in children)
            if sizes[key] > max_nodes:
                raise YamlRefused(f"{path}: aliases expand the file beyond {max_nodes} nodes "
                                  f"(line {node.start_mark.line + 1}); write the values out instead")
            continue
        if key in sizes:
            continue
        if key in open_nodes:
            raise YamlRefused(f"{path}: an alias refers to a node containing it (line {node.start_mark.line + 1})")
        if node.tag == _SET_TAG:  # unordered: its list's order, and every hash of it, would change per process
            raise YamlRefused(f"{path}: line {node.start_mark.line + 1} is a !!set, whose order is not kept; "
                              "write a list")
        open_nodes.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in children if id(child) not in sizes)


def _check_unique_keys(root: yaml.Node, path: Path) -> None:
    """Refuse a mapping stating one scalar key twice (keys merged in with ``<<`` may be restated:
    that is what a merge is for), naming the key and both lines."""
    seen: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            lines: dict[tuple[str, str], int] = {}  # a key's first line, by (tag, text)
            for key, _ in node.value:
                if not isinstance(key, yaml.ScalarNode) or key.tag == "tag:yaml.org,2002:merge":
                    continue
                line = key.start_mark.line + 1
                if (key.tag, key.value) in lines:  # on another line, or the same ({a: 1, a: 2})
                    raise YamlRefused(f"{path}: line {line} states {key.value!r} again (first at line "
                                      f"{lines[key.tag, key.value]}); a key may appear once in a mapping")
                lines[key.tag, key.value] = line
        stack.extend(_children(node))


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def refuse_yes_or_no(where: str, value: Any, annotation: Any) -> None:
    """YAML reads yes / no / on / off / true / false as booleans, and pydantic takes one for a number
    (1 or 0): ``max_steps: yes`` would train one step. A boolean where ``annotation`` is a number is
    refused, ``where`` naming the field."""
    if type(value) is bool and number_type(annotation):
        raise ValueError(f"{where}: {value!r} is a yes or no, not a number")


def refuse_other_than_true_or_false(where: str, value: Any, annotation: Any) -> None:
    """pydantic takes 1, 0 and the texts "yes", "off", "t", "1"... for a boolean: a quoted
    ``trust_remote_code: "yes"`` or ``trust_remote_code: 1`` turned remote code on. Where
    ``annotation`` is a boolean, anything but one (YAML's unquoted yes / no / true / false) is refused,
    ``where`` naming the field."""
    if value is not None and type(value) is not bool and _kinds(annotation) == [bool]:
        raise ValueError(f"{where}: {value!r} is not true or false")


def number_type(annotation: Any) -> bool:
    """Whether a type is a number (int or float, constrained or not, or one of them or None)."""
    kinds = _kinds(annotation)
    return bool(kinds) and all(kind in (int, float) for kind in kinds)


def _kinds(annotation: Any) -> list:
    """The types a value of ``annotation`` may have, None left out and constraints taken off."""
    kinds = get_args(annotation) if get_origin(annotation) in (Union, UnionType) else (annotation,)
    return [get_args(kind)[0] if get_origin(kind) is Annotated else kind for kind in kinds if kind is not type(None)]
