"""Answer only to the host names in QA_TRUSTED_HOSTS, so a forged Host header never shapes a reply.

Starlette builds absolute URLs from the Host header (the redirect from `/calls/` to `/calls` is
one); a request naming another host gets 400 before any route sees it. Monitors that probe by
address (`/healthz`, `/metrics`) are let through: those routes never build a URL. So is a request
that names no host at all (HTTP/1.0): its URLs are built from the server's own address.
"""

from __future__ import annotations

from starlette._utils import parse_host_header
from starlette.datastructures import Headers
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.responses import JSONResponse
from starlette.types import Receive, Scope, Send

from qa_service.api.schemas import error_body

PROBES = frozenset({"/healthz", "/metrics"})


class TrustedHosts(TrustedHostMiddleware):
    """Starlette's Host check, minus the probe routes and requests without a Host header, refusing in
    the API's one error format (JSON) rather than in plain text."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (scope["path"] in PROBES or _no_host(scope)):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "http" and not self.allow_any and not self._trusted(scope):
            await JSONResponse(error_body("the Host header names a host this service does not answer to"),
                               status_code=400)(scope, receive, send)
            return
        await super().__call__(scope, receive, send)

    def _trusted(self, scope: Scope) -> bool:
        # Starlette's own parsing of the header, so both checks agree on what a host is.
        parsed = parse_host_header(Headers(scope=scope).get("host"))
        if parsed is None:
            return False
        host = parsed.host.lower()
        return any(host == p or (p.startswith("*") and host.endswith(p[1:])) for p in self.allowed_hosts)


def _no_host(scope: Scope) -> bool:
    return not any(name == b"host" for name, _ in scope.get("headers") or ())
