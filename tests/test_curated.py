"""Curated answers: promoted from a logged answer through the admin API, then given through a real surface (/v1 with
the openai SDK) instead of a generated answer when a question is at least CURATED_MIN_SIMILARITY close to one of
its phrasings (both sides of the threshold); listing, editing, deleting, hit counts; `switchboard answers import`
with its line-numbered refusals (nothing half-imported), `list`, `delete` and `export-qa`."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openai
import pytest
from pydantic import SecretStr

from core.answer.curated import CuratedAnswers
from core.answer.curated_data import CuratedInput
from core.answer.faq import load_faq
from core.answer.log import AnswerLog
from core.config import Settings
from core.embed import Embedder
from core.errors import CuratedError
from core.evaluate import load_qa
from tests.conftest import web_settings
from tests.fakes.openai_server import FakeOpenAI, Reply
from tests.servers import RunningServer, run_server
from tests.support.cli import cli_environment
from tests.support.embedders import Wrapped
from tests.test_cli import one_line_error, run
from widget.apikeys import ApiKeys

KEY = "admin-key-for-curated-tests-0123"
QUESTION = "Which port does the Kestrel dashboard listen on?"
NEAR = "What port does the Kestrel dashboard listen on?"  # a rewording: above the threshold set below
FAR = "Which port does the Kestrel metrics exporter use?"  # related, different: below it
CURATED = "The dashboard listens on **port 8470** (set `dashboard.port` to change it)."


def similarity(embedder: Embedder, a: str, b: str) -> float:
    x, y = (np.asarray(v) for v in embedder.embed_documents([a, b]))
    return float(x @ y / np.linalg.norm(x) / np.linalg.norm(y))


@pytest.fixture(scope="module")
def threshold(embedder: Embedder) -> float:
    near, far = similarity(embedder, QUESTION, NEAR), similarity(embedder, QUESTION, FAR)
    assert near > far + 0.02, (near, far)  # the embedder tells them apart: the test can fail both ways
    return (near + far) / 2


@pytest.fixture(scope="module")
def server(
    settings: Settings,
    widget_kb: str,
    fake_llm: FakeOpenAI,
    host_site: tuple[str, Path],
    threshold: float,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RunningServer]:
    tmp = tmp_path_factory.mktemp("curated")
    tuned = web_settings(
        settings, fake_llm, host_site[0], tmp, admin_api_key=SecretStr(KEY), curated_min_similarity=threshold
    )
    with run_server(tuned) as running:
        yield running


def admin(server: RunningServer, method: str, path: str, **kwargs: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {KEY}"}
    return httpx.request(method, f"{server.url}/admin{path}", headers=headers, timeout=30, **kwargs)


def ask(server: RunningServer, question: str, user: str = "end-user-1") -> dict[str, Any]:
    key = ApiKeys(server.settings.data_dir / "api-keys.sqlite3").create(name="test", bots=())[0]
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="docs", messages=[{"role": "user", "content": question}], user=user
    )
    body: dict[str, Any] = raw.http_response.json()
    return {"text": body["choices"][0]["message"]["content"], **body["switchboard"]}


def test_promoted_answer_is_given_above_the_threshold_only(server: RunningServer, fake_llm: FakeOpenAI) -> None:
    fake_llm.enqueue(Reply(chunks=["It listens on port 80 [1]."]))  # wrong: the operator corrects it
    first = ask(server, QUESTION)
    assert not first["curated"] and first["text"] == "It listens on port 80 [1]."

    promoted = admin(
        server,
        "POST",
        f"/answers/{first['answer_id']}/promote",
        json={"answer": CURATED, "paraphrases": ["dashboard port?"]},
    )
    assert promoted.status_code == 201, promoted.text
    item = promoted.json()
    assert item["question"] == QUESTION and item["paraphrases"] == ["dashboard port?"] and item["bot"] == "docs"
    assert item["sources"] == first["sources"] and item["promoted_from"] == first["answer_id"]

    calls = len(fake_llm.chat_requests())
    for question in (QUESTION, NEAR, "Dashboard port?"):  # the question, a rewording, a paraphrase
        hit = ask(server, question)
        assert hit["curated"] and hit["text"] == CURATED, question
        assert hit["sources"] == first["sources"] and hit["cited"] and not hit["fallback"]
    assert len(fake_llm.chat_requests()) == calls  # no model call for a curated answer

    fake_llm.enqueue(Reply(chunks=["Metrics are on port 9470 [1]."]))
    miss = ask(server, FAR)
    assert not miss["curated"] and miss["text"] == "Metrics are on port 9470 [1]."

    listed = admin(server, "GET", "/curated", params={"bot": "docs"}).json()["curated"]
    assert [(c["id"], c["hits"]) for c in listed] == [(item["id"], 3)]
    logged = asyncio.run(AnswerLog(server.settings.data_dir / "answers.sqlite3").get(hit["answer_id"]))
    assert logged is not None and logged.curated and logged.answer == CURATED

    edited = admin(server, "PATCH", f"/curated/{item['id']}", json={"answer": "Port **8470**.", "paraphrases": []})
    assert edited.status_code == 200 and edited.json()["paraphrases"] == []
    assert ask(server, QUESTION)["text"] == "Port **8470**."
    fake_llm.enqueue(Reply(chunks=["Port 8470 [1]."]))
    assert not ask(server, "Dashboard port?")["curated"]  # its paraphrase is gone

    assert admin(server, "DELETE", f"/curated/{item['id']}").status_code == 204
    assert admin(server, "DELETE", f"/curated/{item['id']}").status_code == 404
    fake_llm.enqueue(Reply(chunks=["Port 8470 [1]."]))
    assert not ask(server, QUESTION)["curated"]


def test_promote_refusals_say_why(server: RunningServer, fake_llm: FakeOpenAI) -> None:
    missing = admin(server, "POST", f"/answers/{'0' * 32}/promote", json={"answer": "x"})
    assert missing.status_code == 404 and "no answer" in missing.json()["detail"]
    assert admin(server, "POST", "/answers/not-an-id/promote", json={"answer": "x"}).status_code == 422
    fake_llm.enqueue(Reply(chunks=["Port 8470 [1]."]))
    answer_id = ask(server, QUESTION)["answer_id"]
    for body in ({"answer": ""}, {"answer": "   "}, {}, {"answer": "x", "paraphrases": ["q"] * 60}):
        refused = admin(server, "POST", f"/answers/{answer_id}/promote", json=body)
        assert refused.status_code == 422, (body, refused.text)
        assert refused.json()["detail"]
    unknown = admin(server, "POST", "/curated", json={"bot": "nobody", "question": "q?", "answer": "a"})
    assert unknown.status_code == 404 and "unknown bot" in unknown.json()["detail"]
    assert admin(server, "PATCH", f"/curated/{'a' * 32}", json={"answer": "x"}).status_code == 404
    assert httpx.get(f"{server.url}/admin/curated", timeout=10).status_code == 401
    assert admin(server, "GET", "/curated").json()["curated"] == []


async def test_threshold_is_inclusive_and_other_bots_do_not_match(embedder: Embedder, tmp_path: Path) -> None:
    s = similarity(embedder, QUESTION, NEAR)
    for min_similarity, hit in ((s - 1e-4, True), (s + 1e-4, False)):
        store = CuratedAnswers(tmp_path / f"{min_similarity}.sqlite3", embedder, min_similarity)
        await store.add(CuratedInput(bot="docs", questions=(QUESTION,), answer=CURATED))
        assert (await store.match("docs", NEAR) is not None) is hit
        assert await store.match("other", QUESTION) is None


FAQ_CSV = """question,answer,paraphrases,sources
Which port does the Kestrel dashboard listen on?,Port 8470.,dashboard port?|what port is the dashboard on,\
operations/dashboard.md
"How do I rotate the API token?","Run `kestrel token rotate`,
then restart.",,
"""


def test_cli_import_list_delete_and_export(settings: Settings, tmp_path: Path) -> None:
    env = cli_environment(settings.model_copy(update={"data_dir": tmp_path / "data"}))
    faq = tmp_path / "faq.csv"
    faq.write_text(FAQ_CSV)
    imported = run(env, "answers", "import", str(faq), cwd=tmp_path)
    assert imported.returncode == 0, imported.stderr
    assert "2 curated answers added, 0 replaced" in imported.stdout
    again = run(env, "answers", "import", str(faq), cwd=tmp_path)
    assert "0 curated answers added, 2 replaced" in again.stdout
    listed = json.loads(run(env, "answers", "list", "--json", cwd=tmp_path).stdout)
    assert [c["questions"][0] for c in listed] == [
        "Which port does the Kestrel dashboard listen on?",
        "How do I rotate the API token?",
    ]
    assert listed[0]["questions"][1:] == ["dashboard port?", "what port is the dashboard on"]
    assert listed[1]["answer"] == "Run `kestrel token rotate`,\nthen restart."  # a quoted multi-line cell
    assert [s["source"] for s in listed[0]["citations"]] == ["operations/dashboard.md"]

    exported = run(env, "answers", "export-qa", "--all", "--out", str(tmp_path / "qa.jsonl"), cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    assert "3 questions; 1 skipped: no sources to expect" in exported.stdout
    qa = load_qa(tmp_path / "qa.jsonl")  # what `switchboard eval` reads
    assert {q.question for q in qa} == {listed[0]["questions"][0], *listed[0]["questions"][1:]}
    assert all(q.expected == ("operations/dashboard.md",) for q in qa)
    only_down = run(env, "answers", "export-qa", "--out", str(tmp_path / "down.jsonl"), cwd=tmp_path)
    assert "0 questions" in only_down.stdout  # none was promoted from a 👎

    assert run(env, "answers", "delete", listed[1]["id"], cwd=tmp_path).returncode == 0
    one_line_error(run(env, "answers", "delete", listed[1]["id"], cwd=tmp_path), "no curated answer")
    assert len(json.loads(run(env, "answers", "list", "--json", cwd=tmp_path).stdout)) == 1


@pytest.mark.parametrize(
    ("name", "content", "error"),
    [
        ("faq.csv", "question,answer\nq1?,a1\nq2?,\n", "faq.csv:3: no answer"),
        ("faq.csv", 'question,answer\nq1?,a1\n"q2\nstill q2?",a2,extra\n', "faq.csv:3: more cells"),
        ("faq.csv", "question,reply\nq?,a\n", "faq.csv:1: the header lacks answer"),
        ("faq.jsonl", '{"question": "q1?", "answer": "a1"}\n\n{"question": "q2?"\n', "faq.jsonl:3: not JSON"),
        ("faq.jsonl", '{"question": "q1?", "answer": "a1"}\n["q", "a"]\n', "faq.jsonl:2: not a JSON object"),
        (
            "faq.jsonl",
            '{"question": "q?", "answer": "a", "paraphrases": "p"}\n{"question": "q2?", "answer": "a", '
            '"paraphrases": [1]}\n',
            "faq.jsonl:2: paraphrases must be a list of strings",
        ),
        (
            "faq.jsonl",
            '{"question": "q?", "answer": "a", "bot": "nobody"}\n',
            "faq.jsonl:1: unknown bot 'nobody'; bots: default, docs",
        ),
        ("faq.jsonl", f'{{"question": "{"q" * 1001}", "answer": "a"}}\n', "faq.jsonl:1: a question is longer"),
        ("faq.txt", "q,a\n", "expected a .csv or .jsonl file"),
        ("faq.jsonl", "\n\n", "no entries"),
    ],
)
def test_import_refuses_a_bad_line_with_its_number(tmp_path: Path, name: str, content: str, error: str) -> None:
    (tmp_path / name).write_text(content)
    with pytest.raises(CuratedError) as refused:
        load_faq(tmp_path / name, "default", {"default", "docs"})
    assert str(refused.value).startswith(str(tmp_path)) and error in str(refused.value)


def test_cli_import_of_a_file_with_a_bad_line_imports_nothing(settings: Settings, tmp_path: Path) -> None:
    env = cli_environment(settings.model_copy(update={"data_dir": tmp_path / "data"}))
    (tmp_path / "faq.jsonl").write_text('{"question": "q1?", "answer": "a1"}\n{"question": "q2?", "answer": ""}\n')
    one_line_error(run(env, "answers", "import", str(tmp_path / "faq.jsonl"), cwd=tmp_path), "faq.jsonl:2: no answer")
    assert asyncio.run(CuratedAnswers(tmp_path / "data" / "curated.sqlite3", None, 0.9).list()) == []


@dataclass
class Renamed(Wrapped):
    """The same model under another name, counting what it embeds: as if EMBED_MODEL had changed."""

    embedded: int = 0

    @property
    def name(self) -> str:
        return f"{self.inner.name}-renamed"

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        self.embedded += len(texts)
        return self.inner.embed_documents(texts)


async def test_questions_are_re_embedded_once_when_the_embedder_changes(embedder: Embedder, tmp_path: Path) -> None:
    path = tmp_path / "curated.sqlite3"
    await CuratedAnswers(path, embedder, 0.9).add(
        CuratedInput(bot="docs", questions=(QUESTION, "dashboard port?"), answer=CURATED)
    )
    renamed = Renamed(embedder)
    store = CuratedAnswers(path, renamed, 0.9)
    assert await store.match("docs", NEAR) is not None
    assert renamed.embedded == 3  # the two stored questions, then the question asked
    assert await store.match("docs", QUESTION) is not None and renamed.embedded == 4  # not again
