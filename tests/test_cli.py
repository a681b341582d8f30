"""The real `switchboard` console script, run as a user would, against the session's Weaviate."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.openai_server import FakeOpenAI, Reply
from tests.support import REPO
from tests.support.ports import free_port_block

SAMPLE_DOCS = REPO / "examples" / "docs"
SAMPLE_QA = REPO / "examples" / "qa" / "sample.jsonl"


def run(env: dict[str, str], *args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("switchboard", path=str(REPO / ".venv" / "bin")) or "switchboard"
    return subprocess.run([exe, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def one_line_error(result: subprocess.CompletedProcess[str], contains: str) -> None:
    assert result.returncode == 1, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("error: ") and contains in lines[-1], result.stderr
    assert "Traceback" not in result.stderr


def test_ingest_search_eval_status_and_delete(cli_env: dict[str, str], tmp_path: Path, kb: str) -> None:
    ingested = run(cli_env, "ingest", str(SAMPLE_DOCS), "--kb", kb, cwd=tmp_path)
    assert ingested.returncode == 0, ingested.stderr
    assert f"{kb}: 13 documents (0 unchanged)" in ingested.stdout.replace("\n", " ")
    assert "Embedding and storing" in ingested.stderr  # the progress bar

    again = run(cli_env, "ingest", str(SAMPLE_DOCS), "--kb", kb, cwd=tmp_path)
    assert "13 unchanged" in again.stdout and "0 added, 0 updated" in again.stdout.replace("\n", " ")

    found = run(
        cli_env, "search", "which port does the dashboard listen on", "--kb", kb, "-k", "3", "--json", cwd=tmp_path
    )
    assert found.returncode == 0, found.stderr
    payload = json.loads(found.stdout)
    assert payload["query"] == "which port does the dashboard listen on"
    assert len(payload["results"]) == 3
    assert set(payload["results"][0]) == {"title", "source", "section", "snippet", "score"}

    evaluated = run(cli_env, "eval", str(SAMPLE_QA), "--kb", kb, "--json", cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr
    report = json.loads(evaluated.stdout)
    assert report["questions"] == 30 and 0.0 <= report["mrr@10"] <= 1.0 and report["recall@5"] > 0.5

    status = run(cli_env, "status", "--json", cwd=tmp_path)
    listed = {k["name"]: k for k in json.loads(status.stdout)["kbs"]}
    assert json.loads(status.stdout)["weaviate"]["version"] == "1.39.0"
    assert listed[kb]["documents"] == 13 and listed[kb]["chunks"] > 13

    deleted = run(cli_env, "kb", "delete", kb, "--yes", cwd=tmp_path)
    assert deleted.returncode == 0 and kb not in run(cli_env, "kb", "list", "--json", cwd=tmp_path).stdout


def test_errors_are_one_line_with_a_hint(cli_env: dict[str, str], tmp_path: Path, kb: str) -> None:
    (tmp_path / "tool.exe").write_bytes(b"MZ")
    one_line_error(run(cli_env, "search", "q", "--kb", kb, cwd=tmp_path), "does not exist; create it with")
    one_line_error(
        run(cli_env, "ingest", str(tmp_path / "tool.exe"), "--kb", kb, cwd=tmp_path), "unsupported file type"
    )
    one_line_error(run(cli_env, "ingest", str(tmp_path / "missing.md"), "--kb", kb, cwd=tmp_path), "no such file")
    one_line_error(run(cli_env, "ingest", "http://127.0.0.1:9/x.md", "--kb", kb, cwd=tmp_path), "refused: internal")
    intranet = {**cli_env, "INGEST_ALLOWED_HOSTS": "127.0.0.1"}
    one_line_error(run(intranet, "ingest", "http://127.0.0.1:9/x.md", "--kb", kb, cwd=tmp_path), "cannot fetch")
    one_line_error(run(cli_env, "ingest", "htp:/bad", "--kb", kb, cwd=tmp_path), "only http(s) URLs")
    one_line_error(run(cli_env, "ingest", "http://", "--kb", kb, cwd=tmp_path), "not a valid URL")
    one_line_error(run(cli_env, "search", "q", "--kb", "Bad-Name", cwd=tmp_path), "invalid knowledge base name")
    one_line_error(run(cli_env, "kb", "delete", kb, "--yes", cwd=tmp_path), "does not exist")
    bad_qa = tmp_path / "qa.jsonl"
    bad_qa.write_text('{"question": "no sources"}\n')
    one_line_error(run(cli_env, "eval", str(bad_qa), "--kb", kb, cwd=tmp_path), "qa.jsonl:1: expected")
    assert kb not in run(cli_env, "kb", "list", "--json", cwd=tmp_path).stdout  # nothing half-written


def test_empty_kb_search_says_what_to_do(cli_env: dict[str, str], tmp_path: Path, kb: str) -> None:
    empty = tmp_path / "empty.md"
    empty.write_text("")
    assert run(cli_env, "ingest", str(empty), "--kb", kb, cwd=tmp_path).returncode == 0
    one_line_error(run(cli_env, "search", "q", "--kb", kb, cwd=tmp_path), "is empty; add documents")
    run(cli_env, "kb", "delete", kb, "--yes", cwd=tmp_path)


def test_unreachable_weaviate_fails_fast(cli_env: dict[str, str], tmp_path: Path) -> None:
    port, grpc = free_port_block()
    env = {
        **cli_env,
        "WEAVIATE_URL": f"http://127.0.0.1:{port}",
        "WEAVIATE_GRPC_PORT": str(grpc),
        "WEAVIATE_TIMEOUT": "3",
    }
    started = time.monotonic()
    one_line_error(run(env, "status", cwd=tmp_path), f"cannot reach Weaviate at http://127.0.0.1:{port}")
    assert time.monotonic() - started < 30


def test_bad_configuration_is_one_line(cli_env: dict[str, str], tmp_path: Path) -> None:
    one_line_error(run({**cli_env, "SEARCH_ALPHA": "3"}, "status", cwd=tmp_path), "invalid configuration: SEARCH_ALPHA")
    one_line_error(run({**cli_env, "WEAVIATE_URL": "weaviate.local"}, "status", cwd=tmp_path), "is not an http(s) URL")
    # A chat adapter's own settings, read by the command that runs it.
    streaming = run({**cli_env, "SLACK_STREAMING": "sometimes"}, "bot", "slack", cwd=tmp_path)
    one_line_error(streaming, "invalid configuration: SLACK_STREAMING")
    webhook = {"TELEGRAM_MODE": "webhook", "TELEGRAM_BOT_TOKEN": "1:x", "TELEGRAM_WEBHOOK_SECRET": "change-me"}
    placeholder = run({**cli_env, **webhook}, "serve", cwd=tmp_path)
    one_line_error(placeholder, "TELEGRAM_WEBHOOK_SECRET still holds the placeholder")


def test_serve_binds_only_loopback_in_development(cli_env: dict[str, str], tmp_path: Path) -> None:
    """Development generates its secrets and relaxes origins: not on a network unless DEV_ALLOW_REMOTE says so.
    192.0.2.1 (TEST-NET) is no address of this machine: once allowed, binding it fails, and nothing listens."""
    refusal = "refusing to serve on {} in development mode"
    one_line_error(run(cli_env, "serve", "--host", "0.0.0.0", cwd=tmp_path), refusal.format("0.0.0.0"))
    one_line_error(run({**cli_env, "SERVER_HOST": "192.0.2.1"}, "serve", cwd=tmp_path), refusal.format("192.0.2.1"))
    one_line_error(run({**cli_env, "SERVER_HOST": "chat.local"}, "serve", cwd=tmp_path), refusal.format("chat.local"))
    production = {"SWITCHBOARD_ENV": "production", "SWITCHBOARD_SECRET_KEY": "x" * 32}
    for allowed in ({"DEV_ALLOW_REMOTE": "true"}, production):
        passed = run({**cli_env, **allowed, "SERVER_HOST": "192.0.2.1"}, "serve", cwd=tmp_path, timeout=120)
        one_line_error(passed, "cannot listen on 192.0.2.1")
    placeholder = run({**cli_env, "SWITCHBOARD_SECRET_KEY": "change-me"}, "serve", cwd=tmp_path)
    one_line_error(placeholder, "SWITCHBOARD_SECRET_KEY still holds the placeholder")


@pytest.mark.parametrize("args", [["--help"], ["kb", "--help"], ["weaviate", "--help"]])
def test_help(cli_env: dict[str, str], tmp_path: Path, args: list[str]) -> None:
    assert run(cli_env, *args, cwd=tmp_path).returncode == 0


@pytest.fixture(scope="module")
def fake_llm() -> Iterator[FakeOpenAI]:
    server = FakeOpenAI().start()
    yield server
    server.stop()


def test_ask_and_chat_with_an_openai_compatible_endpoint(
    cli_env: dict[str, str], tmp_path: Path, kb: str, fake_llm: FakeOpenAI
) -> None:
    env = {**cli_env, "LLM_BASE_URL": fake_llm.base_url, "LLM_API_KEY": "sk-test", "LLM_MODEL": "fake-chat"}
    assert run(env, "ingest", str(SAMPLE_DOCS), "--kb", kb, cwd=tmp_path).returncode == 0

    fake_llm.enqueue(Reply(chunks=["The dashboard listens on ", "port 8470 [1]."]))
    asked = run(env, "ask", "Which port does the Kestrel dashboard listen on?", "--kb", kb, "--json", cwd=tmp_path)
    assert asked.returncode == 0, asked.stderr
    payload = json.loads(asked.stdout)
    assert payload["answer"] == "The dashboard listens on port 8470 [1]."
    assert payload["fallback"] is False and payload["cited"] is True
    assert [s["n"] for s in payload["sources"]] == [1]
    assert set(payload["sources"][0]) == {"n", "title", "source", "section", "snippet"}

    fake_llm.enqueue(Reply(chunks=["Streamed ", "answer [2]."]))
    streamed = run(env, "ask", "How do I configure retries for a queue?", "--kb", kb, cwd=tmp_path)
    assert streamed.returncode == 0 and "Streamed answer [2]." in streamed.stdout
    assert "Sources" in streamed.stdout and "[2] " in streamed.stdout

    fake_llm.requests.clear()
    fake_llm.enqueue(
        Reply(chunks=["Port 8470 [1]."]),
        Reply(chunks=["How do I change the port of the Kestrel dashboard?"]),
        Reply(chunks=["Yes [1]."]),
    )
    fake_llm.enqueue(Reply(chunks=["Fresh start [1]."]))
    script = "\n".join(
        [
            "Which port does the dashboard use?",
            "and can I change it?",
            "/reset",
            "Which port does the Kestrel dashboard use?",
            "/exit",
        ]
    )
    chatted = subprocess.run(
        [str(REPO / ".venv" / "bin" / "switchboard"), "chat", "--kb", kb],
        env=env,
        cwd=tmp_path,
        input=script,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert chatted.returncode == 0, chatted.stderr
    assert (
        "Port 8470 [1]." in chatted.stdout and "Yes [1]." in chatted.stdout and "conversation cleared" in chatted.stdout
    )
    bodies = fake_llm.chat_requests()
    assert len(bodies) == 4  # answer, condense + answer (memory), answer after /reset (no condensation)
    assert bodies[1]["max_tokens"] == 64 and bodies[3]["messages"][1]["role"] == "user"
    assert len(bodies[3]["messages"]) == 2  # system + question: the history was cleared
    run(env, "kb", "delete", kb, "--yes", cwd=tmp_path)


def test_ask_on_unknown_kb_answers_politely(cli_env: dict[str, str], tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    env = {**cli_env, "LLM_BASE_URL": fake_llm.base_url, "LLM_API_KEY": "sk-test"}
    asked = run(env, "ask", "anything?", "--kb", "no_such_kb", "--json", cwd=tmp_path)
    assert asked.returncode == 0
    assert json.loads(asked.stdout)["answer"].startswith("I couldn't find anything")


def test_serve_refuses_a_port_weaviate_or_another_program_takes(cli_env: dict[str, str], tmp_path: Path) -> None:
    """Weaviate also binds WEAVIATE_LOCAL_PORT+1…+4: a SERVER_PORT among them is refused before anything starts,
    and "Serving on" is printed only once the port is bound."""
    clash = int(cli_env["WEAVIATE_LOCAL_PORT"]) + 2
    refused = run({**cli_env, "SERVER_PORT": str(clash)}, "serve", cwd=tmp_path, timeout=120)
    one_line_error(refused, f"SERVER_PORT and WEAVIATE_LOCAL_PORT+2 are both port {clash}")
    assert "Serving on" not in refused.stdout
    with socket.socket() as taken:  # another program listens on SERVER_PORT
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = run({**cli_env, "SERVER_PORT": str(port)}, "serve", cwd=tmp_path, timeout=120)
    one_line_error(busy, f"port {port} (SERVER_PORT) is already in use by another program")
    assert "Serving on" not in busy.stdout
