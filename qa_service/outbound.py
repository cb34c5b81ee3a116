"""Outgoing HTTP connections that go to the address that was checked, and only there.

Recording downloads and outgoing webhooks use `client()`. Each new connection resolves its host
once, judges every address the resolver gave, and opens the socket to one of those addresses:
a name that answers a public address to a check and 127.0.0.1 to the connection (DNS rebinding)
reaches nothing but the public address. The Host header, TLS SNI and certificate verification
still use the host name. A redirect hop or a reconnection is a new connection, judged again.

An address is public when it is global unicast. IPv6 forms that carry an IPv4 address are judged
by that IPv4, which is where the network delivers them: IPv4-mapped (::ffff:0:0/96), IPv4-translated
(::ffff:0:0:0/96), IPv4-compatible (::/96), NAT64 (64:ff9b::/96), 6to4 (2002::/16) and Teredo
(2001::/32: its server and its client address). The local-use NAT64 prefix 64:ff9b:1::/48 is
refused: it is not globally reachable, and where an address in it carries the IPv4 depends on the
prefix length the site chose, so no single reading of it can be trusted.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable

import httpcore
import httpx

from qa_service.errors import InputError, TransientError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_IPV4_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")
_IPV4_TRANSLATED = ipaddress.IPv6Network("::ffff:0:0:0/96")
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")
_LAST_32_BITS = (_IPV4_MAPPED, _IPV4_TRANSLATED, _IPV4_COMPATIBLE, _NAT64)


class UrlRefused(InputError):
    """A URL the service will not connect to."""


def embedded_ipv4(address: IPAddress) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries (none for a plain IPv6 or an IPv4 address)."""
    if isinstance(address, ipaddress.IPv4Address):
        return []
    if any(address in network for network in _LAST_32_BITS):
        return [ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)]
    if address.sixtofour is not None:
        return [address.sixtofour]
    if address.teredo is not None:
        return list(address.teredo)
    return []


def is_public(address: IPAddress) -> bool:
    """True for a global unicast address, judging IPv6 forms that carry an IPv4 by that IPv4."""
    if isinstance(address, ipaddress.IPv6Address) and address in _NAT64_LOCAL:
        return False
    carried = embedded_ipv4(address)
    if carried:
        return all(_global_unicast(v4) for v4 in carried)
    return _global_unicast(address)


def _global_unicast(address: IPAddress) -> bool:
    return address.is_global and not address.is_multicast


def refused(label: str) -> UrlRefused:
    """The error for a URL whose host is or resolves to an address that is not public."""
    return UrlRefused(f"{label} points to a private, loopback or link-local address; "
                      "set QA_ALLOW_PRIVATE_URLS=true to allow internal servers")


def resolve(host: str, port: int, *, allow_private: bool, label: str) -> list[IPAddress]:
    """Resolve a host once and return its addresses, refusing if any of them is not public."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError):
        raise TransientError(f"the {label} host does not resolve (DNS)") from None
    addresses = list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in infos))
    # One private answer among public ones refuses the host: the order of answers is the resolver's.
    if not allow_private and not all(is_public(address) for address in addresses):
        raise refused(label)
    return addresses


class _CheckedBackend(httpcore.NetworkBackend):
    """httpcore's socket backend, connecting to the addresses `resolve` judged instead of the name."""

    def __init__(self, *, allow_private: bool, label: str):
        self._sockets = httpcore.SyncBackend()
        self._allow_private = allow_private
        self._label = label

    def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                    local_address: str | None = None,
                    socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None) -> httpcore.NetworkStream:
        addresses = resolve(host, port, allow_private=self._allow_private, label=self._label)
        failure: httpcore.ConnectError | httpcore.ConnectTimeout | None = None
        # Each address in the resolver's order, as socket.create_connection would, but only these.
        for address in addresses:
            try:
                return self._sockets.connect_tcp(str(address), port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        raise failure or httpcore.ConnectError(f"the {self._label} host has no address")

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None
                            ) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("outgoing connections use TCP only")

    def sleep(self, seconds: float) -> None:
        self._sockets.sleep(seconds)


class _CheckedTransport(httpx.HTTPTransport):
    """httpx's transport on a connection pool that uses `_CheckedBackend`, without proxies."""

    def __init__(self, *, allow_private: bool, label: str):
        super().__init__(trust_env=False)
        # httpx.HTTPTransport takes no network backend; its pool is swapped for one that has ours
        # (handle_request only calls self._pool), with the TLS context httpx would have built.
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            network_backend=_CheckedBackend(allow_private=allow_private, label=label),
        )


def client(*, allow_private: bool, label: str, timeout: httpx.Timeout) -> httpx.Client:
    """An httpx Client whose connections go only to checked addresses; no redirects, no proxies."""
    # `label` names the URL in error messages: the field or setting the user can fix.
    return httpx.Client(transport=_CheckedTransport(allow_private=allow_private, label=label),
                        timeout=timeout, follow_redirects=False, trust_env=False)
