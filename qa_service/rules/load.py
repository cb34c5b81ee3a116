"""Load rubric and policy-pack files: parse YAML, validate against the schema, keep text and sha256.

A broken file raises `RulesError` whose message names the file, the field path and the line, e.g.
``visa.yaml:31: criteria[2].points: Input should be a valid number``. Nothing falls back to a default.

A `Path` is a file to read; a string is always the rules text itself, never a file name: text comes
from the API and the database, and must not make the service read its own files.
"""

from __future__ import annotations

import sys
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from qa_service.errors import RulesError
from qa_service.rules.schema import PolicyPack, Rubric

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a rules file: where (field path, line) and what."""

    path: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line else ""
        return f"{where}{self.path}: {self.message}" if self.path else f"{where}{self.message}"


class RulesFileError(RulesError):
    """A rules file that does not validate; `problems` lists each issue with its field path and line."""

    def __init__(self, source: str, problems: Iterable[Problem]):
        self.source = source
        self.problems = tuple(problems)
        first = self.problems[0] if self.problems else Problem("", "invalid")
        line = f":{first.line}" if first.line else ""
        more = f" (and {len(self.problems) - 1} more)" if len(self.problems) > 1 else ""
        path = f"{first.path}: " if first.path else ""
        super().__init__(f"{source}{line}: {path}{first.message}{more}")


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses repeated keys (PyYAML would keep the last one silently)."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"repeated key {key!r} (first on line {seen[key] + 1})", key_node.start_mark)
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


# Far deeper than any rubric or policy pack (spaCy token patterns reach 6 levels). PyYAML builds
# nodes recursively, so a document nested a few hundred levels deep ends in a RecursionError; the
# depth is counted on the parser's events, which are made without recursion, before anything is built.
MAX_DEPTH = 50
_EventLoader: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's parser when installed


def _read(source: Path | str, name: str | None) -> tuple[str, str]:
    """Return (text, display name) for a path (read) or YAML text (taken as it is)."""
    if isinstance(source, Path):
        try:
            return source.read_text(encoding="utf-8"), name or source.name
        except (OSError, UnicodeDecodeError) as exc:
            why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise RulesFileError(name or source.name, [Problem("", f"cannot read file: {why}")]) from None
    return source, name or "<text>"


def _check_depth(text: str, display: str) -> None:
    """RulesFileError naming the line where the text nests deeper than MAX_DEPTH; YAMLError if not YAML."""
    depth = 0
    parser = _EventLoader(text)
    try:
        while (event := parser.get_event()) is not None:
            if isinstance(event, yaml.MappingStartEvent | yaml.SequenceStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    raise RulesFileError(display, [Problem(
                        "", f"nested more than {MAX_DEPTH} levels deep", event.start_mark.line + 1)])
            elif isinstance(event, yaml.MappingEndEvent | yaml.SequenceEndEvent):
                depth -= 1
    finally:
        parser.dispose()


def _bad_scalar(root: yaml.Node | None) -> tuple[int | None, str]:
    """Line of the first scalar PyYAML cannot construct (an impossible date, a huge integer), and why."""
    queue = deque([root] if root is not None else [])
    seen: set[int] = set()  # aliases make the tree a graph; each node is looked at once
    loader = yaml.SafeLoader("")
    while queue:
        node = queue.popleft()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.ScalarNode):
            try:
                loader.construct_object(node)
            except ValueError as exc:
                return node.start_mark.line + 1, _why(exc)
        elif isinstance(node, yaml.SequenceNode):
            queue.extend(node.value)
        elif isinstance(node, yaml.MappingNode):
            queue.extend(v for _, v in node.value)
    return None, "a value YAML cannot read"


def _why(exc: ValueError) -> str:
    if "integer string conversion" in str(exc):  # Python's guard against quadratic int() on long digits
        return f"a number of more than {sys.get_int_max_str_digits()} digits"
    return str(exc)


def parse_yaml(text: str, name: str) -> tuple[Any, yaml.Node | None]:
    """Parse rules text (never a file name) into data and its node tree; RulesFileError naming the line."""
    root = None
    loader: _UniqueKeyLoader | None = None
    try:
        _check_depth(text, name)
        loader = _UniqueKeyLoader(text)  # refuses control characters: inside the try
        # One pass: the node tree (kept for error lines) is built once and the data made from it.
        root = loader.get_single_node()
        data = loader.construct_document(root) if root is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        what = getattr(exc, "problem", None) or str(exc)
        raise RulesFileError(name, [Problem("", f"not valid YAML: {what}",
                                            mark.line + 1 if mark else None)]) from None
    except ValueError:  # PyYAML raises plain ValueError for impossible dates such as 2026-13-01
        line, why = _bad_scalar(root)
        raise RulesFileError(name, [Problem("", f"not a valid value: {why}", line)]) from None
    finally:
        if loader is not None:
            loader.dispose()
    return data, root


def _line_of(root: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """1-based line of the YAML node at a pydantic error location (the deepest node that exists)."""
    node = root
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            nxt = next((v for k, v in node.value if getattr(k, "value", None) == str(part)), None)
            if nxt is None:
                break
            node = nxt
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                break
            node = node.value[part]
        else:
            continue  # union tags such as "number" in facts.0.number.current: not in the file
        line = node.start_mark.line + 1
    return line


def _field_path(loc: tuple[Any, ...], root: yaml.Node | None) -> str:
    """`criteria.2.points` -> `criteria[2].points`, skipping pydantic's union-tag parts."""
    out = ""
    node = root
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            in_list = isinstance(node, yaml.SequenceNode) and part < len(node.value)
            node = node.value[part] if in_list else None  # type: ignore[union-attr]
            continue
        keys = {getattr(k, "value", None) for k, _ in node.value} \
            if isinstance(node, yaml.MappingNode) else None
        if keys is not None and str(part) not in keys and part in ("number", "term", "function-after"):
            continue
        out += f".{part}" if out else str(part)
        if isinstance(node, yaml.MappingNode):
            node = next((v for k, v in node.value if getattr(k, "value", None) == str(part)), None)
    return out


