import re

import pytest
from pydantic import ValidationError

from core.config import Settings
from tests.conftest import REPO

EXAMPLE = REPO / ".env.example"


def test_env_example_documents_exactly_the_settings() -> None:
    documented = set(re.findall(r"^([A-Z_]+)=", EXAMPLE.read_text(), re.M))
    assert documented == {f.validation_alias for f in Settings.model_fields.values()}


def test_env_example_loads_as_is(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in re.findall(r"^([A-Z_]+)=", EXAMPLE.read_text(), re.M):
        monkeypatch.delenv(name, raising=False)
    settings = Settings(_env_file=EXAMPLE)
    assert settings.weaviate_url is None and settings.embed_model_path is None
    assert settings.weaviate_local_port == 8099
    # A verbatim copy must not turn the local model off or leave a guessable signing secret behind.
    assert settings.llm_is_local and settings.llm_api_key is None and settings.embed_api_key is None
    assert settings.secret_key is None and settings.identity_secret is None


def test_placeholders_count_as_unset_but_never_sign() -> None:
    settings = Settings(_env_file=None, llm_api_key="change-me", weaviate_api_key="CHANGE-ME-too")
    assert settings.llm_is_local and settings.weaviate_api_key is None
    for field in ("secret_key", "identity_secret", "slack_signing_secret", "telegram_webhook_secret"):
        with pytest.raises(ValidationError, match="placeholder"):
            Settings(_env_file=None, **{field: "change-me"})


def test_production_refuses_placeholders_and_bad_values() -> None:
    with pytest.raises(ValidationError, match="SWITCHBOARD_SECRET_KEY is required in production"):
        Settings(_env_file=None, environment="production")
    with pytest.raises(ValidationError, match="placeholder"):
        Settings(_env_file=None, environment="production", secret_key="s3cret", embed_api_key="change-me")
    with pytest.raises(ValidationError, match="placeholder"):
        Settings(_env_file=None, environment="production", secret_key="change-me")
    with pytest.raises(ValidationError, match="WEAVIATE_API_KEY is required"):
        Settings(_env_file=None, environment="production", secret_key="s3cret", weaviate_url="http://db:8080")
    with pytest.raises(ValidationError, match="CHUNK_OVERLAP"):
        Settings(_env_file=None, chunk_size=400, chunk_overlap=300)
    with pytest.raises(ValidationError, match="invalid knowledge base name"):
        Settings(_env_file=None, default_kb="Docs!")
