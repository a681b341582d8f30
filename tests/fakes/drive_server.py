"""A fake Google Drive (v3) and its OAuth token endpoint, as google-api-python-client and google-auth call them.

The token endpoint (`POST /token`) takes a service account's signed JWT (the jwt-bearer grant) and checks its
RS256 signature against the test key's public half, answering `invalid_grant` as Google does for any other key.
Drive, under `/drive/v3/` (point the client's `api_endpoint` there): `files.get` (metadata, or the bytes with
`alt=media`), `files.export` (a Google Doc as HTML) and `files.list` with `q="'FOLDER' in parents and trashed =
false"`, at most `max_page` files per response with a `nextPageToken`. A folder in `forbidden` answers 403
`insufficientFilePermissions`; an unknown id 404, both in Google's error format."""

from __future__ import annotations

import base64
import json
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tests.fakes.rest import FakeService, Reply, Request

FOLDER_TYPE = "application/vnd.google-apps.folder"
DOC_TYPE = "application/vnd.google-apps.document"
ACCESS_TOKEN = "ya29.fake-drive-token"
_PARENT = re.compile(r"^'([^']+)' in parents and trashed = false$")


def _error(status: int, reason: str, message: str) -> Reply:
    return Reply.json(
        status, {"error": {"code": status, "message": message, "errors": [{"reason": reason, "message": message}]}}
    )


def _b64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@dataclass
class Item:
    name: str
    mime: str
    parent: str
    data: bytes = b""  # a Google Doc's exported HTML, or a file's bytes
    modified: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="milliseconds"))


@dataclass
class FakeDrive(FakeService):
    key: rsa.RSAPrivateKey = field(default_factory=new_key)
    items: dict[str, Item] = field(default_factory=dict)
    forbidden: set[str] = field(default_factory=set)
    max_page: int = 2

    @property
    def endpoint(self) -> str:
        return f"{self.base_url}/drive/v3/"

    def service_account_file(self, directory: Path, key: rsa.RSAPrivateKey | None = None) -> Path:
        """A service account key file for this fake (signed with `key`: another key is refused)."""
        pem = (key or self.key).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        path = directory / f"service-account-{id(key)}.json"
        info = {
            "type": "service_account",
            "project_id": "switchboard-test",
            "private_key_id": "test-key",
            "private_key": pem.decode(),
            "client_email": "sync@switchboard-test.iam.gserviceaccount.com",
            "client_id": "1",
            "token_uri": f"{self.base_url}/token",
        }
        path.write_text(json.dumps(info))
        return path

    def edit(self, item_id: str, data: bytes) -> None:
        item = self.items[item_id]
        item.data, item.modified = data, datetime.now(UTC).isoformat(timespec="milliseconds")

    def content_fetches(self) -> list[str]:
        return [
            r.path.split("/")[4] for r in self.requests if r.path.endswith("/export") or r.query.get("alt") == "media"
        ]

    def _meta(self, item_id: str) -> dict[str, Any]:
        item = self.items[item_id]
        kind = "document/d" if item.mime == DOC_TYPE else "file/d"
        host = "docs.google.com" if item.mime == DOC_TYPE else "drive.google.com"
        meta = {
            "id": item_id,
            "name": item.name,
            "mimeType": item.mime,
            "modifiedTime": item.modified,
            "webViewLink": f"https://{host}/{kind}/{item_id}/view?usp=drivesdk",
        }
        if not item.mime.startswith("application/vnd.google-apps."):  # Drive sizes stored files only, as a string
            meta["size"] = str(len(item.data))
        return meta

    def _token(self, request: Request) -> Reply:
        form = {k: v[-1] for k, v in parse_qs(request.body.decode()).items()}
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return Reply.json(400, {"error": "unsupported_grant_type"})
        header, claims, signature = form.get("assertion", "..").split(".")
        try:
            self.key.public_key().verify(
                _b64(signature), f"{header}.{claims}".encode(), padding.PKCS1v15(), hashes.SHA256()
            )
        except (InvalidSignature, ValueError):
            return Reply.json(400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."})
        if json.loads(_b64(claims))["exp"] < time.time():
            return Reply.json(400, {"error": "invalid_grant", "error_description": "Invalid JWT: expired."})
        return Reply.json(200, {"access_token": ACCESS_TOKEN, "expires_in": 3599, "token_type": "Bearer"})

    def handle(self, request: Request) -> Reply:
        if request.path == "/token" and request.method == "POST":
            return self._token(request)
        if request.headers.get("authorization") != f"Bearer {ACCESS_TOKEN}":
            return _error(401, "authError", "Request had invalid authentication credentials.")
        parts = request.path.removeprefix("/drive/v3/").split("/")
        match parts:
            case ["files"]:
                parent = _PARENT.match(request.query.get("q", ""))
                if parent is None:
                    return _error(400, "invalid", "Invalid Value")
                if parent[1] in self.forbidden:
                    return _error(403, "insufficientFilePermissions", "The user does not have sufficient permissions")
                children = [self._meta(i) for i, item in self.items.items() if item.parent == parent[1]]
                start = int(request.query.get("pageToken", 0))
                size = min(int(request.query.get("pageSize", 100)), self.max_page)
                page: dict[str, Any] = {"kind": "drive#fileList", "files": children[start : start + size]}
                if start + size < len(children):
                    page["nextPageToken"] = str(start + size)
                return Reply.json(200, page)
            case ["files", item_id] if item_id in self.items:
                if item_id in self.forbidden:
                    return _error(403, "insufficientFilePermissions", "The user does not have sufficient permissions")
                item = self.items[item_id]
                if request.query.get("alt") == "media":
                    if item.mime in (DOC_TYPE, FOLDER_TYPE):
                        return _error(403, "fileNotDownloadable", "Only files with binary content can be downloaded.")
                    return Reply(200, item.data, item.mime)
                return Reply.json(200, self._meta(item_id))
            case ["files", item_id, "export"] if item_id in self.items:
                if self.items[item_id].mime != DOC_TYPE:
                    return _error(403, "fileNotExportable", "Export only supports Docs Editors files.")
                return Reply(200, self.items[item_id].data, "text/html")
        return _error(404, "notFound", f"File not found: {parts[-1]}.")
