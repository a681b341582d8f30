"""Which sites may embed each bot and how its widget looks: the `[bots.NAME.widget]` table of the bots file."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from core.answer.profiles import BotProfile


class WidgetBot(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    # Sites that may embed this bot, as origins ("https://docs.example.com"). Empty: in development any site
    # may, in production only the server's own pages (deny by default).
    allowed_origins: tuple[str, ...] = ()
    title: str | None = None
    color: str = Field("#4f46e5", pattern=r"^(#[0-9a-fA-F]{3,8}|[a-z]+|rgba?\([0-9., %]+\))$")
    avatar: str | None = Field(None, pattern=r"^https?://")
    position: Literal["right", "left"] = "right"

    def public(self, profile: BotProfile) -> dict[str, str | None]:
        """What a page may see: no origins, no prompts."""
        return {
            "name": profile.name,
            "title": self.title or profile.persona,
            "welcome": profile.welcome,
            "color": self.color,
            "avatar": self.avatar,
            "position": self.position,
        }
