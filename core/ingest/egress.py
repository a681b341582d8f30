"""Outbound HTTP for URL ingestion that cannot be pointed at internal services (SSRF).

An admin (or anyone who can get a URL ingested) must not make the server read loopback, private, link-local,
metadata or other non-public addresses and then serve that content to anonymous chat users. Every request
goes through `PinnedTransport`: it resolves the host itself, refuses the request when any resolved address is
internal (unless INGEST_ALLOWED_HOSTS opts that host or network in), and connects to the address it checked
(the Host header and TLS SNI keep the name), so DNS cannot answer differently between check and connect.
httpx calls the transport for every redirect hop and every sitemap entry, so each of them is checked.

The refusal happens before any connection is attempted, so it says nothing about whether the port is open.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network

import httpx

from core.config import Settings
from core.errors import IngestError

logger = logging.getLogger(__name__)

IPAddress = IPv4Address | IPv6Address
REFUSED = "refused: internal address (to ingest from an internal host, add it to INGEST_ALLOWED_HOSTS)"
MAX_REDIRECTS = 5
_NAT64 = IPv6Network("64:ff9b::/96")  # IPv6 addresses that carry an IPv4 address a NAT64 gateway dials


class InternalAddress(IngestError):
    """The URL (or a redirect) leads to an address that is not public and not in INGEST_ALLOWED_HOSTS."""

    def __init__(self) -> None:
        super().__init__(REFUSED)


def _embedded_ipv4(address: IPAddress) -> IPv4Address | None:
    """The IPv4 address an IPv6 form stands for (::ffff:a.b.c.d, 6to4, NAT64), judged as that address."""
    if isinstance(address, IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    return IPv4Address(address.packed[-4:]) if address in _NAT64 else None


def is_public(address: IPAddress) -> bool:
    """Globally routable unicast: not loopback, private, link-local (cloud metadata), shared, unspecified,
    reserved or multicast."""
    embedded = _embedded_ipv4(address)
    if embedded is not None:
        return is_public(embedded)
    return address.is_global and not address.is_multicast


@dataclass(frozen=True)
class AddressPolicy:
    """Public addresses, plus the internal hosts (by name) and networks INGEST_ALLOWED_HOSTS names."""

    hosts: frozenset[str] = frozenset()
    networks: tuple[IPv4Network | IPv6Network, ...] = ()

    @classmethod
    def from_entries(cls, entries: Iterable[str]) -> AddressPolicy:
        hosts: set[str] = set()
        networks: list[IPv4Network | IPv6Network] = []
        for entry in entries:
            try:
                networks.append(ip_network(entry.strip("[]"), strict=False))
            except ValueError:
                hosts.add(entry.lower().rstrip("."))
        return cls(frozenset(hosts), tuple(networks))

    def allows(self, host: str, address: IPAddress) -> bool:
        if host.lower().rstrip(".") in self.hosts:
            return True
        candidates = [address, *filter(None, [_embedded_ipv4(address)])]
        if any(a in net for a in candidates for net in self.networks):
            return True
        return is_public(address)


async def _resolve(host: str, port: int) -> list[IPAddress]:
    """Every address the name has (decimal, octal and hex IPv4 forms resolve to the address they mean)."""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise httpx.ConnectError(f"cannot resolve {host!r}") from exc
    return list(dict.fromkeys(ip_address(info[4][0]) for info in infos))


class PinnedTransport(httpx.AsyncHTTPTransport):
    """Checks the resolved address of every request and connects to exactly that address."""

    def __init__(self, policy: AddressPolicy) -> None:
        super().__init__()
        self._policy = policy

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        host = url.host
        addresses = await _resolve(host, url.port or (443 if url.scheme == "https" else 80))
        # All of them, not one: a name answering with a public and an internal address is not let through.
        if not addresses or not all(self._policy.allows(host, a) for a in addresses):
            logger.warning("refused to fetch %s: %s resolves to an internal address", url, host)
            raise InternalAddress()
        pinned = httpx.Request(
            request.method,
            url.copy_with(host=str(addresses[0])),
            headers=request.headers,  # keeps Host: the original name
            stream=request.stream,
            extensions={**request.extensions, "sni_hostname": host},  # TLS still verifies the name
        )
        return await super().handle_async_request(pinned)


def ingest_client(settings: Settings) -> httpx.AsyncClient:
    """The client URL ingestion fetches with. A transport is given, so no environment proxy is used (a proxy
    would connect to a name, not to the checked address)."""
    return httpx.AsyncClient(
        transport=PinnedTransport(AddressPolicy.from_entries(settings.ingest_allowed_hosts)),
        timeout=settings.fetch_timeout,
        follow_redirects=True,
        max_redirects=MAX_REDIRECTS,
        headers={"User-Agent": settings.fetch_user_agent},
    )
