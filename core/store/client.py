"""The vector store: Weaviate client lifecycle, one collection per knowledge base, upserts and hybrid search.

The only module that imports weaviate. Why one collection per KB rather than multi-tenancy: each KB records
its own embedding model and vector size, keeps its own BM25 statistics, and is deleted in one call; tenants
suit thousands of same-shaped KBs, which is not this kit's case.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar
from urllib.parse import urlparse

import weaviate
from weaviate.classes.config import (
    Configure,
    ConsistencyLevel,
    DataType,
    Property,
    ReplicationConfigCreate,
    ReplicationDeletionStrategy,
    Tokenization,
    VectorDistances,
)
from weaviate.classes.data import DataObject
from weaviate.classes.init import AdditionalConfig, Auth, GrpcConfig, Timeout
from weaviate.classes.query import Filter, HybridFusion, MetadataQuery
from weaviate.collections import CollectionAsync
from weaviate.exceptions import WeaviateBaseError
from weaviate.util import generate_uuid5

from core.config import Settings
from core.errors import EmbedderMismatch, EmptyKB, KBNotFound, StoreError
from core.kb import KBMeta, collection_name, kb_from_collection
from core.store.local import LocalWeaviate
from core.types import Chunk, Source

logger = logging.getLogger(__name__)

SNIPPET_CHARS = 300
T = TypeVar("T")
Consistency = Literal["ONE", "QUORUM", "ALL"]
_INSERT_BATCH = 200
# With several nodes: how long a call runs before its node is checked, and how long that check may take.
_PROBE_SECONDS = 2.0
# Connects to the first node that answers other than the given one (down), returning its URL and client.
OtherNode = Callable[[str], Awaitable[tuple[str, weaviate.WeaviateAsyncClient]]]


def chunk_uuid(doc_id: str, position: int) -> str:
    """Deterministic ids make every write an upsert: a re-run after a crash overwrites, never duplicates."""
    return str(generate_uuid5(f"{doc_id}:{position}"))


def _keyword(name: str, data_type: DataType = DataType.TEXT) -> Property:
    """Exact-match, filterable, kept out of BM25."""
    return Property(
        name=name, data_type=data_type, tokenization=Tokenization.FIELD, index_searchable=False, index_filterable=True
    )


_PROPERTIES = [
    Property(name="text", data_type=DataType.TEXT, tokenization=Tokenization.WORD),
    Property(name="title", data_type=DataType.TEXT, tokenization=Tokenization.WORD),
    Property(name="section", data_type=DataType.TEXT, tokenization=Tokenization.WORD),
    _keyword("doc_id"),
    _keyword("source"),
    _keyword("origin"),
    _keyword("content_hash"),
    Property(name="position", data_type=DataType.INT, index_filterable=True),
    Property(name="ingested_at", data_type=DataType.DATE),
]


@dataclass(frozen=True, kw_only=True)
class KBStats:
    name: str
    documents: int
    chunks: int
    meta: KBMeta


@dataclass(frozen=True, kw_only=True)
class StoredChunk:
    position: int
    content_hash: str
    origin: str
    source: str


@dataclass(frozen=True, kw_only=True)
class DocumentInfo:
    doc_id: str
    title: str
    source: str
    origin: str
    chunks: int


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


def _snippet(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= SNIPPET_CHARS else flat[: SNIPPET_CHARS - 1].rsplit(" ", 1)[0] + "…"


class Store:
    def __init__(
        self,
        client: weaviate.WeaviateAsyncClient,
        *,
        node: str,
        other_node: OtherNode | None,
        consistency: Consistency,
        replication_factor: int,
    ):
        self._client = client
        self._node = node  # the URL of the node self._client talks to
        self._other_node = other_node  # None: a single node, nowhere to fail over to
        self._switching = asyncio.Lock()
        self._consistency: Consistency = consistency
        self._replication_factor = replication_factor
        # KB metadata never changes after creation; caching it keeps per-query checks off the network. It is the
        # cluster's, not a node's, so it stays valid when the store switches nodes.
        self._metas: dict[str, KBMeta] = {}

    # --- knowledge bases --------------------------------------------------------------------

    async def server_version(self) -> str:
        meta = await self._guard(self._client.get_meta())
        return str(meta.get("version", "?"))

    async def cluster_health(self) -> ClusterHealth:
        """Every node of the cluster: the RAFT membership names them all, the node status API only the live ones."""
        live = await self._guard(self._client.cluster.nodes(output="verbose"))
        raft = await self._guard(self._client.cluster.statistics())
        configs = await self._guard(self._client.collections.list_all(simple=False))
        factors = [c.replication_config.factor for name, c in configs.items() if kb_from_collection(name) is not None]
        members = {m.node_id for s in raft.statistics for m in s.raft.latest_configuration}
        nodes = [
            NodeHealth(
                name=n.name,
                status=n.status,
                version=n.version,
                shards=n.stats.shard_count,
                objects=n.stats.object_count,
            )
            for n in live
        ]
        nodes += [NodeHealth(name=name, status="UNREACHABLE") for name in members - {n.name for n in live}]
        return ClusterHealth(
            nodes=tuple(sorted(nodes, key=lambda n: n.name)),
            consistency=self._consistency,
            replication_factor=min(factors, default=self._replication_factor),
        )

    def _collection(self, kb: str) -> CollectionAsync[Any, Any]:
        """Every KB read and write waits for as many replicas as WEAVIATE_CONSISTENCY asks.

        A handle is bound to the current client: take a new one for each call, as the store may switch nodes.
        """
        level = ConsistencyLevel(self._consistency)
        return self._client.collections.use(collection_name(kb)).with_consistency_level(level)

    async def _replication(self) -> ReplicationConfigCreate | None:
        """A replicated KB: as many nodes as replicas, and async replication so that a node that was down catches up."""
        factor = self._replication_factor
        if factor == 1:
            return None
        nodes = len((await self.cluster_health()).nodes)
        if factor > nodes:
            raise StoreError(
                f"WEAVIATE_REPLICATION_FACTOR={factor} needs at least {factor} Weaviate nodes but the cluster has "
                f"{nodes}; lower it or add nodes"
            )
        # Weaviate 1.38 dropped the switch: it runs async replication for every replicated collection.
        major, minor = (int(part) for part in (await self.server_version()).split(".")[:2])
        return Configure.replication(
            factor=factor,
            async_enabled=True if (major, minor) < (1, 38) else None,
            # Re-ingesting reuses chunk ids, so the latest write or delete of an id must win.
            deletion_strategy=ReplicationDeletionStrategy.TIME_BASED_RESOLUTION,
        )

    async def _meta(self, kb: str) -> KBMeta:
        if kb in self._metas:
            return self._metas[kb]
        name = collection_name(kb)
        if not await self._guard(self._client.collections.exists(name)):
            raise KBNotFound(
                f"knowledge base {kb!r} does not exist; create it with `switchboard ingest PATH --kb {kb}`"
            )
        config = await self._guard(self._client.collections.use(name).config.get())
        self._metas[kb] = KBMeta.loads(config.description)
        return self._metas[kb]

    async def ensure_kb(self, kb: str, meta: KBMeta) -> None:
        """Create the KB, or check that an existing one was built with the same embedder."""
        try:
            existing = await self._meta(kb)
        except KBNotFound:
            replication = await self._replication()  # first: it awaits, and the store may switch clients meanwhile
            await self._guard(
                self._client.collections.create(
                    collection_name(kb),
                    description=meta.dumps(),
                    properties=_PROPERTIES,
                    vector_config=Configure.Vectors.self_provided(
                        vector_index_config=Configure.VectorIndex.hnsw(distance_metric=VectorDistances.COSINE)
                    ),
                    replication_config=replication,
                )
            )
            return
        check_embedder(kb, existing, meta.embed_model, meta.embed_dim)

    async def check_kb(self, kb: str, embed_model: str, embed_dim: int) -> KBMeta:
        meta = await self._meta(kb)
        check_embedder(kb, meta, embed_model, embed_dim)
        return meta

    async def list_kbs(self) -> list[KBStats]:
        collections = await self._guard(self._client.collections.list_all(simple=True))
        stats = []
        for name in sorted(collections):
            kb = kb_from_collection(name)
            if kb is not None:
                documents, chunks = await self.counts(kb)
                stats.append(KBStats(name=kb, documents=documents, chunks=chunks, meta=await self._meta(kb)))
        return stats

    async def counts(self, kb: str) -> tuple[int, int]:
        await self._meta(kb)  # KBNotFound rather than a raw query error
        chunks = await self._guard(self._collection(kb).aggregate.over_all(total_count=True))
        # Every document has exactly one chunk at position 0. (A grouped aggregate over doc_id would return at
        # most 100 groups.)
        firsts = await self._guard(
            self._collection(kb).aggregate.over_all(filters=Filter.by_property("position").equal(0), total_count=True)
        )
        return int(firsts.total_count or 0), int(chunks.total_count or 0)

    async def delete_kb(self, kb: str) -> None:
        await self._meta(kb)
        await self._guard(self._client.collections.delete(collection_name(kb)))
        del self._metas[kb]

    # --- chunks -----------------------------------------------------------------------------

    async def stored_chunks(self, kb: str) -> dict[str, dict[str, StoredChunk]]:
        """Everything needed to plan an incremental ingest: doc_id → {uuid: chunk summary}."""
        collection = self._collection(kb)
        index: dict[str, dict[str, StoredChunk]] = {}

        async def collect() -> None:
            async for obj in collection.iterator(
                return_properties=["doc_id", "position", "content_hash", "origin", "source"]
            ):
                p = obj.properties
                index.setdefault(str(p["doc_id"]), {})[str(obj.uuid)] = StoredChunk(
                    position=int(p["position"]),
                    content_hash=str(p["content_hash"]),
                    origin=str(p["origin"]),
                    source=str(p["source"]),
                )

        await self._guard(collect())
        return index

    async def list_documents(self, kb: str) -> list[DocumentInfo]:
        """The KB's documents by source, with their chunk counts."""
        await self._meta(kb)
        collection = self._collection(kb)
        documents: dict[str, DocumentInfo] = {}

        async def collect() -> None:
            async for obj in collection.iterator(return_properties=["doc_id", "title", "source", "origin"]):
                p = obj.properties
                doc_id = str(p["doc_id"])
                known = documents.get(doc_id)
                documents[doc_id] = (
                    replace(known, chunks=known.chunks + 1)
                    if known
                    else DocumentInfo(
                        doc_id=doc_id, title=str(p["title"]), source=str(p["source"]), origin=str(p["origin"]), chunks=1
                    )
                )

        await self._guard(collect())
        return sorted(documents.values(), key=lambda d: d.source)

    async def delete_document(self, kb: str, doc_id: str) -> str | None:
        """Delete every chunk of one document; its source, or None when the KB has no such document."""
        await self._meta(kb)
        where = Filter.by_property("doc_id").equal(doc_id)
        found = await self._guard(
            self._collection(kb).query.fetch_objects(filters=where, limit=1, return_properties=["source"])
        )
        if not found.objects:
            return None
        # One delete_many removes at most QUERY_MAXIMUM_RESULTS objects (10,000 by default): repeat until none.
        while (await self._guard(self._collection(kb).data.delete_many(where=where))).successful:
            pass
        return str(found.objects[0].properties["source"])

    async def upsert(self, kb: str, chunks: Sequence[Chunk], vectors: Sequence[Sequence[float]]) -> None:
        now = datetime.now(UTC)
        objects: list[DataObject[Any, None]] = [
            DataObject(
                uuid=chunk_uuid(c.doc_id, c.position),
                vector=list(v),
                properties={
                    "text": c.text,
                    "title": c.title,
                    "section": c.section,
                    "doc_id": c.doc_id,
                    "source": c.source,
                    "origin": c.origin,
                    "content_hash": c.content_hash,
                    "position": c.position,
                    "ingested_at": now,
                },
            )
            for c, v in zip(chunks, vectors, strict=True)
        ]
        for start in range(0, len(objects), _INSERT_BATCH):
            result = await self._guard(self._collection(kb).data.insert_many(objects[start : start + _INSERT_BATCH]))
            if result.has_errors:
                first = next(iter(result.errors.values()))
                raise StoreError(f"Weaviate rejected {len(result.errors)} chunk(s): {first.message}")

    async def delete_chunks(self, kb: str, uuids: Sequence[str]) -> None:
        for start in range(0, len(uuids), _INSERT_BATCH):
            where = Filter.by_id().contains_any(list(uuids[start : start + _INSERT_BATCH]))
            await self._guard(self._collection(kb).data.delete_many(where=where))

    # --- retrieval --------------------------------------------------------------------------

    async def search(
        self,
        kb: str,
        query: str,
        vector: Sequence[float],
        *,
        alpha: float,
        limit: int,
        source_prefix: str | None = None,
        doc_id: str | None = None,
    ) -> list[Source]:
        collection = self._collection(kb)
        filters = []
        if source_prefix:
            filters.append(Filter.by_property("source").like(source_prefix + "*"))
        if doc_id:
            filters.append(Filter.by_property("doc_id").equal(doc_id))
        result = await self._guard(
            collection.query.hybrid(
                query=query,
                vector=list(vector),
                alpha=alpha,
                limit=limit,
                fusion_type=HybridFusion.RELATIVE_SCORE,
                filters=Filter.all_of(filters) if filters else None,
                return_metadata=MetadataQuery(score=True),
                return_properties=["text", "title", "section", "doc_id", "source", "origin", "position"],
                include_vector=True,
            )
        )
        return [
            Source(
                title=str(o.properties["title"]),
                source=str(o.properties["source"]),
                origin=str(o.properties["origin"]),
                section=str(o.properties["section"]),
                snippet=_snippet(str(o.properties["text"])),
                score=float(o.metadata.score or 0.0),
                relevance=_cosine(vector, o.vector["default"]),  # type: ignore[arg-type]
                doc_id=str(o.properties["doc_id"]),
                position=int(o.properties["position"]),
                text=str(o.properties["text"]),
            )
            for o in result.objects
        ]

    async def require_chunks(self, kb: str) -> None:
        _, chunks = await self.counts(kb)
        if chunks == 0:
            raise EmptyKB(f"knowledge base {kb!r} is empty; add documents with `switchboard ingest PATH --kb {kb}`")

    # --- plumbing ---------------------------------------------------------------------------

    async def _guard(self, awaitable: Awaitable[T]) -> T:
        """Turn client exceptions into one StoreError with a readable message; with several nodes, a failure on a
        node that is down moves the store to another node (the call itself is not replayed: it may not be safe)."""
        client = self._client  # the one the awaitable was built on: callers build it in the same step
        try:
            return await (awaitable if self._other_node is None else self._watched(awaitable, client))
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
        call = asyncio.ensure_future(awaitable)
        try:
            while not (await asyncio.wait({call}, timeout=_PROBE_SECONDS))[0]:
                if not await _answers(client) and not call.done():
                    raise TimeoutError("the node stopped answering")
            return call.result()
        finally:
            call.cancel()  # given up, or this request cancelled; a no-op once the call is done

    async def _failover(self, failed: weaviate.WeaviateAsyncClient) -> bool:
        """After a call on `failed` failed: whether the store has moved to another node, moving now if that
        client's node is down. A node that still answers stays: the error would recur on any node."""
        if self._other_node is None:
            return False
        if self._client is not failed:
            return True  # another request already switched
        if await _answers(failed):
            return False
        async with self._switching:  # concurrent failures: one reconnect
            if self._client is not failed:
                return True
            try:
                node, client = await self._other_node(self._node)
            except StoreError:
                return False  # no other node answers either: keep this one, it may come back
            down, self._node, self._client = self._node, node, client
        logger.warning("Weaviate node %s is down; switched to %s", down, node)
        with suppress(Exception):  # a client whose node died may fail to close; the request's error matters
            await failed.close()
        return True

    async def close(self) -> None:
        await self._client.close()


