"""A loopback stand-in for Discord: the REST API and the gateway websocket on one aiohttp server.

Real discord.py talks to it once `discord.http.Route.BASE` and `DiscordWebSocket.DEFAULT_GATEWAY` point here
(the test fixture patches both). The gateway says HELLO, answers IDENTIFY with READY and a GUILD_CREATE, acks
heartbeats, answers RESUME with RESUMED, closes with 4014 when a bot asks for the Message Content intent its
application was not granted, and blanks message content the bot may not read, like Discord. Tests inject
MESSAGE_CREATE and INTERACTION_CREATE events. Every REST call is recorded; messages, threads and interaction
responses get plausible payloads back. Messages keep their flags as Discord does: an edit sets them only when
it sends `flags`. After a deferred response, the first follow-up becomes the original response, as on Discord.
Several bots (tokens) can be connected at once.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

BOT_ID = 1000
APP_ID = 1001
BOT_ROLE = 1002  # the bot's managed role in the guild
MESSAGE_CONTENT = 1 << 15
SUPPRESS_EMBEDS = 1 << 2  # a message flag: no link previews
TOKEN = "test-token"
TIMESTAMP = "2025-01-01T00:00:00+00:00"

Payload = dict[str, Any]


def user(user_id: int, name: str = "someone", *, bot: bool = False) -> Payload:
    return {"id": str(user_id), "username": name, "discriminator": "0", "global_name": name, "avatar": None, "bot": bot}


BOT_USER = user(BOT_ID, "switchboard", bot=True)


@dataclass
class Call:
    method: str
    path: str  # without the /api/v10 prefix
    body: Any
    token: str | None  # the bot token it was sent with; None for interaction webhooks


@dataclass
class FakeDiscord:
    guild_id: int
    channels: list[int]  # text channels of the one guild; any other channel id is a DM
    roles: list[int] = field(default_factory=list)
    no_message_content: set[str] = field(default_factory=set)  # tokens whose app lacks the privileged intent
    forbid_threads: set[int] = field(default_factory=set)  # channels where creating a thread is refused (403)
    revoked: set[str] = field(default_factory=set)  # tokens Discord no longer accepts (401)
    calls: list[Call] = field(default_factory=list)
    identifies: list[Payload] = field(default_factory=list)
    resumes: list[Payload] = field(default_factory=list)
    _sockets: dict[str, web.WebSocketResponse] = field(default_factory=dict)
    _intents: dict[str, int] = field(default_factory=dict)
    _threads: dict[int, int] = field(default_factory=dict)  # thread id → parent channel id
    _messages: dict[int, Payload] = field(default_factory=dict)
    _webhook_channels: dict[str, int] = field(default_factory=dict)  # interaction token → channel id
    _deferred: set[str] = field(default_factory=set)  # interaction tokens still showing "thinking…"
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(10**17))
    _seq: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _runner: web.AppRunner | None = None
    port: int = 0

    # --- lifecycle ---

    async def start(self) -> FakeDiscord:
        app = web.Application()
        app.router.add_get("/gateway", self._gateway)
        app.router.add_route("*", "/api/v10/{path:.*}", self._rest)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        for ws in self._sockets.values():
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v10"

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/gateway"

    # --- what tests inject ---

    def next_id(self) -> int:
        return next(self._ids)

    def connected(self, token: str = TOKEN) -> bool:
        return token in self._sockets and not self._sockets[token].closed

    async def dispatch(self, event: str, data: Payload, *, token: str = TOKEN) -> None:
        if event == "MESSAGE_CREATE" and not self._may_read(data, token):
            data = {**data, "content": ""}
        await self._sockets[token].send_str(json.dumps({"op": 0, "t": event, "s": next(self._seq), "d": data}))

    async def reconnect(self, *, token: str = TOKEN) -> None:
        """Ask the bot to reconnect (op 7), as Discord does; it comes back with RESUME."""
        await self._sockets[token].send_str(json.dumps({"op": 7, "d": None}))

    def message(
        self,
        channel_id: int,
        content: str,
        *,
        author: Payload,
        roles: Iterable[int] = (),
        mentions: Iterable[Payload] = (),
        mention_roles: Iterable[int] = (),
        mention_everyone: bool = False,
        message_id: int | None = None,
    ) -> Payload:
        """A MESSAGE_CREATE payload; mentions of the bot are written `<@BOT_ID>` in `content` by the caller."""
        data: Payload = {
            "id": str(message_id or self.next_id()),
            "channel_id": str(channel_id),
            "author": author,
            "content": content,
            "timestamp": TIMESTAMP,
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": mention_everyone,
            "mentions": list(mentions),
            "mention_roles": [str(r) for r in mention_roles],
            "attachments": [],
            "embeds": [],
            "pinned": False,
            "type": 0,
            "flags": 0,
            "components": [],
        }
        if self._in_guild(channel_id):
            data["guild_id"] = str(self.guild_id)
            data["member"] = self._member(roles)
        return data

    def command(
        self, name: str, channel_id: int, *, author: Payload, roles: Iterable[int] = (), **options: str
    ) -> Payload:
        """An INTERACTION_CREATE for a slash command."""
        interaction_id = self.next_id()
        command: Payload = {"id": str(APP_ID + 1), "name": name, "type": 1}
        if options:
            command["options"] = [{"name": k, "type": 3, "value": v} for k, v in options.items()]
        return self._interaction(interaction_id, 2, command, channel_id, author, roles)

    def click(self, message: Payload, custom_id: str, *, author: Payload) -> Payload:
        """An INTERACTION_CREATE for a button on `message` (a payload the bot posted, or one built to look so)."""
        data = {"custom_id": custom_id, "component_type": 2}
        payload = self._interaction(self.next_id(), 3, data, int(message["channel_id"]), author, ())
        payload["message"] = message
        return payload

    # --- what tests inspect ---

    def rest(self, method: str, pattern: str) -> list[Call]:
        """Recorded REST calls whose path fully matches the regular expression `pattern`."""
        return [c for c in self.calls if c.method == method and re.fullmatch(pattern, c.path)]

    def posted(self, channel_id: int) -> list[Call]:
        return self.rest("POST", f"/channels/{channel_id}/messages")

    def edited(self, channel_id: int) -> list[Call]:
        return self.rest("PATCH", rf"/channels/{channel_id}/messages/\d+")

    def flags(self, message_id: int | str) -> int:
        """A message's flags now, after every post and edit of it."""
        return int(self._messages[int(message_id)]["flags"])

    async def until(self, condition: Callable[[], object], timeout: float = 30.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while not condition():
            if asyncio.get_running_loop().time() > deadline:
                recent = "\n".join(f"{c.method} {c.path} {c.body}" for c in self.calls[-15:])
                raise AssertionError(f"timed out; the last REST calls were:\n{recent}")
            await asyncio.sleep(0.05)

    # --- the gateway ---

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_json({"op": 10, "d": {"heartbeat_interval": 41250}})
        async for frame in ws:
            if frame.type != WSMsgType.TEXT:
                continue
            message = json.loads(frame.data)
            op, data = message["op"], message["d"]
            if op == 1:
                await ws.send_json({"op": 11})
            elif op == 2:
                await self._identify(ws, data)
            elif op == 6:
                self.resumes.append(data)
                self._sockets[data["token"]] = ws
                await ws.send_json({"op": 0, "t": "RESUMED", "s": next(self._seq), "d": {}})
        return ws

    async def _identify(self, ws: web.WebSocketResponse, data: Payload) -> None:
        self.identifies.append(data)
        token = data["token"]
        if data["intents"] & MESSAGE_CONTENT and token in self.no_message_content:
            await ws.close(code=4014, message=b"Disallowed intent(s).")
            return
        self._sockets[token], self._intents[token] = ws, data["intents"]
        ready = {
            "v": 10,
            "user": BOT_USER,
            "guilds": [{"id": str(self.guild_id), "unavailable": True}],
            "session_id": f"session-{len(self.identifies)}",
            "resume_gateway_url": self.gateway_url,
            "application": {"id": str(APP_ID), "flags": 0},
        }
        await ws.send_json({"op": 0, "t": "READY", "s": next(self._seq), "d": ready})
        await ws.send_json({"op": 0, "t": "GUILD_CREATE", "s": next(self._seq), "d": self._guild()})

    def _guild(self) -> Payload:
        def role(role_id: int, name: str, *, managed: bool = False) -> Payload:
            tags = {"bot_id": str(BOT_ID)} if managed else {}
            return {
                "id": str(role_id),
                "name": name,
                "permissions": "0",
                "position": 0,
                "color": 0,
                "hoist": False,
                "managed": managed,
                "mentionable": True,
                "tags": tags,
            }

        roles = [role(self.guild_id, "@everyone"), role(BOT_ROLE, "switchboard", managed=True)]
        roles += [role(r, f"role-{r}") for r in self.roles]
        channels = [
            {"id": str(c), "type": 0, "name": f"channel-{c}", "position": i, "permission_overwrites": []}
            for i, c in enumerate(self.channels)
        ]
        me = {**self._member([BOT_ROLE]), "user": BOT_USER}
        return {
            "id": str(self.guild_id),
            "name": "Kestrel users",
            "owner_id": "1",
            "roles": roles,
            "channels": channels,
            "threads": [self._thread(t, p, "old thread") for t, p in self._threads.items()],
            "members": [me],
            "member_count": 2,
            "emojis": [],
            "stickers": [],
            "features": [],
            "large": False,
            "unavailable": False,
        }

    def _may_read(self, message: Payload, token: str) -> bool:
        # Without the intent Discord still delivers the content of DMs and of messages that mention the bot.
        if self._intents.get(token, 0) & MESSAGE_CONTENT or "guild_id" not in message:
            return True
        return any(int(u["id"]) == BOT_ID for u in message["mentions"]) or str(BOT_ROLE) in message["mention_roles"]

    # --- REST ---

    async def _rest(self, request: web.Request) -> web.Response:
        path = "/" + request.match_info["path"]
        body = await request.json() if request.can_read_body else None
        auth = request.headers.get("Authorization", "")
        token = auth.removeprefix("Bot ") or None
        self.calls.append(Call(request.method, path, body, token))
        if token in self.revoked:
            return _json(401, {"message": "401: Unauthorized", "code": 0})
        for method, pattern, handler in self._routes():
            match = re.fullmatch(pattern, path)
            if method == request.method and match:
                status, payload = await handler(body or {}, *match.groups())
                return _json(status, payload)
        return _json(404, {"message": "404: Not Found", "code": 0})

    def _routes(self) -> list[tuple[str, str, Any]]:
        return [
            ("GET", r"/users/@me", self._me),
            ("GET", r"/oauth2/applications/@me", self._application),
            ("PUT", r"/applications/(\d+)/commands", self._sync),
            ("POST", r"/channels/(\d+)/typing", self._typing),
            ("POST", r"/channels/(\d+)/messages", self._create),
            ("PATCH", r"/channels/(\d+)/messages/(\d+)", self._edit),
            ("POST", r"/channels/(\d+)/messages/(\d+)/threads", self._create_thread),
            ("POST", r"/interactions/(\d+)/([^/]+)/callback", self._callback),
            ("POST", r"/webhooks/\d+/([^/]+)", self._followup),
            ("PATCH", r"/webhooks/\d+/([^/]+)/messages/(@original|\d+)", self._edit_webhook_message),
        ]

    async def _me(self, body: Payload) -> tuple[int, Any]:
        return 200, BOT_USER

    async def _application(self, body: Payload) -> tuple[int, Any]:
        app = {"id": str(APP_ID), "name": "switchboard", "description": "", "icon": None, "bot_public": True}
        return 200, {**app, "bot_require_code_grant": False, "owner": user(1, "owner"), "verify_key": "", "flags": 0}

    async def _sync(self, body: list[Payload], app_id: str) -> tuple[int, Any]:
        return 200, [
            {"type": 1, **c, "id": str(APP_ID + 1 + i), "application_id": app_id, "version": "1"}
            for i, c in enumerate(body)
        ]

    async def _typing(self, body: Payload, channel_id: str) -> tuple[int, Any]:
        return 204, None

    async def _create(self, body: Payload, channel_id: str) -> tuple[int, Any]:
        return 200, self._store(self.next_id(), int(channel_id), body)

    async def _edit(self, body: Payload, channel_id: str, message_id: str) -> tuple[int, Any]:
        return 200, self._store(int(message_id), int(channel_id), body)

    async def _create_thread(self, body: Payload, channel_id: str, message_id: str) -> tuple[int, Any]:
        if int(channel_id) in self.forbid_threads:
            return 403, {"message": "Missing Permissions", "code": 50013}
        thread_id = int(message_id)  # a thread started from a message takes the message's id
        self._threads[thread_id] = int(channel_id)
        thread = self._thread(thread_id, int(channel_id), body["name"])
        for token in self._sockets:
            await self.dispatch("THREAD_CREATE", {**thread, "newly_created": True}, token=token)
        return 201, thread

    async def _callback(self, body: Payload, interaction_id: str, token: str) -> tuple[int, Any]:
        if body["type"] == 5:
            self._deferred.add(token)
        data: Payload = {"id": interaction_id, "type": 2, "response_message_loading": body["type"] == 5}
        ephemeral = bool((body.get("data") or {}).get("flags", 0) & 64)
        return 200, {"interaction": {**data, "response_message_ephemeral": ephemeral}}

    async def _followup(self, body: Payload, token: str) -> tuple[int, Any]:
        if token in self._deferred:  # the first follow-up replaces "thinking…": it is the original response
            self._deferred.discard(token)
            return 200, self._store(self._original(token), self._webhook_channels[token], body)
        return 200, self._store(self.next_id(), self._webhook_channels[token], body)

    async def _edit_webhook_message(self, body: Payload, token: str, message_id: str) -> tuple[int, Any]:
        self._deferred.discard(token)
        stored_id = self._original(token) if message_id == "@original" else int(message_id)
        return 200, self._store(stored_id, self._webhook_channels[token], body)

    @staticmethod
    def _original(token: str) -> int:
        """In this fake the original response's id is the interaction's: unique, and stable across edits."""
        return int(token.removeprefix("itoken-"))

    # --- payloads ---

    def _in_guild(self, channel_id: int) -> bool:
        return channel_id in self.channels or channel_id in self._threads

    def _member(self, roles: Iterable[int]) -> Payload:
        return {"roles": [str(r) for r in roles], "joined_at": TIMESTAMP, "deaf": False, "mute": False, "flags": 0}

    def _thread(self, thread_id: int, parent_id: int, name: str) -> Payload:
        metadata = {"archived": False, "auto_archive_duration": 1440, "archive_timestamp": TIMESTAMP, "locked": False}
        return {
            "id": str(thread_id),
            "type": 11,
            "guild_id": str(self.guild_id),
            "parent_id": str(parent_id),
            "owner_id": str(BOT_ID),
            "name": name,
            "thread_metadata": metadata,
            "message_count": 0,
            "member_count": 1,
            "rate_limit_per_user": 0,
        }

    def _store(self, message_id: int, channel_id: int, body: Payload) -> Payload:
        previous = self._messages.get(message_id, {})
        message = self.message(channel_id, body.get("content", previous.get("content", "")), author=BOT_USER)
        message.pop("member", None)
        message.update(
            id=str(message_id),
            components=body.get("components", previous.get("components", [])),
            flags=body.get("flags", previous.get("flags", 0)),
        )
        self._messages[message_id] = message
        return message

    def _interaction(
        self, interaction_id: int, kind: int, data: Payload, channel_id: int, author: Payload, roles: Iterable[int]
    ) -> Payload:
        token = f"itoken-{interaction_id}"
        self._webhook_channels[token] = channel_id
        payload: Payload = {
            "id": str(interaction_id),
            "application_id": str(APP_ID),
            "type": kind,
            "data": data,
            "token": token,
            "version": 1,
            "channel_id": str(channel_id),
            "locale": "en-US",
            "app_permissions": "0",
            "attachment_size_limit": 10 * 1024 * 1024,
            "entitlements": [],
            "authorizing_integration_owners": {},
        }
        if self._in_guild(channel_id):
            parent = self._threads.get(channel_id)
            channel: Payload = {"id": str(channel_id), "type": 11 if parent else 0, "guild_id": str(self.guild_id)}
            if parent:
                channel["parent_id"] = str(parent)
            payload.update(guild_id=str(self.guild_id), channel=channel, guild_locale="en-US", context=0)
            payload["member"] = {**self._member(roles), "user": author, "permissions": "0"}
        else:
            payload.update(channel={"id": str(channel_id), "type": 1}, user=author, context=1)
        return payload


def _json(status: int, payload: Any) -> web.Response:
    # discord.py parses a body as JSON only when the content type is exactly application/json.
    if payload is None:
        return web.Response(status=status)
    return web.Response(status=status, body=json.dumps(payload).encode(), headers={"Content-Type": "application/json"})
