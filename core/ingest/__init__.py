"""Ingestion: finding sources (files, URLs behind the SSRF guard), extraction, chunking, and the pipeline
(load → extract → chunk → hash → embed → upsert) under a per-KB write lock."""