def check_embedder(kb: str, meta: KBMeta, model: str, dim: int) -> None:
    if meta.embed_model != model or meta.embed_dim != dim:
        raise EmbedderMismatch(
            f"knowledge base {kb!r} was built with {meta.embed_model} ({meta.embed_dim} dims) but the configured "
            f"embedder is {model} ({dim} dims); set EMBED_MODEL={meta.embed_model} or re-ingest into a new KB"
        )


def _cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norm if norm else 0.0


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
    config = AdditionalConfig(timeout=Timeout(init=timeout, query=timeout, insert=max(timeout, 60)), grpc_config=grpc)
    if local is not None:
        yield (
            local.url,
            weaviate.use_async_with_local(
                host="127.0.0.1",
                port=local.http_port,
                grpc_port=local.grpc_port,
                auth_credentials=Auth.api_key(local.api_key),
                additional_config=config,
            ),
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
            ),
        )


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


@asynccontextmanager
async def open_store(settings: Settings, *, keep_running: bool = False) -> AsyncIterator[Store]:
    """Connect to WEAVIATE_URL, or to the local server (started here unless already running).

    A local server this call started is stopped on exit unless keep_running; one that was already
    running is left alone.
    """
    local = None if settings.weaviate_url else LocalWeaviate.from_settings(settings)
    started = await asyncio.to_thread(local.start) if local is not None else False

    async def other_node(down: str) -> tuple[str, weaviate.WeaviateAsyncClient]:
        return await _connect(settings, local, skip=down)

    try:
        node, client = await _connect(settings, local)
        store = Store(
            client,
            node=node,
            # Several nodes: a request failing on a node that is down moves the store to the next that answers.
            other_node=other_node if len(settings.weaviate_nodes) > 1 else None,
            consistency=settings.weaviate_consistency,
            replication_factor=settings.weaviate_replication_factor,
        )
        try:
            yield store
        finally:
            await store.close()
    finally:
        if started and not keep_running and local is not None:
            await asyncio.to_thread(local.stop)