def _problems(exc: ValidationError, root: yaml.Node | None) -> list[Problem]:
    problems = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "missing":
            message = "required field is missing"
        elif err["type"] == "extra_forbidden":
            message = "unknown field (check the spelling)"
        problems.append(Problem(_field_path(loc, root), message, _line_of(root, loc)))
    return sorted(problems, key=lambda p: p.line or 0)


def _load(model: type[M], source: Path | str, name: str | None, kind: str) -> M:
    text, display = _read(source, name)
    data, root = parse_yaml(text, display)
    if not isinstance(data, dict):
        raise RulesFileError(display, [Problem("", f"a {kind} file must be a YAML mapping with an `id`, "
                                                   f"`version`, ... at the top level")])
    try:
        loaded = model.model_validate(data)
    except ValidationError as exc:
        raise RulesFileError(display, _problems(exc, root)) from None
    return loaded.with_source(text, display)  # type: ignore[attr-defined, no-any-return]


def load_rubric(source: Path | str, *, name: str | None = None) -> Rubric:
    """Load and validate a rubric from a file (Path) or YAML text (str); RulesError names the line."""
    return _load(Rubric, source, name, "rubric")


def load_policy_pack(source: Path | str, *, name: str | None = None) -> PolicyPack:
    """Load and validate a policy pack from a file (Path) or YAML text (str); RulesError names the line."""
    return _load(PolicyPack, source, name, "policy pack")


def explain(error: BaseException) -> str:
    """A multi-line report of everything wrong with a rules file, for `qa-service rubric check`."""
    if isinstance(error, RulesFileError):
        head = f"{error.source}: {len(error.problems)} problem{'s' if len(error.problems) != 1 else ''}"
        lines = [head] + [f"  {p}" for p in error.problems]
        return "\n".join(lines)
    return str(error)


def check_file(path: Path) -> str:
    """Validate a rubric or policy pack (told apart by its keys); return a summary or raise RulesError."""
    try:
        data, _ = parse_yaml(path.read_text(encoding="utf-8"), path.name)
    except (OSError, UnicodeDecodeError, RulesError):
        data = None  # loading it as a rubric below says what is wrong
    if isinstance(data, dict) and "facts" in data and "criteria" not in data:
        pack = load_policy_pack(path)
        return f"{path.name}: policy pack {pack.id} {pack.version}, {len(pack.facts)} facts, ok"
    rubric = load_rubric(path)
    return (f"{path.name}: rubric {rubric.id} {rubric.version}, {len(rubric.criteria)} criteria, "
            f"{len(rubric.prohibited)} prohibited items, ok")
