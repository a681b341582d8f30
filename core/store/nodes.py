"""Weaviate nodes: connecting to the first one that answers, moving to another when that one goes down, and the
cluster's health as the store reports it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass
from typing import Literal, TypeVar
from urllib.parse import urlparse

import weaviate
from weaviate.classes.init import AdditionalConfig, Auth, GrpcConfig, Timeout
from weaviate.exceptions import WeaviateBaseError

from core.config import Settings
from core.errors import StoreError
from core.store.local import LocalWeaviate

logger = logging.getLogger(__name__)

T = TypeVar("T")
Consistency = Literal["ONE", "QUORUM", "ALL"]
# With several nodes: how long a call runs before its node is checked, and how long that check may take.
_PROBE_SECONDS = 2.0
# Connects to the first node that answers other than the given one (down), returning its URL and client.
OtherNode = Callable[[str], Awaitable[tuple[str, weaviate.WeaviateAsyncClient]]]


@dataclass(frozen=True, kw_only=True)
class NodeHealth:
    name: str
    status: str  # HEALTHY, else what the cluster says (UNAVAILABLE, TIMEOUT, …) or UNREACHABLE
    version: str = ""
    shards: int = 0
    objects: int = 0


@dataclass(frozen=True, kw_only=True)
class ClusterHealth:
    nodes: tuple[NodeHealth, ...]
    consistency: Consistency
    replication_factor: int  # the smallest among the KBs: the one a down node hurts first

    @property
    def healthy(self) -> int:
        return sum(node.status == "HEALTHY" for node in self.nodes)

    @property
    def serving(self) -> bool:
        """Whether every read and write still gets its acknowledgements, should all down nodes hold one shard."""
        replicas = min(self.replication_factor, len(self.nodes))
        needed = {"ONE": 1, "QUORUM": replicas // 2 + 1, "ALL": replicas}[self.consistency]
        return len(self.nodes) - self.healthy <= replicas - needed

    @property
    def summary(self) -> str:
        counts = f"{self.healthy}/{len(self.nodes)} healthy"
        return f"{counts} at {self.consistency}" if self.serving else f"{counts}, too few for {self.consistency}"


class FailoverClient:
    """The client of the node the store talks to; with several nodes, a failure on a node that is down moves it
    to the next node that answers."""

    def __init__(self, client: weaviate.WeaviateAsyncClient, *, node: str, other_node: OtherNode | None):
        self.client = client  # calls are built on it: take it anew for each call, as it changes on a switch
        self._node = node  # the URL of the node self.client talks to
        self._other_node = other_node  # None: a single node, nowhere to fail over to
        self._switching = asyncio.Lock()

    async def guard(self, awaitable: Awaitable[T]) -> T:
        """Turn client exceptions into one StoreError with a readable message; with several nodes, a failure on a
        node that is down moves the store to another node (the call itself is not replayed: it may not be safe)."""
        client = self.client  # the one the awaitable was built on: callers build it in the same step
        try:
            # Watched with one node too: a search on a warm store (its KB metadata cached, so no REST call first)
            # would otherwise wait out the client's minute of gRPC retries when Weaviate is down.
            return await self._watched(awaitable, client)
        except (WeaviateBaseError, TimeoutError, OSError) as exc:
            if isinstance(exc, WeaviateBaseError):
                reason = f"Weaviate error: {_short(exc)}"
            else:
                reason = f"Weaviate is unreachable: {exc}"
            if await self._failover(client):
                reason += f"; switched to Weaviate node {self._node}, so the request can be retried"
            raise StoreError(reason) from exc

    async def _watched(self, awaitable: Awaitable[T], client: weaviate.WeaviateAsyncClient) -> T:
        """The call, given up as soon as its node stops answering: the client retries a gRPC call (searches,
        counts, writes) to an unreachable node for about a minute before it fails."""
        # With nowhere to fail over to, one missed probe may be a busy node, not a dead one: give it a second.
        allowed_misses = 1 if self._other_node is not None else 2
        call = asyncio.ensure_future(awaitable)
        misses = 0
        try:
            while not (await asyncio.wait({call}, timeout=_PROBE_SECONDS))[0]:
                misses = 0 if await _answers(client) else misses + 1
                if misses >= allowed_misses and not call.done():
                    raise TimeoutError("the node stopped answering")
            return call.result()
        finally:
            call.cancel()  # given up, or this request cancelled; a no-op once the call is done

    async def _failover(self, failed: weaviate.WeaviateAsyncClient) -> bool:
        """After a call on `failed` failed: whether the store has moved to another node, moving now if that
        client's node is down. A node that still answers stays: the error would recur on any node."""
        if self._other_node is None:
            return False
        if self.client is not failed:
            return True  # another request already switched
        if await _answers(failed):
            return False
        async with self._switching:  # concurrent failures: one reconnect
            if self.client is not failed:
                return True
            try:
                node, client = await self._other_node(self._node)
            except StoreError:
                return False  # no other node answers either: keep this one, it may come back
            down, self._node, self.client = self._node, node, client
        logger.warning("Weaviate node %s is down; switched to %s", down, node)
        with suppress(Exception):  # a client whose node died may fail to close; the request's error matters
            await failed.close()
        return True

    async def close(self) -> None:
        await self.client.close()


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 300 else text[:297] + "..."


