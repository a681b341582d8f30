"""Weaviate, and the only importer of weaviate-client: the KB store (schema, CRUD, node failover), the local
server's lifecycle, and hybrid search."""
