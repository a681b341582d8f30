"""A loopback stand-in for an OpenAI-compatible audio API, speaking the real protocol the `openai` client uses:
POST /v1/audio/transcriptions (multipart/form-data: model, file) → {"text": …}, and POST /v1/audio/speech (JSON:
model, voice, input, response_format) → MP3 bytes (a real tone, encoded by ffmpeg). `fail` scripts HTTP 500 for
every call that follows. Every request is recorded, with its multipart parts parsed by the standard library."""

from __future__ import annotations

import email.parser
import email.policy
import json
import subprocess
from dataclasses import dataclass, field
from functools import cache

from tests.fakes.rest import FakeService, Reply, Request


@dataclass(frozen=True)
class Upload:
    fields: dict[str, str]
    filename: str
    content_type: str
    audio: bytes
    authorization: str


@cache
def tone_mp3(seconds: float = 0.5) -> bytes:
    return subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}", "-f", "mp3", "-"],
        capture_output=True, check=True, timeout=30,
    ).stdout  # fmt: skip


def parse_multipart(request: Request) -> Upload:
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"content-type: " + request.headers["content-type"].encode() + b"\r\n\r\n" + request.body
    )
    fields: dict[str, str] = {}
    upload: tuple[str, str, bytes] | None = None
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if filename := part.get_filename():
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes)
            upload = (filename, part.get_content_type(), payload)
        else:
            fields[str(name)] = part.get_content()
    assert upload is not None, "no file part"
    return Upload(fields, *upload, request.headers.get("authorization", ""))


@dataclass
class FakeOpenAIAudio(FakeService):
    transcript: str = "How do I reset my password?"
    fail: bool = False
    uploads: list[Upload] = field(default_factory=list)
    speeches: list[dict[str, str]] = field(default_factory=list)

    @property
    def v1(self) -> str:
        return self.base_url + "/v1"

    def handle(self, request: Request) -> Reply:
        if self.fail:
            return Reply.json(500, {"error": {"message": "scripted failure", "type": "server_error"}})
        if request.method == "POST" and request.path == "/v1/audio/transcriptions":
            self.uploads.append(parse_multipart(request))
            return Reply.json(200, {"text": self.transcript})
        if request.method == "POST" and request.path == "/v1/audio/speech":
            body = json.loads(request.body)
            self.speeches.append(body)
            return Reply(200, tone_mp3(), "audio/mpeg")
        return Reply.json(404, {"error": {"message": "not found", "type": "invalid_request_error"}})
