"""Which sites may embed each bot and how its widget looks: the `[bots.NAME.widget]` table of the bots file."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from core.answer.profiles import BotProfile
from core.voice import VoiceInfo


class WidgetBot(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    # Sites that may embed this bot, as origins ("https://docs.example.com"). Empty: in development any site
    # may, in production only the server's own pages (deny by default).
    allowed_origins: tuple[str, ...] = ()
    title: str | None = None
    color: str = Field("#4f46e5", pattern=r"^(#[0-9a-fA-F]{3,8}|[a-z]+|rgba?\([0-9., %]+\))$")
    avatar: str | None = Field(None, pattern=r"^https?://")
    position: Literal["right", "left"] = "right"
    # The microphone (speech-to-text into the input) and "read aloud" on answers (widget.voice).
    voice: bool = False

    def public(self, profile: BotProfile, voice: VoiceInfo) -> dict[str, str | bool | None]:
        """What a page may see: no origins, no prompts; voice only where this server has the service for it."""
        return {
            "name": profile.name,
            "title": self.title or profile.persona,
            "welcome": profile.welcome,
            "color": self.color,
            "avatar": self.avatar,
            "position": self.position,
            "voice": self.voice and voice.stt is not None,
            "speech": self.voice and voice.tts is not None,
        }
