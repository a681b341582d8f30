"""What the Teams path adds to an answer, against the widget for the same answer.

    python -m bench.teams_latency [--questions 20]

One `switchboard serve` process with TEAMS_* pointed at the fake Teams (tests/fakes/teams_server.py: token
endpoint, signing keys, Bot Connector) in this process, the sample docs in a local Weaviate and the fast scripted
fake LLM (21 chunks, no delay). One question at a time, each in a new conversation:
- widget: POST /api/chat (SSE) → first event, and → the `done` event;
- Teams, personal chat (Teams' streaming protocol) and channel @mention (post-then-update): the signed activity
  POSTed to /teams/messages → the first thing the user sees (the informative update / the placeholder) and →
  the final message with its citations arriving at the fake Bot Connector.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import time

import httpx

from bench._common import ms
from bench.widget_load import demo_setup, over_http, server_env
from tests.fakes.teams_server import APP_ID, APP_PASSWORD, TENANT, FakeTeams
from tests.support.cli import serve_process

QUESTION = "Which port does the Kestrel dashboard listen on?"
CLIENT = httpx.Client(timeout=30)  # one, as Teams keeps its connections: a new client costs ~20 ms of TLS setup
RESPONDED: list[float] = []
TYPING: list[float] = []


def teams_answer(url: str, teams: FakeTeams, scope: str) -> tuple[float, float]:
    """Seconds to the first visible reply and to the final message (and, in RESPONDED / TYPING, to the 200 and to
    the typing indicator)."""
    event = teams.activity(QUESTION, scope=scope, mention=scope != "personal")
    conversation = event["conversation"]["id"]
    headers = {"Authorization": f"Bearer {teams.token()}"}
    started = time.perf_counter()
    response = CLIENT.post(f"{url}/teams/messages", json=event, headers=headers)
    response.raise_for_status()
    RESPONDED.append(time.perf_counter() - started)

    def finished() -> list[float] | None:
        calls = [c for c in teams.of(conversation) if c.status == 200 and c.body.get("type") == "message"]
        done = [
            c for c in calls if c.body.get("attachments") or c.body.get("channelData", {}).get("feedbackLoopEnabled")
        ]
        if not done:
            return None
        calls = teams.of(conversation)
        visible = [c for c in calls if c.body.get("text")]  # the typing indicator shows nothing
        return [visible[0].at - started, done[-1].at - started, calls[0].at - started]

    first, total, typing = teams.wait_for(finished)
    TYPING.append(typing)
    return first, total


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--questions", type=int, default=20)
    n = parser.parse_args().questions
    teams = FakeTeams().start()
    env = {
        "TEAMS_APP_ID": APP_ID,
        "TEAMS_APP_PASSWORD": APP_PASSWORD,
        "TEAMS_TENANT_ID": TENANT,
        "TEAMS_LOGIN_URL": teams.url,
        "TEAMS_OPENID_URL": teams.openid_url,
    }
    results: dict[str, tuple[list[float], list[float]]] = {}
    try:
        with (
            demo_setup(3 * n + 3) as (settings, work, fake),
            serve_process(server_env(settings, fake.base_url, **env), work) as server,
        ):
            for scope in ("personal", "channel"):  # warm up: token, signing keys, first answer
                teams_answer(server.url, teams, scope)
            RESPONDED.clear()
            TYPING.clear()
            asyncio.run(over_http([server.url], 1, None))
            for name in ("widget", "personal", "channel"):
                firsts, totals = [], []
                for _ in range(n):
                    if name == "widget":
                        first, total, errors = asyncio.run(over_http([server.url], 1, None))
                        assert not errors
                        firsts.append(first[0])
                        totals.append(total[0])
                    else:
                        f, t = teams_answer(server.url, teams, name)
                        firsts.append(f)
                        totals.append(t)
                results[name] = (firsts, totals)
    finally:
        teams.stop()

    print(f"Teams path vs widget: {platform.machine()}, {os.cpu_count()} cores, {n} questions each, one at a time")
    widget_total = results["widget"][1]
    for name, label in (
        ("widget", "widget SSE"),
        ("personal", "Teams personal (stream)"),
        ("channel", "Teams channel (update)"),
    ):
        firsts, totals = results[name]
        print(
            f"{label:26} first visible p50 {ms(firsts):6.0f} ms   answer complete p50 {ms(totals):6.0f} ms "
            f"p95 {ms(totals, 95):6.0f} ms   added p50 {ms(totals) - ms(widget_total):+6.0f} ms"
        )
    print(f"Teams: webhook's 200 p50 {ms(RESPONDED):.0f} ms, typing indicator p50 {ms(TYPING):.0f} ms")


if __name__ == "__main__":
    main()
