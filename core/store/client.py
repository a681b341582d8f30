"""The KB store: one Weaviate collection per knowledge base, its CRUD and hybrid search, over a client that
fails over between nodes (core.store.nodes); the schema is core.store.schema's.

A KB's public name (`Switchboard_<kb>`) is an alias of the versioned collection holding its data
(`Switchboard_<kb>_V<n>`), so `kb reembed` can build the next version beside it and switch atomically; object
reads and writes go through the alias. KBs created before aliases are a plain collection under the public name
until their first reembed.

Why one collection per KB rather than multi-tenancy: each KB records its own embedding model and vector size,
keeps its own BM25 statistics, and is deleted in one call; tenants suit thousands of same-shaped KBs, which is
not this kit's case.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Collection, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, TypeVar

import weaviate
from weaviate.classes.config import (
    Configure,
    ConsistencyLevel,
    ReplicationConfigCreate,
    ReplicationDeletionStrategy,
    VectorDistances,
)
from weaviate.classes.data import DataObject
from weaviate.classes.query import Filter, HybridFusion, MetadataQuery, Metrics
from weaviate.collections import CollectionAsync
from weaviate.collections.classes.aggregate import AggregateInteger

from core.config import Fusion, Settings
from core.errors import EmptyKB, KBNotFound, StoreError
from core.kb import KBMeta, collection_name, kb_from_collection, parse_version, version_name
from core.store.local import LocalWeaviate
from core.store.nodes import ClusterHealth, Consistency, FailoverClient, NodeHealth, open_client
from core.store.schema import DOC_CHUNKS, PROPERTIES, DocumentInfo, KBStats, StoredChunk, check_embedder, chunk_uuid
from core.types import Chunk, Source

SNIPPET_CHARS = 300
T = TypeVar("T")
_INSERT_BATCH = 200
# Property updates are one REST call each: this many in flight, well inside the client's connection pool.
_UPDATE_CONCURRENCY = 32
_FILTERED_MAX = 10_000  # QUERY_MAXIMUM_RESULTS, Weaviate's default cap on one query
_ALIAS_SETTLE_SECONDS = 30.0


def _snippet(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= SNIPPET_CHARS else flat[: SNIPPET_CHARS - 1].rsplit(" ", 1)[0] + "…"


class Store:
    def __init__(self, link: FailoverClient, *, consistency: Consistency, replication_factor: int):
        self._link = link
        self._consistency: Consistency = consistency
        self._replication_factor = replication_factor
        # KB metadata changes only when a reembed switches the KB; caching it keeps per-query checks off the network,
        # and writers re-read it under the KB's write lock (ensure_kb). It is the cluster's, not a node's, so it
        # stays valid when the store switches nodes.
        self._metas: dict[str, KBMeta] = {}

    @property
    def _client(self) -> weaviate.WeaviateAsyncClient:
        """The current node's client: build each call on it anew, as the store may switch nodes."""
        return self._link.client

    async def _guard(self, awaitable: Awaitable[T]) -> T:
        """Client errors as one StoreError; with several nodes, a node found down is left for another."""
        return await self._link.guard(awaitable)

    # --- knowledge bases --------------------------------------------------------------------

    async def server_version(self) -> str:
        meta = await self._guard(self._client.get_meta())
        return str(meta.get("version", "?"))

    async def cluster_health(self) -> ClusterHealth:
        """Every node of the cluster: the RAFT membership names them all, the node status API only the live ones."""
        live = await self._guard(self._client.cluster.nodes(output="verbose"))
        raft = await self._guard(self._client.cluster.statistics())
        configs = await self._guard(self._client.collections.list_all(simple=False))
        factors = [c.replication_config.factor for name, c in configs.items() if _holds_kb(name)]
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
        """Object reads and writes go through the KB's public name (its alias), so they follow a reembed's switch."""
        return self._use(collection_name(kb))

    def _use(self, name: str) -> CollectionAsync[Any, Any]:
        """Every KB read and write waits for as many replicas as WEAVIATE_CONSISTENCY asks.

        A handle is bound to the current client: take a new one for each call, as the store may switch nodes.
        """
        return self._client.collections.use(name).with_consistency_level(ConsistencyLevel(self._consistency))

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
        meta = KBMeta.loads(config.description)
        if DOC_CHUNKS.name not in {p.name for p in config.properties}:
            await self._add_doc_chunks(await self._serving(kb) or name)  # schema changes need the collection
        self._metas[kb] = meta
        return meta

    async def _add_doc_chunks(self, collection: str) -> None:
        """A KB built before chunk counts lacks the property, and Weaviate refuses to return a property it does not
        know: add it in place (its chunks read as unset until the next ingest counts them). Another process may
        add it at the same moment; that is not an error."""
        try:
            await self._guard(self._client.collections.use(collection).config.add_property(DOC_CHUNKS))
        except StoreError:
            config = await self._guard(self._client.collections.use(collection).config.get())
            if DOC_CHUNKS.name not in {p.name for p in config.properties}:
                raise

    async def ensure_kb(self, kb: str, meta: KBMeta) -> KBMeta:
        """Create the KB with `meta`, or check that an existing one was built with the same embedder; returns the
        KB's metadata as stored now (a reembed by another process may have changed it).

        A new KB is a versioned collection behind an alias of the KB's name, so that a later reembed can switch
        it atomically. The caller holds the KB's write lock (core.ingest.lock).
        """
        self._metas.pop(kb, None)
        try:
            existing = await self._meta(kb)
        except KBNotFound:
            collection = await self.new_version(kb, meta)
            await self._guard(self._client.alias.create(alias_name=collection_name(kb), target_collection=collection))
            await self._settle_alias(kb, collection)
            return meta
        check_embedder(kb, existing, meta.embed_model, meta.embed_dim)
        await self.fill_doc_chunks(kb)
        return existing

    async def fill_doc_chunks(self, kb: str) -> int:
        """Give chunks stored before document counts existed their document's count, read from what is stored;
        returns how many were updated. One aggregate when there is nothing to do. The caller holds the KB's
        write lock."""
        counted = await self._guard(
            self._collection(kb).aggregate.over_all(
                return_metrics=Metrics(DOC_CHUNKS.name).integer(count=True), total_count=True
            )
        )
        metric = counted.properties[DOC_CHUNKS.name]
        if isinstance(metric, AggregateInteger) and metric.count == counted.total_count:
            return 0
        counts = {
            uid: len(chunks)
            for chunks in (await self.stored_chunks(kb)).values()
            for uid, chunk in chunks.items()
            if chunk.doc_chunks != len(chunks)
        }
        await self.set_doc_chunks(kb, counts)
        return len(counts)

    async def kb_meta(self, kb: str) -> KBMeta:
        return await self._meta(kb)

    async def check_kb(self, kb: str, embed_model: str, embed_dim: int) -> KBMeta:
        meta = await self._meta(kb)
        check_embedder(kb, meta, embed_model, embed_dim)
        return meta

    async def list_kbs(self) -> list[KBStats]:
        """Each KB once, by its public name: an alias, or a collection created before aliases. Versioned
        collections (the data behind aliases, or a reembed being built) are not listed themselves."""
        collections = await self._guard(self._client.collections.list_all(simple=True))
        aliases = await self._guard(self._client.alias.list_all())
        public = list(collections) + [a.alias for a in aliases.values() if a.collection in collections]
        stats = []
        for kb in sorted({kb for kb in map(kb_from_collection, public) if kb is not None}):
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
        """The alias first (Weaviate keeps an alias whose collection is gone), then every collection of the KB."""
        await self._meta(kb)
        await self._guard(self._client.alias.delete(alias_name=collection_name(kb)))
        await self._drop_versions(kb, keep=None)
        await self._guard(self._client.collections.delete(collection_name(kb)))  # a KB created before aliases
        del self._metas[kb]

    # --- versions: the collections behind a KB's alias, and the switch between them -----------------

    async def _serving(self, kb: str) -> str | None:
        """The collection the KB's alias points to; None for a KB created before aliases."""
        alias = await self._guard(self._client.alias.get(alias_name=collection_name(kb)))
        return alias.collection if alias is not None else None

    async def _versions(self, kb: str) -> list[tuple[int, str]]:
        collections = await self._guard(self._client.collections.list_all(simple=True))
        found = [(parse_version(name), name) for name in collections]
        return sorted((v[1], name) for v, name in found if v is not None and v[0] == kb)

    async def _drop_versions(self, kb: str, *, keep: str | None) -> None:
        for _, name in await self._versions(kb):
            if name != keep:
                await self.drop_collection(name)

    async def new_version(self, kb: str, meta: KBMeta) -> str:
        """An empty collection for the KB's next build, after removing the versions nothing serves from (left by
        a reembed or a creation that was killed). The caller holds the KB's write lock."""
        replication = await self._replication()  # first: it awaits, and the store may switch clients meanwhile
        serving = await self._serving(kb)
        await self._drop_versions(kb, keep=serving)
        name = version_name(kb, max((v for v, _ in await self._versions(kb)), default=0) + 1)
        await self._guard(
            self._client.collections.create(
                name,
                description=meta.dumps(),
                properties=PROPERTIES,
                vector_config=Configure.Vectors.self_provided(
                    vector_index_config=Configure.VectorIndex.hnsw(distance_metric=VectorDistances.COSINE)
                ),
                replication_config=replication,
            )
        )
        return name

    async def switch_kb(self, kb: str, collection: str, meta: KBMeta) -> None:
        """Serve the KB from `collection`, then drop the collection it served from. An alias switches atomically;
        a KB created before aliases has a collection by the alias's name, which Weaviate makes us delete before
        the alias can be created: the KB is missing for the moment between those two calls."""
        serving = await self._serving(kb)
        if serving is not None:
            await self._guard(
                self._client.alias.update(alias_name=collection_name(kb), new_target_collection=collection)
            )
            await self._settle_alias(kb, collection)
            await self.drop_collection(serving)
        else:
            await self.drop_collection(collection_name(kb))
            await self._guard(self._client.alias.create(alias_name=collection_name(kb), target_collection=collection))
            await self._settle_alias(kb, collection)
        self._metas[kb] = meta

    async def _settle_alias(self, kb: str, collection: str) -> None:
        """Wait until the KB's alias points to `collection` on the node we talk to and reads through it work.

        A new collection is known cluster-wide when its creation returns, an alias not yet: a node that has not
        applied the change answers "could not find class" for a while (seen with three nodes under load)."""
        deadline = asyncio.get_running_loop().time() + _ALIAS_SETTLE_SECONDS
        while True:
            try:
                if await self._serving(kb) == collection:
                    await self._guard(self._collection(kb).query.fetch_objects(limit=1))
                    return
            except StoreError:
                pass
            if asyncio.get_running_loop().time() > deadline:
                raise StoreError(
                    f"Weaviate did not apply the alias of knowledge base {kb!r} within "
                    f"{_ALIAS_SETTLE_SECONDS:.0f} s; run the command again"
                )
            await asyncio.sleep(0.2)

    async def drop_collection(self, name: str) -> None:
        await self._guard(self._client.collections.delete(name))

    # --- chunks -----------------------------------------------------------------------------

    async def stored_chunks(self, kb: str, doc_ids: Collection[str] | None = None) -> dict[str, dict[str, StoredChunk]]:
        """Everything needed to plan an incremental ingest: doc_id → {uuid: chunk summary}; with `doc_ids`, only
        those documents' (a streamed ingest plans batch by batch without reading the whole KB each time)."""
        await self._meta(kb)  # a KB built before chunk counts gets the property first: Weaviate refuses unknown ones
        collection = self._collection(kb)
        index: dict[str, dict[str, StoredChunk]] = {}
        properties = ["doc_id", "position", "content_hash", "origin", "source", "doc_chunks"]

        def add(uuid: object, p: dict[str, Any]) -> None:
            index.setdefault(str(p["doc_id"]), {})[str(uuid)] = StoredChunk(
                position=int(p["position"]),
                content_hash=str(p["content_hash"]),
                origin=str(p["origin"]),
                source=str(p["source"]),
                doc_chunks=_count(p.get("doc_chunks")),
            )

        async def collect() -> None:
            async for obj in collection.iterator(return_properties=properties):
                add(obj.uuid, obj.properties)

        if doc_ids is not None:
            if not doc_ids:
                return index
            where = Filter.by_property("doc_id").contains_any(list(doc_ids))
            found = await self._guard(
                collection.query.fetch_objects(filters=where, limit=_FILTERED_MAX, return_properties=properties)
            )
            if len(found.objects) < _FILTERED_MAX:  # else possibly cut short: read them all below
                for obj in found.objects:
                    add(obj.uuid, obj.properties)
                return index
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
                    "doc_chunks": c.doc_chunks,
                    "ingested_at": now,
                },
            )
            for c, v in zip(chunks, vectors, strict=True)
        ]
        await self._insert(collection_name(kb), objects)

    async def set_doc_chunks(self, kb: str, counts: dict[str, int]) -> None:
        """Update chunks' document counts in place (chunk id -> count), vectors and text untouched."""
        collection = self._collection(kb)
        ids = list(counts)
        for start in range(0, len(ids), _UPDATE_CONCURRENCY):
            group = ids[start : start + _UPDATE_CONCURRENCY]
            await self._guard(
                asyncio.gather(
                    *(collection.data.update(uuid=uid, properties={"doc_chunks": counts[uid]}) for uid in group)
                )
            )

    async def _insert(self, name: str, objects: Sequence[DataObject[Any, None]]) -> None:
        for start in range(0, len(objects), _INSERT_BATCH):
            result = await self._guard(self._use(name).data.insert_many(objects[start : start + _INSERT_BATCH]))
            if result.has_errors:
                first = next(iter(result.errors.values()))
                raise StoreError(f"Weaviate rejected {len(result.errors)} chunk(s): {first.message}")

    async def chunk_page(self, kb: str, *, after: str | None, limit: int) -> list[tuple[str, dict[str, Any]]]:
        """One page of the KB's chunks, every property as stored, in id order after `after`: pages are guarded
        calls one by one, so a long read survives a node switch between them."""
        page = await self._guard(self._collection(kb).query.fetch_objects(after=after, limit=limit))
        return [(str(o.uuid), dict(o.properties)) for o in page.objects]

    async def copy_chunks(
        self, collection: str, chunks: Sequence[tuple[str, dict[str, Any]]], vectors: Sequence[Sequence[float]]
    ) -> None:
        """Write chunks read with chunk_page, with new vectors, into a collection new_version made."""
        objects: list[DataObject[Any, None]] = [
            DataObject(uuid=uid, vector=list(v), properties=properties)
            for (uid, properties), v in zip(chunks, vectors, strict=True)
        ]
        await self._insert(collection, objects)

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
        keyword_fields: Sequence[str] | None = None,  # BM25 over these properties (None: every text property)
        fusion: Fusion = "relative",
        keyword_query: str | None = None,  # what BM25 matches, when not the query itself
        source_prefix: str | None = None,
        doc_id: str | None = None,
        relevance: bool = False,  # fetch the vectors, for Source.relevance
    ) -> list[Source]:
        collection = self._collection(kb)
        filters = []
        if source_prefix:
            filters.append(Filter.by_property("source").like(source_prefix + "*"))
        if doc_id:
            filters.append(Filter.by_property("doc_id").equal(doc_id))
        result = await self._guard(
            collection.query.hybrid(
                query=query if keyword_query is None else keyword_query,
                vector=list(vector),
                alpha=alpha,
                limit=limit,
                query_properties=list(keyword_fields) if keyword_fields else None,
                fusion_type=HybridFusion.RANKED if fusion == "ranked" else HybridFusion.RELATIVE_SCORE,
                filters=Filter.all_of(filters) if filters else None,
                return_metadata=MetadataQuery(score=True),
                return_properties=["text", "title", "section", "doc_id", "source", "origin", "position", "doc_chunks"],
                include_vector=relevance,
            )
        )
        relevances: Sequence[float | None] = (
            _cosines(vector, [o.vector["default"] for o in result.objects])  # type: ignore[misc]
            if relevance
            else [None] * len(result.objects)
        )
        return [
            Source(
                title=str(o.properties["title"]),
                source=str(o.properties["source"]),
                origin=str(o.properties["origin"]),
                section=str(o.properties["section"]),
                snippet=_snippet(str(o.properties["text"])),
                score=float(o.metadata.score or 0.0),
                relevance=cosine,
                doc_id=str(o.properties["doc_id"]),
                position=int(o.properties["position"]),
                text=str(o.properties["text"]),
                doc_chunks=_count(o.properties.get("doc_chunks")) or 1,
            )
            for o, cosine in zip(result.objects, relevances, strict=True)
        ]

    async def require_chunks(self, kb: str) -> None:
        _, chunks = await self.counts(kb)
        if chunks == 0:
            raise EmptyKB(f"knowledge base {kb!r} is empty; add documents with `switchboard ingest PATH --kb {kb}`")

    async def close(self) -> None:
        await self._link.close()


