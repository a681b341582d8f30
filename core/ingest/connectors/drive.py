"""Google Drive: every readable file in a folder and its sub-folders, through google-api-python-client (Drive v3)
as a service account. Google Docs are exported as HTML (files.export); PDF, DOCX, Markdown, HTML and text files
are downloaded as they are (files.get_media) for the existing extractors; other types are left out."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import httplib2
from google.auth.exceptions import GoogleAuthError, RefreshError
from google.oauth2 import service_account
from google_auth_httplib2 import AuthorizedHttp
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError

from core.config import Settings
from core.ingest.connectors import Body, ConnectorError, DocRef, refused
from core.ingest.extract import CONTENT_TYPES

logger = logging.getLogger(__name__)

SCOPES = ["https://www.googleapis.com/auth/drive.readonly"]
FOLDER = "application/vnd.google-apps.folder"
GOOGLE_DOC = "application/vnd.google-apps.document"
PAGE_SIZE = 100
_FIELDS = "nextPageToken, files(id, name, mimeType, modifiedTime, webViewLink, size)"
_HINT = "GOOGLE_SERVICE_ACCOUNT_FILE"


def _readable(mime: str) -> bool:
    return mime == GOOGLE_DOC or mime in CONTENT_TYPES


class DriveConnector:
    def __init__(self, folder: str, settings: Settings):
        path = settings.google_service_account_file
        if path is None:
            raise ConnectorError(f"drive:{folder} needs GOOGLE_SERVICE_ACCOUNT_FILE (a service account's JSON key)")
        try:
            credentials = service_account.Credentials.from_service_account_file(str(path), scopes=SCOPES)
        except (OSError, ValueError, KeyError) as exc:
            raise ConnectorError(
                f"GOOGLE_SERVICE_ACCOUNT_FILE {path}: not a readable service account key ({exc})"
            ) from exc
        self.folder = folder
        self._account = credentials.service_account_email
        http = AuthorizedHttp(credentials, http=httplib2.Http(timeout=int(settings.fetch_timeout)))
        options = {"api_endpoint": settings.google_drive_endpoint} if settings.google_drive_endpoint else None
        self._service = build("drive", "v3", http=http, client_options=options, cache_discovery=False)
        self._files = self._service.files()
        self._types: dict[str, str] = {}  # file id → MIME type, from the listing, for fetch

    def _call(self, what: str, call: Callable[[], Any]) -> Any:
        try:
            return call()
        except RefreshError as exc:  # the token request: a revoked key, a deleted account, a wrong token_uri
            reason = exc.args[0] if exc.args else exc
            raise ConnectorError(f"Google Drive refused the credentials ({reason}): check {_HINT}") from exc
        except HttpError as exc:
            if exc.resp.status == 404:
                raise ConnectorError(
                    f"Google Drive: {what} not found, or not shared with the service account {self._account}"
                ) from exc
            raise refused("Google Drive", exc.resp.status, what, _HINT, exc.reason) from exc
        except (GoogleAuthError, httplib2.HttpLib2Error, OSError) as exc:
            raise ConnectorError(f"Google Drive: {what}: {exc.__class__.__name__}: {exc}") from exc

    def documents(self) -> Iterator[DocRef]:
        root = self._call(
            f"folder {self.folder}",
            lambda: self._files.get(fileId=self.folder, fields="id, mimeType", supportsAllDrives=True).execute(),
        )
        if root.get("mimeType") != FOLDER:
            raise ConnectorError(f"Google Drive: {self.folder} is a file, not a folder")
        pending, seen = [self.folder], {self.folder}
        while pending:  # breadth first; `seen` because a Drive item may have several parents
            folder = pending.pop(0)
            for item in self._children(folder):
                if item["mimeType"] == FOLDER:
                    if item["id"] not in seen:
                        seen.add(item["id"])
                        pending.append(item["id"])
                elif _readable(item["mimeType"]):
                    self._types[item["id"]] = item["mimeType"]
                    yield DocRef(
                        id=item["id"],
                        title=item["name"],
                        url=item["webViewLink"],
                        updated_at=item["modifiedTime"],
                        size=int(item["size"]) if "size" in item else None,  # a Google Doc has none (exported)
                    )

    def _children(self, folder: str) -> Iterator[dict[str, Any]]:
        token: str | None = None
        while True:
            request = self._files.list(
                q=f"'{folder}' in parents and trashed = false",
                fields=_FIELDS,
                pageSize=PAGE_SIZE,
                pageToken=token,
                supportsAllDrives=True,
                includeItemsFromAllDrives=True,
            )
            page = self._call(f"folder {folder}", request.execute)
            yield from page.get("files", [])
            token = page.get("nextPageToken")
            if not token:
                return

    def close(self) -> None:
        self._service.close()

    def fetch(self, doc: DocRef) -> Body:
        mime = self._types[doc.id]
        if mime == GOOGLE_DOC:
            data = self._call(
                f"document {doc.title!r}", self._files.export(fileId=doc.id, mimeType="text/html").execute
            )
            return Body(data=data, suffix=".html")
        data = self._call(f"file {doc.title!r}", self._files.get_media(fileId=doc.id, supportsAllDrives=True).execute)
        return Body(data=data, suffix=CONTENT_TYPES[mime])
