"""`switchboard eval generate` and `switchboard export raft` through the real CLI, over a real KB in the real Weaviate,
with a scripted fake LLM whose reply depends on the chunk it is shown: a good question for most chunks, and for
the others each kind of bad one (declined, a copy of the chunk, off the chunk; an answer quoting nothing), so the
counts of kept and rejected are known. RAFT: the oracle share and split are exact, distractors never equal the
oracle, every line is valid chat fine-tuning data, and --seed reproduces the files."""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from openai.types.chat import ChatCompletionMessageParam
from pydantic import TypeAdapter

from core.config import Settings
from core.errors import ConfigError
from core.evaluate import load_qa
from core.quality.questions import REASONS, rejection
from core.quality.raft import RaftOptions
from core.quality.sample import KBChunk, stratified
from tests.fakes.openai_server import FakeOpenAI, Reply
from tests.support.cli import cli_environment
from tests.test_cli import one_line_error, run

QUESTION_PROMPT = "You write evaluation questions"
ANSWER_PROMPT = "You write reference answers"


def category(passage: str) -> int:
    return int(hashlib.md5(passage.encode()).hexdigest(), 16) % 10


def passage_of(body: dict[str, Any]) -> str:
    user = body["messages"][-1]["content"]
    if body["messages"][0]["content"].startswith(QUESTION_PROMPT):
        return user.split(":\n\n", 1)[1]
    return user.split("\n", 3)[3].rsplit("\n\nQuestion: ", 1)[0]  # "Sources:\n\n[1] heading\n<text>\n\nQuestion: …"


def respond(body: dict[str, Any]) -> Reply:
    """Questions by the chunk's hash: 0 declined, 1 a copy of its first words, 2 about something else, else one
    built from its own words. Answers: 3 quote nothing, else quote its first ten words and cite [1]."""
    text = passage_of(body)
    kind = category(text)
    if body["messages"][0]["content"].startswith(QUESTION_PROMPT):
        content = sorted({w for w in re.findall(r"[a-z]{5,}", text.lower())})
        good = f"How do {content[0]} and {content[len(content) // 2]} relate to {content[-1]}?"
        replies = {0: "NONE", 1: " ".join(text.split()[:12]) + "?", 2: "What is the capital of France?"}
        return Reply(chunks=[replies.get(kind, good)])
    if kind == 3:
        return Reply(chunks=["It is explained in the docs [1].\n<ANSWER>: see [1]"])
    quote = " ".join(text.split()[:10])
    return Reply(chunks=[f"##begin_quote## {quote} ##end_quote##\nThat settles it [1].\n<ANSWER>: as quoted [1]."])


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    server = FakeOpenAI(responder=respond).start()
    yield server
    server.stop()


@pytest.fixture
def env(settings: Settings, fake: FakeOpenAI) -> dict[str, str]:
    return cli_environment(settings, LLM_BASE_URL=fake.base_url, LLM_API_KEY="sk-test", LLM_MODEL="fake-chat")


def chat_calls(fake: FakeOpenAI, prompt: str) -> list[dict[str, Any]]:
    return [b for b in fake.chat_requests() if b["messages"][0]["content"].startswith(prompt)]


