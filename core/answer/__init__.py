"""Answering: the assistant (answer() → events), prompt, LLM client, conversation memory, the answer log, bot
profiles and erasure."""
