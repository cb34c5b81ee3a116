"""Records files in: the one way certifications, training records and team memberships are read, from a
CSV file (the command line, an API body with Content-Type text/csv) or a JSON list of records (an API
body).

Every import is all or nothing: each line (or item) is checked, every problem is named with its line,
and one bad line refuses the whole file (`ImportRefused`, HTTP 422). The services say what a record
is (`certification_from`, `membership_from`, ...) with `text_field` and `day_field`; this module reads
the rows they come in.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Iterable, Sequence
from datetime import date
from typing import TypeVar

from qa_service.errors import InputError

T = TypeVar("T")
# A line's problems are all listed, up to this many lines' worth (a wrong file fails on every line).
MAX_PROBLEMS = 50
CSV_MEDIA_TYPE = "text/csv"
_IDENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")

Problems = list[tuple[int, str]]
Parse = Callable[[dict[str, str]], tuple[T | None, list[str]]]


class ImportRefused(InputError):
    """A records file (or request) with bad lines: nothing of it was stored. `problems` are (line, message)
    pairs; line 1 is the header (`unit` "item": the n-th record of a JSON request)."""

    def __init__(self, what: str, problems: Problems, unit: str = "line"):
        shown = problems[:MAX_PROBLEMS]
        more = f"; and {len(problems) - len(shown)} more" if len(problems) > len(shown) else ""
        lines = "; ".join(f"{unit} {n}: {m}" for n, m in shown)
        self.unit = unit
        super().__init__(f"{what} refused, nothing was imported: {lines}{more}")
        self.problems = problems


# -- fields ------------------------------------------------------------------------------------------

def day_field(value: str, field: str, problems: list[str]) -> date | None:
    """A YYYY-MM-DD field, or None with the problem noted."""
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        problems.append(f"{field} {value.strip()!r} is not a date (YYYY-MM-DD)" if value.strip()
                        else f"{field} is empty")
        return None


def text_field(value: str, field: str, problems: list[str], *, limit: int = 100, ident: bool = False) -> str:
    """A required text field, stripped; a problem noted when empty, too long, not an id (`ident`) or
    holding control characters."""
    value = value.strip()
    if not value:
        problems.append(f"{field} is empty")
    elif len(value) > limit:
        problems.append(f"{field} is longer than {limit} characters")
    elif ident and not _IDENT.match(value):
        problems.append(f"{field} {value!r} is not an id (letters, digits and _ . : -)")
    elif any(ord(c) < 32 for c in value):
        problems.append(f"{field} holds control characters")
    return value


# -- rows --------------------------------------------------------------------------------------------

Rows = list[tuple[int, dict[str, str]]]


def csv_rows(text: str, columns: tuple[str, ...], what: str) -> tuple[Rows, Problems]:
    """The data lines of a CSV file with exactly these columns (any order), with their line numbers, and
    the lines that could not be read; ImportRefused for a file without the header."""
    if text.startswith("\ufeff"):
        text = text[1:]  # a spreadsheet's byte order mark
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [h.strip().lower() for h in next(reader)]
    except StopIteration:
        raise ImportRefused(what, [(1, f"the file is empty; the first line names the columns: "
                                       f"{','.join(columns)}")]) from None
    except csv.Error as exc:
        raise ImportRefused(what, [(1, f"not CSV: {exc}")]) from None
    missing = [c for c in columns if c not in header]
    extra = [h for h in header if h not in columns]
    if missing or extra or len(set(header)) != len(header):
        told = (f"missing {', '.join(missing)}" if missing else "") + \
            ("; " if missing and extra else "") + (f"unknown {', '.join(extra)}" if extra else "")
        raise ImportRefused(what, [(1, f"the header must name the columns {','.join(columns)} "
                                       f"({told or 'a column is repeated'})")])
    rows: Rows = []
    problems: Problems = []
    try:
        for values in reader:
            line = reader.line_num
            if not any(v.strip() for v in values):
                continue
            if len(values) != len(header):
                problems.append((line, f"{len(values)} values for {len(header)} columns"))
                continue
            rows.append((line, dict(zip(header, values, strict=True))))
    except csv.Error as exc:
        problems.append((reader.line_num, f"not CSV: {exc}"))
    return rows, problems


def json_rows(items: Sequence[dict[str, str]], columns: tuple[str, ...]) -> tuple[Rows, Problems]:
    """The records of a JSON request numbered from 1, as `csv_rows` numbers lines; a record with a field
    the file's columns do not name is a problem."""
    rows: Rows = []
    problems: Problems = []
    for n, fields in enumerate(items, start=1):
        unknown = sorted(set(fields) - set(columns))
        if unknown:
            problems.append((n, f"unknown fields {', '.join(unknown)}; use {','.join(columns)}"))
        else:
            rows.append((n, fields))
    return rows, problems


def parsed(rows: Iterable[tuple[int, dict[str, str]]], parse: Parse[T],
           problems: Problems) -> list[tuple[int, T]]:
    """Each numbered row read by `parse`; its problems go to `problems` under its number."""
    items: list[tuple[int, T]] = []
    for n, fields in rows:
        item, bad = parse(fields)
        problems.extend((n, m) for m in bad)
        if item is not None:
            items.append((n, item))
    return items


def refuse(what: str, problems: Problems, unit: str = "line") -> None:
    """ImportRefused naming every problem, in line order, when there is any."""
    if problems:
        raise ImportRefused(what, sorted(problems, key=lambda p: p[0]), unit=unit)


def body_records(body: bytes, content_type: str) -> tuple[str | None, list[dict[str, str]] | None]:
    """A request body as CSV text (Content-Type text/csv) or as a JSON list of records, their values as
    text (a list becomes `a;b`); ImportRefused for a body that is neither."""
    try:
        decoded = body.decode("utf-8")
    except UnicodeDecodeError:
        raise ImportRefused("body", [(1, "not UTF-8 text")]) from None
    if content_type.split(";")[0].strip().lower() == CSV_MEDIA_TYPE:
        return decoded, None
    try:
        items = json.loads(decoded)
    except ValueError:
        raise ImportRefused("body", [(1, "not JSON; send a JSON list of records, or a CSV file with "
                                         "Content-Type: text/csv")]) from None
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise ImportRefused("body", [(1, "send a JSON list of records (objects)")])
    return None, [{k: v if isinstance(v, str) else ";".join(map(str, v)) if isinstance(v, list) else str(v)
                   for k, v in item.items()} for item in items]
