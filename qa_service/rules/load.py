"""Load rubric and policy-pack files: parse YAML, validate against the schema, keep text and sha256.

A broken file raises `RulesError` whose message names the file, the field path and the line, e.g.
``visa.yaml:31: criteria[2].points: Input should be a valid number``. Nothing falls back to a default.
"""

from __future__ import annotations

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


def _read(source: Path | str, name: str | None) -> tuple[str, str]:
    """Return (text, display name) for a path or YAML text."""
    if isinstance(source, Path):
        try:
            return source.read_text(encoding="utf-8"), name or source.name
        except (OSError, UnicodeDecodeError) as exc:
            why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise RulesFileError(name or source.name, [Problem("", f"cannot read file: {why}")]) from None
    if "\n" not in source and source.strip().endswith((".yaml", ".yml", ".json")):
        return _read(Path(source), name)
    return source, name or "<text>"


def _bad_scalar_line(root: yaml.Node | None) -> int | None:
    """Line of the first scalar PyYAML cannot construct (an impossible date), for the error message."""
    stack = [root] if root is not None else []
    loader = yaml.SafeLoader("")
    while stack:
        node = stack.pop(0)
        if isinstance(node, yaml.ScalarNode):
            try:
                loader.construct_object(node)
            except ValueError:
                return node.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
        elif isinstance(node, yaml.MappingNode):
            stack.extend(v for _, v in node.value)
    return None


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
    try:
        root = yaml.compose(text, Loader=_UniqueKeyLoader)
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        what = getattr(exc, "problem", None) or str(exc)
        raise RulesFileError(display, [Problem("", f"not valid YAML: {what}",
                                               mark.line + 1 if mark else None)]) from None
    except ValueError as exc:  # PyYAML raises plain ValueError for impossible dates such as 2026-13-01
        line = _bad_scalar_line(root)
        raise RulesFileError(display, [Problem("", f"not a valid value: {exc}", line)]) from None
    if not isinstance(data, dict):
        raise RulesFileError(display, [Problem("", f"a {kind} file must be a YAML mapping with an `id`, "
                                                   f"`version`, ... at the top level")])
    try:
        loaded = model.model_validate(data)
    except ValidationError as exc:
        raise RulesFileError(display, _problems(exc, root)) from None
    return loaded.with_source(text, display)  # type: ignore[attr-defined, no-any-return]


def load_rubric(source: Path | str, *, name: str | None = None) -> Rubric:
    """Load and validate a rubric from a path or YAML text; raise RulesError naming file, field and line."""
    return _load(Rubric, source, name, "rubric")


def load_policy_pack(source: Path | str, *, name: str | None = None) -> PolicyPack:
    """Load and validate a policy pack from a path or YAML text; RulesError names file, field and line."""
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
        text = path.read_text(encoding="utf-8")
        data = yaml.safe_load(text)
    except (OSError, yaml.YAMLError):
        data = None
    if isinstance(data, dict) and "facts" in data and "criteria" not in data:
        pack = load_policy_pack(path)
        return f"{path.name}: policy pack {pack.id} {pack.version}, {len(pack.facts)} facts, ok"
    rubric = load_rubric(path)
    return (f"{path.name}: rubric {rubric.id} {rubric.version}, {len(rubric.criteria)} criteria, "
            f"{len(rubric.prohibited)} prohibited items, ok")
