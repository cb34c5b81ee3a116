"""Download a call's recording from the URL a telephony system gave, carefully.

Only http and https; no private, loopback or link-local addresses unless QA_ALLOW_PRIVATE_URLS is
set (a webhook must not make the worker read internal services): the connection goes to the address
that was judged (qa_service/outbound.py). Redirects are followed by hand and each hop is checked
again; size cap, timeouts, an audio content type, and the body as sent: no Content-Encoding, so a
small compressed body cannot expand past the size cap.
"""

from __future__ import annotations

import ipaddress
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit

import httpx

from qa_service import outbound
from qa_service.errors import InputError, TransientError
from qa_service.outbound import UrlRefused
from qa_service.storage.inputs import AUDIO_SUFFIXES

if TYPE_CHECKING:
    from qa_service.storage.objects import InputStore

MAX_REDIRECTS = 3
CONNECT_TIMEOUT_S = 10
READ_TIMEOUT_S = 60
TOTAL_TIMEOUT_S = 15 * 60
ACCEPTED_TYPES = ("audio/", "video/", "application/octet-stream", "binary/octet-stream", "application/ogg")
# Compressed transfer is refused rather than decoded: audio hardly compresses, and a gzip bomb would
# only be caught after it expanded.
REQUEST_HEADERS = {"Accept": "audio/*", "Accept-Encoding": "identity"}
LABEL = "recording_url"


def check_url(url: str, *, allow_private: bool, resolve: bool = True) -> None:
    """Refuse URLs that are not http(s) or that point at private addresses (unless allowed)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise UrlRefused("recording_url must be an http or https URL")
    host = parts.hostname
    if not host:
        raise UrlRefused("recording_url has no host")
    if allow_private:
        return
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        if resolve:
            outbound.resolve(host, parts.port or (443 if parts.scheme == "https" else 80),
                             allow_private=False, label=LABEL)
        return
    if not outbound.is_public(address):
        raise outbound.refused(LABEL)


class _Reader:
    """File-like view of an httpx byte stream, for the input store, with a deadline for the whole body."""

    def __init__(self, chunks: Any, deadline_s: float = TOTAL_TIMEOUT_S):
        self._chunks = iter(chunks)
        self._buf = b""
        self._deadline = time.monotonic() + deadline_s

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buf) < size:
            # A server dripping bytes just inside the read timeout must not hold a worker forever.
            if time.monotonic() > self._deadline:
                raise TransientError(f"downloading the recording took longer than {TOTAL_TIMEOUT_S} s")
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._buf += chunk
        if size < 0:
            out, self._buf = self._buf, b""
        else:
            out, self._buf = self._buf[:size], self._buf[size:]
        return out


def fetch_recording(url: str, inputs: InputStore, call_id: str, settings: Any) -> str:
    """Download the recording, streamed into the input store as the call's input; returns its reference."""
    timeout = httpx.Timeout(READ_TIMEOUT_S, connect=CONNECT_TIMEOUT_S)
    allow_private = settings.allow_private_urls
    with outbound.client(allow_private=allow_private, label=LABEL, timeout=timeout) as client:
        for _ in range(MAX_REDIRECTS + 1):
            # The scheme and a literal address here; the connection resolves a host name once and
            # judges the addresses it connects to, on every hop.
            check_url(url, allow_private=allow_private, resolve=False)
            try:
                with client.stream("GET", url, headers=REQUEST_HEADERS) as response:
                    if response.is_redirect and "location" in response.headers:
                        url = urljoin(url, response.headers["location"])
                        continue
                    return _save(response, inputs, call_id, settings.max_upload_bytes)
            except httpx.TimeoutException:
                raise TransientError("downloading the recording timed out") from None
            except httpx.TransportError as exc:
                raise TransientError(f"downloading the recording failed ({type(exc).__name__})") from None
    raise UrlRefused(f"recording_url redirects more than {MAX_REDIRECTS} times")


def _save(response: Any, inputs: InputStore, call_id: str, max_bytes: int) -> str:
    status = response.status_code
    if status >= 500 or status == 429:
        raise TransientError(f"the recording server answered HTTP {status}")
    if status != 200:
        raise InputError(f"the recording could not be downloaded: HTTP {status}")
    ctype = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype and not ctype.startswith(ACCEPTED_TYPES):
        raise InputError(f"the recording URL returned {ctype!r}, not audio")
    coding = response.headers.get("content-encoding", "").strip().lower()
    if coding not in ("", "identity"):
        raise InputError(f"the recording server sent the recording compressed (Content-Encoding: {coding}); "
                         "serve the audio file as it is (requests ask for Accept-Encoding: identity)")
    length = response.headers.get("content-length", "")
    if length.isdigit() and int(length) > max_bytes:
        raise InputError(f"the recording is larger than the limit of {max_bytes} bytes")
    suffix = Path(urlsplit(str(response.url)).path).suffix.lower()
    suffix = suffix if suffix in AUDIO_SUFFIXES else ".bin"
    # The raw stream: httpx would otherwise decode a Content-Encoding it was not asked for.
    return inputs.put_input(call_id, _Reader(response.iter_raw()), suffix, max_bytes)  # type: ignore[arg-type]
