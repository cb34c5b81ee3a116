"""Unknown query parameters are refused: a misspelt filter (`?agentid=`, `?external-id=`) answers 422
naming it and the parameters the route accepts, instead of a listing that silently ignores it.

One mechanism for every API route: an app-wide dependency compares the query's names with the
parameters the matched route declares (its own and its dependencies'). The web pages are left out:
links, bookmarks and browsers add parameters of their own (`utm_source`, `fbclid`), and a page that
refuses them helps nobody.
"""

from __future__ import annotations

from fastapi import Request
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError

SERVICE_PATHS = frozenset({"/healthz", "/metrics"})


def is_api(path: str) -> bool:
    """Whether a request path belongs to the API (not to the web pages)."""
    return path.startswith("/v1/") or path == "/v1" or path in SERVICE_PATHS


def declared_query(dependant: Dependant) -> frozenset[str]:
    """The query parameter names a route declares, by the name a client writes (the alias)."""
    names = {field.alias for field in dependant.query_params}
    for sub in dependant.dependencies:
        names |= declared_query(sub)
    return frozenset(names)


async def refuse_unknown_query(request: Request) -> None:
    """422 for a query parameter the matched API route does not declare, naming the ones it accepts."""
    if not request.scope.get("query_string") or not is_api(request.url.path):
        return
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return
    accepted = declared_query(dependant)  # a few fields to walk, only for requests with a query
    unknown = sorted(set(request.query_params.keys()) - accepted)
    if unknown:
        listed = ", ".join(sorted(accepted)) if accepted else "none"
        raise RequestValidationError([
            {"loc": ("query", name), "type": "unknown_parameter",
             "msg": f"unknown query parameter; this route accepts: {listed}"} for name in unknown])
