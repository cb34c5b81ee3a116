"""Answer only to the host names in QA_TRUSTED_HOSTS, so a forged Host header never shapes a reply.

Starlette builds absolute URLs from the Host header (the redirect from `/calls/` to `/calls` is
one); a request naming another host gets 400 before any route sees it. Monitors that probe by
address (`/healthz`, `/metrics`) are let through: those routes never build a URL. So is a request
that names no host at all (HTTP/1.0): its URLs are built from the server's own address.
"""

from __future__ import annotations

from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.types import Receive, Scope, Send

PROBES = frozenset({"/healthz", "/metrics"})


class TrustedHosts(TrustedHostMiddleware):
    """Starlette's Host check, minus the probe routes and requests without a Host header."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (scope["path"] in PROBES or _no_host(scope)):
            await self.app(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def _no_host(scope: Scope) -> bool:
    return not any(name == b"host" for name, _ in scope.get("headers") or ())