def test_generate_writes_checked_questions_and_counts_rejections(
    env: dict[str, str], fake: FakeOpenAI, widget_kb: str, tmp_path: Path
) -> None:
    fake.requests.clear()
    made = run(env, "eval", "generate", "--kb", widget_kb, "-n", "6", "--seed", "3", "--out", "qa.jsonl", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    asked = [passage_of(b) for b in chat_calls(fake, QUESTION_PROMPT)]
    kinds = Counter(min(category(p), 3) for p in asked)  # 3: a good question
    # It stopped once six passed. Which chunks are drawn depends on the doc ids (hashes of the checkout's paths),
    # and a good-looking question may still repeat an earlier one: then it was rejected as a repeat.
    assert kinds[3] >= 6 and category(asked[-1]) >= 3
    qa = load_qa(tmp_path / "qa.jsonl")  # the format `switchboard eval` reads
    lines = [json.loads(line) for line in (tmp_path / "qa.jsonl").read_text().splitlines()]
    assert len(qa) == 6 and all(len(q.expected) == 1 and q.question.endswith("?") for q in qa)
    assert len({line["chunk"]["doc_id"] for line in lines}) == 6  # one chunk per document while documents last
    assert f"6 questions from 6 documents ({len(asked)} chunks tried" in made.stdout
    rejected = {reason: int(n) for n, reason in re.findall(r"rejected (\d+): ([^\n]+)", made.stdout)}
    assert sum(rejected.values()) == len(asked) - 6, made.stdout  # every other chunk tried: a reason
    assert rejected.get(REASONS["declined"], 0) == kinds[0], made.stdout
    assert rejected.get(REASONS["copies_chunk"], 0) == kinds[1], made.stdout
    # "About something else", and any generic question the fake built that the check finds off the chunk.
    assert rejected.get(REASONS["off_chunk"], 0) >= kinds[2], made.stdout

    evaluated = run(env, "eval", "qa.jsonl", "--kb", widget_kb, "--json", cwd=tmp_path)
    assert evaluated.returncode == 0 and json.loads(evaluated.stdout)["questions"] == 6


def test_generate_and_raft_refuse_the_local_toy_model(settings: Settings, widget_kb: str, tmp_path: Path) -> None:
    env = cli_environment(settings)
    for key in ("LLM_BASE_URL", "LLM_API_KEY", "LLM_MODEL"):
        env.pop(key, None)
    for command in (("eval", "generate"), ("export", "raft")):
        refused = run(env, *command, "--kb", widget_kb, "--out", "out.jsonl", cwd=tmp_path)
        one_line_error(refused, "local toy model")
        assert "--force" in refused.stderr and not (tmp_path / "out.jsonl").exists()


def test_checks_reject_copies_off_chunk_duplicates_and_non_questions() -> None:
    chunk = "Set dashboard.port in kestrel.toml to move the dashboard off port 8470; restart the service after."
    assert rejection("Which port does the Kestrel dashboard use by default?", chunk, set()) is None
    assert rejection("Set dashboard.port in kestrel.toml to move the dashboard?", chunk, set()) == "copies_chunk"
    assert rejection("How do I rotate the API token safely?", chunk, set()) == "off_chunk"
    assert rejection("Tell me the dashboard port.", chunk, set()) == "not_a_question"
    assert rejection("NONE", chunk, set()) == "declined"
    asked = {"which port does the kestrel dashboard use by default"}
    assert rejection("Which port does the Kestrel dashboard use by default?", chunk, asked) == "duplicate"


def chunk(doc: str, position: int, text: str) -> KBChunk:
    return KBChunk(
        id=f"{doc}-{position}",
        doc_id=doc,
        source=f"/d/{doc}.md",
        origin="/d",
        title=doc,
        section="",
        position=position,
        text=text,
    )


def test_sampling_is_stratified_and_skips_near_duplicates() -> None:
    words = [f"word{i}" for i in range(200)]
    texts = [" ".join(words[i * 30 : i * 30 + 30]) for i in range(6)]
    chunks = [
        chunk("a", 0, texts[0]),
        chunk("a", 1, texts[1]),
        chunk("a", 2, texts[2]),
        chunk("b", 0, texts[3]),
        chunk("c", 0, texts[4]),
        chunk("d", 0, texts[0] + " footer"),
    ]  # d's chunk nearly repeats a's first
    drawn = list(stratified(chunks, random.Random(1)))
    assert len({c.doc_id for c in drawn[:3]}) == 3  # a round over the documents before a second chunk of one
    texts_drawn = [c.text for c in drawn]
    assert (texts[0] in texts_drawn) != (texts[0] + " footer" in texts_drawn)  # only one of the near-duplicates
    assert len(drawn) == 5
    assert [c.id for c in drawn] == [c.id for c in stratified(chunks, random.Random(1))]  # same seed, same order


MESSAGES = TypeAdapter(list[ChatCompletionMessageParam])


def raft(env: dict[str, str], kb: str, cwd: Path, *extra: str) -> dict[str, Any]:
    args = ("export", "raft", "--kb", kb, "-n", "10", "--distractors", "3", "--oracle-share", "0.6", "--validation")
    made = run(env, *args, "0.2", "--out", "train.jsonl", *extra, cwd=cwd)
    assert made.returncode == 0, made.stderr
    manifest: dict[str, Any] = json.loads((cwd / "train.manifest.json").read_text())
    return manifest


def test_raft_export_proportions_format_and_seed(env: dict[str, str], widget_kb: str, tmp_path: Path) -> None:
    manifest = raft(env, widget_kb, tmp_path, "--seed", "5")
    counts = manifest["counts"]
    assert (counts["examples"], counts["with_oracle"], counts["distractors_only"]) == (10, 6, 4)
    assert (counts["train"], counts["validation"]) == (8, 2)
    assert manifest["kb"] == widget_kb and manifest["settings"]["distractors"] == 3 and manifest["embedder"]
    assert sum(counts["rejected"].values()) == counts["chunks_tried"] - 10  # every other chunk tried: a reason

    plain = [json.loads(line) for line in (tmp_path / "train.plain.jsonl").read_text().splitlines()]
    for example in plain:
        oracle = example["oracle"]
        flagged = [c for c in example["context"] if c["oracle"]]
        others = [c for c in example["context"] if not c["oracle"]]
        assert len(others) == 3 and len(flagged) == int(example["oracle_in_context"])
        oracle_text = " ".join(flagged[0]["text"].split()) if flagged else None
        for d in others:  # a distractor is never the oracle chunk, nor its text
            assert (d["source"], d.get("position")) != (oracle["source"], oracle["position"])
            assert oracle_text is None or " ".join(d["text"].split()) != oracle_text
        # Citations outside the quoted evidence (a chunk's own text may hold "[1234]").
        unquoted = re.sub(r"##begin_quote##.*?##end_quote##", "", example["answer"], flags=re.S)
        cited = {int(n) for n in re.findall(r"\[(\d+)\]", unquoted)}
        if flagged:
            assert cited == {next(c["n"] for c in example["context"] if c["oracle"])}
        else:
            assert cited == set()  # the oracle is not there to cite

    for name, expected in (("train.jsonl", 8), ("train.validation.jsonl", 2)):
        lines = (tmp_path / name).read_text().splitlines()
        assert len(lines) == expected
        for line in lines:
            row = json.loads(line)
            assert set(row) == {"messages"}
            messages = MESSAGES.validate_python(row["messages"], strict=True)
            assert [m["role"] for m in messages] == ["system", "user", "assistant"]
            assert all(isinstance(m["content"], str) and m["content"] for m in messages)
            assert "[1] " in row["messages"][1]["content"] and "\n\nQuestion: " in row["messages"][1]["content"]

    first = {n: (tmp_path / n).read_text() for n in ("train.jsonl", "train.validation.jsonl", "train.plain.jsonl")}
    raft(env, widget_kb, tmp_path, "--seed", "5")
    assert {n: (tmp_path / n).read_text() for n in first} == first  # reproducible
    raft(env, widget_kb, tmp_path, "--seed", "6")
    assert (tmp_path / "train.plain.jsonl").read_text() != first["train.plain.jsonl"]


def test_raft_refuses_bad_options(env: dict[str, str], widget_kb: str, tmp_path: Path) -> None:
    for bad, error in (({"oracle_share": 1.5}, "between 0 and 1"), ({"distractors": 0}, "at least 1")):
        with pytest.raises(ConfigError, match=error):
            RaftOptions(**{"n": 5, "seed": 0, "oracle_share": 0.8, "distractors": 4, "validation_share": 0.1, **bad})
    refused = run(env, "export", "raft", "--kb", widget_kb, "--distractors", "5000", "--out", "t.jsonl", cwd=tmp_path)
    one_line_error(refused, "too few for 5000 distractors")
    assert not (tmp_path / "t.jsonl").exists()