async def _answers(client: weaviate.WeaviateAsyncClient) -> bool:
    """Whether the client's node still answers. (Not client.is_live(): it prints its errors to stdout, which is
    the MCP stdio transport's.)"""
    try:
        await asyncio.wait_for(client.get_meta(), _PROBE_SECONDS)
    except (WeaviateBaseError, TimeoutError, OSError):
        return False
    return True


def _clients(
    settings: Settings, local: LocalWeaviate | None, skip: str | None
) -> Iterator[tuple[str, weaviate.WeaviateAsyncClient]]:
    """A client for each node to try (but skip), in order, with the URL it is known by."""
    timeout = settings.weaviate_timeout
    # Several nodes: each client keeps its own gRPC connections. gRPC otherwise shares them per address across the
    # process, so refused connections to a dead node (and their reconnect backoff) would outlive the client that
    # failed over and fail new clients for seconds once the node is back.
    grpc = (
        GrpcConfig(channel_options=[("grpc.use_local_subchannel_pool", 1)])
        if len(settings.weaviate_nodes) > 1
        else None
    )
    # skip_init_checks: besides a gRPC ping, the client's connect asks pypi.org for its latest version, and
    # nothing here may call beyond the configured nodes. Connecting still reads the node's meta over REST.
    config = AdditionalConfig(timeout=Timeout(init=timeout, query=timeout, insert=max(timeout, 60)), grpc_config=grpc)
    if local is not None:
        yield (
            local.url,
            local_client(local, config),
        )
        return
    key = settings.weaviate_api_key
    for node, grpc_port in settings.weaviate_nodes:
        if node == skip:
            continue
        url = urlparse(node)
        secure = url.scheme == "https"
        yield (
            node,
            weaviate.use_async_with_custom(
                http_host=url.hostname or "",
                http_port=url.port or (443 if secure else 80),
                http_secure=secure,
                grpc_host=url.hostname or "",
                grpc_port=grpc_port or (443 if secure else 50051),
                grpc_secure=secure,
                auth_credentials=Auth.api_key(key.get_secret_value()) if key else None,
                additional_config=config,
                skip_init_checks=True,
            ),
        )


def local_client(local: LocalWeaviate, config: AdditionalConfig | None = None) -> weaviate.WeaviateAsyncClient:
    """A client of the kit's own Weaviate server (not yet connected)."""
    return weaviate.use_async_with_local(
        host="127.0.0.1",
        port=local.http_port,
        grpc_port=local.grpc_port,
        auth_credentials=Auth.api_key(local.api_key),
        additional_config=config,
        skip_init_checks=True,
    )


async def open_client(settings: Settings, local: LocalWeaviate | None) -> FailoverClient:
    """A client of the first node that answers; with several nodes, one that fails over to the others."""

    async def other_node(down: str) -> tuple[str, weaviate.WeaviateAsyncClient]:
        return await _connect(settings, local, skip=down)

    node, client = await _connect(settings, local)
    # Several nodes: a request failing on a node that is down moves the store to the next that answers.
    return FailoverClient(client, node=node, other_node=other_node if len(settings.weaviate_nodes) > 1 else None)


async def _connect(
    settings: Settings, local: LocalWeaviate | None, *, skip: str | None = None
) -> tuple[str, weaviate.WeaviateAsyncClient]:
    """The first node that answers (but skip), with its URL: any node of a Weaviate cluster serves every request."""
    failures = []
    for url, client in _clients(settings, local, skip):
        try:
            await client.connect()
        except WeaviateBaseError as exc:
            failures.append(f"{url}: {_short(exc)}")
            await client.close()
        else:
            return url, client
    raise StoreError(f"cannot reach Weaviate at {'; '.join(failures)}; is it running?")
