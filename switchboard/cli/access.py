"""Who may use the kit and what it keeps about them: API keys, erasing a user."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from core.errors import SwitchboardError
from switchboard.cli.base import (
    JsonOption,
    _fail,
    _run,
    _settings,
    _when,
    app,
    err,
    keys_app,
    out,
)


def _api_keys() -> Any:
    from widget.apikeys import ApiKeys

    return ApiKeys(_settings().data_dir / "api-keys.sqlite3")


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option(help="What the key is for.")] = "api",
    bot: Annotated[list[str] | None, typer.Option("--bot", help="Limit the key to this bot (repeatable).")] = None,
) -> None:
    """Create a key; it is shown once and stored only as a hash."""
    from core.answer.profiles import load_profiles

    bots = tuple(bot or ())
    try:
        known = load_profiles(_settings())
    except SwitchboardError as exc:
        _fail(str(exc))
    unknown = [b for b in bots if b not in known]
    if unknown:
        _fail(f"unknown bot {unknown[0]!r}; bots: {', '.join(sorted(known))}")
    plain, key = _api_keys().create(name=name, bots=bots)
    err.print(f"key {key.id} for {', '.join(bots) or 'every bot'}; store it now, it is not shown again:")
    print(plain)


@keys_app.command("list")
def keys_list() -> None:
    """Keys with their bots and last use (never the keys themselves)."""
    table = Table("id", "name", "bots", "created", "last used", "status")
    for column in (table.columns[0], *table.columns[3:5]):
        column.no_wrap = True  # the id (copied into `keys revoke`) and moments stay whole; names and bots wrap

    for k in _api_keys().list():
        table.add_row(
            k.id,
            k.name,
            ", ".join(k.bots) or "all",
            _when(k.created_at),
            _when(k.last_used_at),
            "revoked" if k.revoked else "active",
        )
    out.print(table)


@keys_app.command("revoke")
def keys_revoke(key_id: str) -> None:
    """Revoke a key by its id; it stops working at once."""
    if not _api_keys().revoke(key_id):
        _fail(f"no active key with id {key_id!r}; see `switchboard keys list`")
    out.print(f"revoked {key_id}")


@app.command("forget-user")
def forget_user(
    user_id: Annotated[str, typer.Argument(help="The user id as the channel knows it (Slack U…, Telegram, widget).")],
    channel: Annotated[
        str | None, typer.Option(help="Only this channel (widget, api, slack, telegram, discord); default: every one.")
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Erase everything kept about a user: their questions and answers, feedback, and conversation memory."""
    from core.answer import privacy

    settings = _settings()
    where = f"on channel {channel!r}" if channel else "on every channel"
    if not yes and not typer.confirm(f"Erase every conversation of user {user_id!r} {where}?"):
        _fail("nothing erased")

    async def go() -> Any:
        async with privacy.open_records(settings) as records:
            return await privacy.forget_user(records, user_id, channel)

    erased = _run(go)
    if as_json:
        print(json.dumps({"user_id": user_id, "channel": channel, **asdict(erased)}))
        return
    out.print(
        f"erased user {escape(user_id)} {where}: {erased.conversations} conversations, {erased.answers} answers, "
        f"{erased.feedback} feedback, {erased.curated} curated questions",
        highlight=False,
    )
