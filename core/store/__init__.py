"""Weaviate, and the only importer of weaviate-client: the KB store (client: CRUD and search; schema: what a KB
collection holds; nodes: connecting and failing over between nodes), the local server's lifecycle (local), and
retrieval (search)."""
