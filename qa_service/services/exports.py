"""Exports: the filtered latest scorecards as CSV rows, and the redacted recording a call keeps."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath

from qa_service.storage.inputs import CHUNK
from qa_service.storage.objects import InputStore, ObjectMissing
from qa_service.storage.views import Filters, Views

# Redacted audio a worker may leave beside a call's input; the browser plays these natively.
AUDIO_TYPES = {".wav": "audio/wav", ".mp3": "audio/mpeg", ".ogg": "audio/ogg", ".opus": "audio/ogg",
               ".flac": "audio/flac", ".m4a": "audio/mp4", ".webm": "audio/webm"}
CSV_MEDIA_TYPE = "text/csv; charset=utf-8"


def redacted_audio(inputs: InputStore, call_id: str) -> str | None:
    """The reference of the call's redacted audio when one is kept in a format browsers play; else None."""
    try:
        ref = inputs.redacted_audio(call_id)
    except ValueError:  # not a call id
        return None
    return ref if ref is not None and audio_type(ref) is not None else None


def audio_type(ref: str) -> str | None:
    """The media type of a stored recording, by its suffix."""
    return AUDIO_TYPES.get(PurePosixPath(ref).suffix.lower())



def stored_chunks(inputs: InputStore, ref: str, span: tuple[int, int] | None = None) -> Iterator[bytes]:
    """A stored object's bytes (or bytes first..last of it) a chunk at a time, for a streamed response."""
    try:
        with inputs.open(ref) if span is None else inputs.open_span(ref, *span) as stream:
            while chunk := stream.read(CHUNK):
                yield chunk
    except ObjectMissing:  # deleted between the lookup and the read: the response ends short
        return


class RangeNotSatisfiable(ValueError):
    """A Range header that asks for bytes the object does not have (HTTP 416)."""

    def __init__(self, size: int) -> None:
        super().__init__(f"the range asked for is outside the {size} bytes stored")
        self.size = size


@dataclass(frozen=True)
class StoredBody:
    """An object store's recording as an HTTP answer: the whole object (200) or the range asked (206)."""

    status: int
    headers: dict[str, str]
    chunks: Iterator[bytes]


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """First and last byte (inclusive) of a single-range `Range: bytes=...` header; None for the whole
    object (no header, one the server may ignore: several ranges, another unit, bad syntax).
    RangeNotSatisfiable when the range starts past the end."""
    match = re.fullmatch(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", header or "")
    if match is None or match.group(1) == match.group(2) == "":
        return None
    start, end = match.groups()
    if start == "":  # the last n bytes
        if int(end) == 0:
            raise RangeNotSatisfiable(size)
        return max(size - int(end), 0), size - 1
    first = int(start)
    last = size - 1 if end == "" else min(int(end), size - 1)
    if first >= size:
        raise RangeNotSatisfiable(size)
    if last < first:
        return None
    return first, last


def stored_body(inputs: InputStore, ref: str, range_header: str | None) -> StoredBody:
    """A plain stored object streamed whole or by the byte range a player asks for (seeking without
    fetching the whole recording); RangeNotSatisfiable for a range outside it."""
    size = inputs.size(ref)
    span = byte_range(range_header, size)
    headers = {"Accept-Ranges": "bytes"}
    if span is None:
        return StoredBody(200, headers | {"Content-Length": str(size)}, stored_chunks(inputs, ref))
    first, last = span
    headers |= {"Content-Range": f"bytes {first}-{last}/{size}", "Content-Length": str(last - first + 1)}
    return StoredBody(206, headers, stored_chunks(inputs, ref, span))


# -- CSV ---------------------------------------------------------------------------------------

CSV_COLUMNS = ("call_id", "external_id", "agent_id", "call_date", "rubric_id", "rubric_version",
               "scorecard_version", "score", "passed", "auto_fail", "prohibited", "outdated_policy",
               "violation_ids", "failed_criteria")


def attachment(filename: str) -> dict[str, str]:
    """The header that makes a browser save a download under this (ASCII) name."""
    return {"Content-Disposition": f'attachment; filename="{filename}"'}


def csv_rows(views: Views, filters: Filters) -> Iterator[str]:
    """The filtered latest scorecards as CSV text, a header line first, one row at a time."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")

    def flush() -> str:
        text = buf.getvalue()
        buf.seek(0)
        buf.truncate()
        return text

    writer.writerow(CSV_COLUMNS)
    yield flush()
    for row, data in views.scorecards(filters):
        violations = data.get("violations") or []
        kinds = [v.get("kind") for v in violations]
        failed = [str(c.get("id")) for c in data.get("criteria") or []
                  if c.get("applicable", True) and not c.get("passed")]
        writer.writerow([
            row.call_id, _cell(row.external_id or ""), _cell(row.agent_id), row.call_date.isoformat(),
            _cell(row.rubric_id), _cell(row.rubric_version), row.version, row.score,
            "true" if row.passed else "false", "true" if row.auto_fail else "false",
            kinds.count("prohibited"), kinds.count("outdated_policy"),
            _cell(";".join(str(v.get("id")) for v in violations)), _cell(";".join(failed)),
        ])
        yield flush()


def _cell(value: str) -> str:
    # A spreadsheet runs cells starting with these as formulas; a leading quote keeps them text.
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value
