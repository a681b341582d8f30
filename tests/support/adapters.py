"""Chat adapters' settings for tests, from field names: the classes read only their prefixed variables
(SLACK_BOT_TOKEN …), so the names are mapped to those."""

from __future__ import annotations

from typing import Any, TypeVar

from bots.settings import AdapterSettings

A = TypeVar("A", bound=AdapterSettings)


def adapter_settings(cls: type[A], **fields: Any) -> A:
    """`cls` built from these fields alone (no `.env`), each passed by the variable a user would set."""
    return cls(_env_file=None, **{str(cls.model_fields[name].validation_alias): v for name, v in fields.items()})