def _holds_kb(collection: str) -> bool:
    return kb_from_collection(collection) is not None or parse_version(collection) is not None


def _count(value: object) -> int | None:
    """An INT property as read back (the client may give a float), None when the object predates it."""
    return int(value) if isinstance(value, int | float) else None


def _cosines(query: Sequence[float], vectors: Sequence[Sequence[float]]) -> list[float]:
    """Cosine similarity of the query with each candidate's vector, in one matrix product."""
    if not vectors:
        return []
    import numpy as np  # here, not at the top: commands that never search (kb list, status) skip its ~90 ms import

    from core.vectors import unit_rows

    matrix = unit_rows(np.asarray(vectors, dtype=np.float32))
    q = unit_rows(np.asarray([query], dtype=np.float32))[0]
    return [float(x) for x in matrix @ q]


@asynccontextmanager
async def open_store(settings: Settings, *, keep_running: bool = False) -> AsyncIterator[Store]:
    """Connect to WEAVIATE_URL, or to the local server (started here unless already running).

    A local server this call started is stopped on exit unless keep_running; one that was already
    running is left alone.
    """
    local = None if settings.weaviate_url else LocalWeaviate.from_settings(settings)
    started = await asyncio.to_thread(local.start) if local is not None else False

    try:
        store = Store(
            await open_client(settings, local),
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
