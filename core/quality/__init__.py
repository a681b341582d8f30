"""The quality loop's offline tools: evaluation sets generated from a KB's own chunks, and RAFT training data."""
