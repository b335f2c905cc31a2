from __future__ import annotations

import base64
import hashlib
import os
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, TypeVar, cast

import httpx

from chairside.client._errors import ChairsideError, UploadFailed
from chairside.client._failover import FailoverTransport
from chairside.client._ids import uuid7
from chairside.client._pin import pinned_transport, require_https

Progress = Callable[[int, int], None]
T = TypeVar("T")
TUS = {"Tus-Resumable": "1.0.0"}
_RETRY_STATUS = {423, 460, 500, 502, 503, 504}


def _raise_for(response: httpx.Response) -> None:
    if response.is_success:
        return
    problem: dict[str, Any] = {}
    detail = response.reason_phrase or "request failed"
    if response.headers.get("content-type", "").startswith(("application/problem+json", "application/json")):
        try:
            problem = response.json()
            detail = str(problem.get("detail") or detail)
        except ValueError:
            pass
    raise ChairsideError(response.status_code, detail, problem)


def _meta(values: dict[str, str]) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in values.items() if v)


class Client:
    """Chairside API client for capture software: patients, resumable uploads, media.

    >>> with Client("http://relay.local:8000", token) as cs:
    ...     patient = cs.create_patient(clinic_id, "00123", "山田 太郎", "ヤマダ タロウ")
    ...     item = cs.upload("rec.mp4", patient["id"], progress=print)
    """

    def __init__(
        self,
        base_url: str | list[str] | tuple[str, ...],
        token: str,
        *,
        timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
        chunk_checksums: bool | None = None,
        pin: str | None = None,
    ) -> None:
        # `pin`: the relay's certificate fingerprint recorded at enrollment (client/_pin.py): only that
        # certificate is accepted, checked in the TLS handshake before anything is sent; http:// is refused.
        if pin is not None:
            require_https([base_url] if isinstance(base_url, str) else list(base_url))
            if transport is None:
                transport = pinned_transport(pin)
        # Several addresses (a primary and its mirror): the client follows the primary of the newest epoch.
        self.failover = None if isinstance(base_url, str) else FailoverTransport(base_url, transport)
        if self.failover is not None:
            base_url, transport = self.failover.current_url, self.failover
        assert isinstance(base_url, str)
        self.base_url = base_url.rstrip("/")
        # Upload-Checksum (SHA-256) on each PATCH: by default on for plain http://, off for https://, where
        # TLS already protects every chunk; the whole file's SHA-256 is compared with the server's either way.
        self.chunk_checksums = (not self.base_url.lower().startswith("https://")) if chunk_checksums is None \
            else chunk_checksums
        self._http = httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=httpx.Timeout(timeout, connect=10.0),
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _json(self, method: str, url: str, **kwargs: Any) -> Any:
        response = self._http.request(method, url, **kwargs)
        _raise_for(response)
        return response.json()

    # -- the relay's key (docs/relay.md) ------------------------------------------------------
    def relay_key_share(self) -> dict[str, Any]:
        """This station's share of the relay's key (`relay_id`, `release_key_id`, `share`): keep it, and give it back
        with :meth:`unlock_relay` when the relay answers 503 `relay-locked` (it booted without the cloud)."""
        result: dict[str, Any] = self._json("GET", "/api/v1/relay/key-share")
        return result

    def unlock_relay(self, share: str) -> dict[str, Any]:
        """Release a locked relay's key with this station's share."""
        result: dict[str, Any] = self._json("POST", "/api/v1/relay/unlock", json={"share": share})
        return result

    # -- patients ---------------------------------------------------------------------------
    def create_patient(
        self,
        clinic_id: str | uuid.UUID,
        chart_no: str,
        name: str,
        name_kana: str,
        *,
        birth_date: str | None = None,
        sex: str = "unknown",
    ) -> dict[str, Any]:
        body = {"clinic_id": str(clinic_id), "chart_no": chart_no, "name": name, "name_kana": name_kana,
                "birth_date": birth_date, "sex": sex}
        result: dict[str, Any] = self._json("POST", "/api/v1/patients", json=body)
        return result

    def search_patients(self, q: str | None = None, *, limit: int = 50) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"limit": limit}
        if q:
            params["q"] = q
        items: list[dict[str, Any]] = self._json("GET", "/api/v1/patients", params=params)["items"]
        return items

    def get_patient(self, patient_id: str | uuid.UUID) -> dict[str, Any]:
        result: dict[str, Any] = self._json("GET", f"/api/v1/patients/{patient_id}")
        return result

    # -- media ------------------------------------------------------------------------------
    def list_media(self, patient_id: str | uuid.UUID, *, kind: str | None = None,
                   tooth: int | None = None) -> list[dict[str, Any]]:
        """Every (non-deleted) item of the patient, newest first, following the pages; with `tooth` (FDI, e.g.
        16), only the items that show it."""
        items: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"limit": 1000}
            if kind:
                params["kind"] = kind
            if tooth is not None:
                params["tooth"] = tooth
            if cursor:
                params["cursor"] = cursor
            page = self._json("GET", f"/api/v1/patients/{patient_id}/media", params=params)
            items.extend(page["items"])
            cursor = page.get("next_cursor")
            if not cursor:
                return items

    # -- what the dentist writes: tags, notes (teeth: set_teeth below) ---------------------------
    def patient_tags(self, patient_id: str | uuid.UUID) -> dict[str, list[str]]:
        """The tags on the patient's items, by media id (items without tags are left out)."""
        page = self._json("GET", f"/api/v1/patients/{patient_id}/tags")
        return {row["media_id"]: list(row["tags"]) for row in page["items"]}

    def set_tags(self, media_id: str | uuid.UUID, tags: Sequence[str]) -> list[str]:
        """Replace the item's tags (e.g. 術前, 術後); [] clears them."""
        result: list[str] = self._json("PUT", f"/api/v1/media/{media_id}/tags", json={"tags": list(tags)})["tags"]
        return result

    def get_note(self, kind: Literal["media", "patient"], entity_id: str | uuid.UUID) -> str:
        """The note on an item (`kind="media"`) or a patient; "" when there is none."""
        path = "media" if kind == "media" else "patients"
        text: str = self._json("GET", f"/api/v1/{path}/{entity_id}/note")["text"]
        return text

    def set_note(self, kind: Literal["media", "patient"], entity_id: str | uuid.UUID, text: str) -> str:
        """Set the note on an item or a patient ("" clears it); answers the note as stored."""
        path = "media" if kind == "media" else "patients"
        stored: str = self._json("PUT", f"/api/v1/{path}/{entity_id}/note", json={"text": text})["text"]
        return stored

    def get_media(self, media_id: str | uuid.UUID) -> dict[str, Any]:
        result: dict[str, Any] = self._json("GET", f"/api/v1/media/{media_id}")
        return result

    def set_teeth(self, media_id: str | uuid.UUID, teeth: Sequence[int]) -> list[int]:
        """Replace the teeth an item shows (FDI numbers: 11–48, 51–85); answers the stored set, sorted."""
        result: dict[str, Any] = self._json("PUT", f"/api/v1/media/{media_id}/teeth", json={"teeth": list(teeth)})
        return list(result["teeth"])

    def iter_content(
        self, media_id: str | uuid.UUID, start: int = 0, end: int | None = None, *, chunk_size: int = 1 << 20
    ) -> Iterator[bytes]:
        """The item's bytes from `start` to `end` (inclusive), streamed."""
        headers = {"Range": f"bytes={start}-{'' if end is None else end}"} if start or end is not None else {}
        with self._http.stream("GET", f"/api/v1/media/{media_id}/content", headers=headers) as response:
            if not response.is_success:
                response.read()
                _raise_for(response)
            yield from response.iter_bytes(chunk_size)

    def download(self, media_id: str | uuid.UUID, dest: str | Path) -> Path:
        """Save the original file, checking its SHA-256 against the server's."""
        dest = Path(dest)
        expected = self.get_media(media_id)["sha256"]
        h = hashlib.sha256()
        tmp = dest.with_name(dest.name + ".part")
        with tmp.open("wb") as f:
            for chunk in self.iter_content(media_id):
                h.update(chunk)
                f.write(chunk)
        if h.hexdigest() != expected:
            tmp.unlink(missing_ok=True)
            raise ChairsideError(0, "the downloaded file does not match its SHA-256; download it again")
        tmp.replace(dest)
        return dest

    def thumbnail(self, media_id: str | uuid.UUID) -> bytes:
        response = self._http.get(f"/api/v1/media/{media_id}/thumbnail")
        _raise_for(response)
        return response.content

    def trash(self, media_id: str | uuid.UUID) -> dict[str, Any]:
        result: dict[str, Any] = self._json("DELETE", f"/api/v1/media/{media_id}")
        return result

    def restore(self, media_id: str | uuid.UUID) -> dict[str, Any]:
        result: dict[str, Any] = self._json("POST", f"/api/v1/media/{media_id}/restore")
        return result

    # -- uploads ----------------------------------------------------------------------------
    def upload(
        self,
        path: str | Path,
        patient_id: str | uuid.UUID,
        *,
        media_id: str | uuid.UUID | None = None,
        captured_at: datetime | None = None,
        filename: str | None = None,
        progress: Progress | None = None,
        chunk_size: int = 16 << 20,
        checksum: bool | None = None,
        max_retries: int = 20,
        retry_delay: float = 0.5,
        resume_url: str | None = None,
        on_created: Callable[[str], None] | None = None,
    ) -> dict[str, Any]:
        """Upload a recording or photo resumably; answer the stored media item.

        Retries by itself after a cut, a timeout or a busy server, resuming from the server's
        offset (never resending what the server already holds). Each chunk carries a SHA-256
        checksum when `checksum` (default: the client's `chunk_checksums`), and the whole file's
        SHA-256 is compared with the server's at the end. Keep `media_id` for retries of the same
        file: the server never stores it twice. `on_created` gets the new upload's URL, to be kept
        and passed back as `resume_url` after a restart.
        """
        if checksum is None:
            checksum = self.chunk_checksums
        path = Path(path)
        size = path.stat().st_size
        media_id = str(media_id or uuid7())
        already = self._retrying(lambda: self._existing(media_id, size), max_retries, retry_delay)
        if already is not None:
            if progress:
                progress(size, size)
            return already
        url = resume_url or self._retrying(
            lambda: self._create(path, size, patient_id, media_id, captured_at, filename), max_retries, retry_delay
        )
        if on_created is not None and resume_url is None:
            on_created(url)
        whole = hashlib.sha256()
        hashed = 0
        offset = self._offset(url) if resume_url else 0
        failures = 0
        # One buffer for every chunk: httpx's request/response reference cycles keep what was
        # sent alive until the cyclic collector runs, so fresh bytes per chunk grow memory with
        # the file (bench/rss.py measured 677 MB for 5 GiB); a reused buffer keeps it flat.
        buf = bytearray(min(chunk_size, size) or 1)
        with path.open("rb") as f:
            while True:
                if hashed < offset:  # bytes the server kept from a cut request: account for them
                    whole.update(_read_at(f, hashed, offset - hashed))
                    hashed = offset
                if offset >= size:
                    break
                data = _read_into(f, buf, offset, min(chunk_size, size - offset))
                headers = {**TUS, "Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream",
                           "Content-Length": str(len(data))}
                if checksum:
                    headers["Upload-Checksum"] = "sha256 " + base64.b64encode(hashlib.sha256(data).digest()).decode()
                try:
                    response = self._http.patch(url, content=cast(Iterable[bytes], iter((data,))), headers=headers)
                except httpx.TransportError as e:
                    failures = self._backoff(failures, max_retries, retry_delay, str(e))
                    offset = self._offset_retrying(url, max_retries, retry_delay)
                    continue
                if response.status_code in _RETRY_STATUS or (
                    response.status_code == 409 and "offset-mismatch" in response.text
                ):
                    failures = self._backoff(failures, max_retries, retry_delay, response.text[:200])
                    offset = self._offset_retrying(url, max_retries, retry_delay)
                    continue
                if not response.is_success:
                    _raise_upload(response)
                offset = int(response.headers["Upload-Offset"])

                if offset == hashed + len(data):
                    whole.update(data)
                    hashed = offset
                failures = 0
                if progress:
                    progress(offset, size)
        # Retried like the rest: the server may restart between the last chunk and this read.
        item = self._retrying(lambda: self.get_media(media_id), max_retries, retry_delay)
        if item["sha256"] != whole.hexdigest():
            raise UploadFailed(0, "the server stored different bytes than were sent (SHA-256 differs)")
        return item

    def _existing(self, media_id: str, size: int) -> dict[str, Any] | None:
        response = self._http.get(f"/api/v1/media/{media_id}")
        if response.status_code == 200 and response.json().get("size") == size:
            item: dict[str, Any] = response.json()
            return item
        return None

    def _create(
        self, path: Path, size: int, patient_id: str | uuid.UUID, media_id: str,
        captured_at: datetime | None, filename: str | None,
    ) -> str:
        meta = {
            "patient_id": str(patient_id), "media_id": media_id, "filename": filename or path.name,
            "captured_at": captured_at.isoformat() if captured_at else "",
        }
        headers = {**TUS, "Upload-Length": str(size), "Upload-Metadata": _meta(meta)}
        response = self._http.post("/api/v1/uploads/", headers=headers)
        if response.status_code != 201:
            _raise_upload(response)
        return str(httpx.URL(self.base_url + "/").join(response.headers["Location"]))

    def _offset(self, url: str) -> int:
        response = self._http.head(url, headers=TUS)
        if response.status_code != 200:
            _raise_upload(response)
        return int(response.headers["Upload-Offset"])

    def _offset_retrying(self, url: str, max_retries: int, retry_delay: float) -> int:
        return self._retrying(lambda: self._offset(url), max_retries, retry_delay)

    def _retrying(self, call: Callable[[], T], max_retries: int, retry_delay: float) -> T:
        """Call again after transport errors and busy answers, with backoff; then give up with UploadFailed."""
        failures = 0
        while True:
            try:
                return call()
            except httpx.TransportError as e:
                failures = self._backoff(failures, max_retries, retry_delay, str(e))
            except ChairsideError as e:
                if e.status not in _RETRY_STATUS:
                    raise
                failures = self._backoff(failures, max_retries, retry_delay, e.detail)

    @staticmethod
    def _backoff(failures: int, max_retries: int, retry_delay: float, why: str) -> int:
        if failures >= max_retries:
            raise UploadFailed(0, f"the upload did not get through after {max_retries} retries: {why}")
        time.sleep(min(30.0, retry_delay * (2 ** failures)))
        return failures + 1


def _read_at(f: Any, offset: int, n: int) -> bytes:
    data: bytes = os.pread(f.fileno(), n, offset)
    if len(data) != n:
        raise UploadFailed(0, "the file changed size while it was being uploaded")
    return data


def _read_into(f: Any, buf: bytearray, offset: int, n: int) -> memoryview:
    view = memoryview(buf)[:n]
    f.seek(offset)
    got = f.readinto(view)
    if got != n:
        raise UploadFailed(0, "the file changed size while it was being uploaded")
    return view


def _raise_upload(response: httpx.Response) -> None:
    try:
        _raise_for(response)
    except ChairsideError as e:
        raise UploadFailed(e.status, e.detail, e.problem) from None
    raise UploadFailed(response.status_code, response.reason_phrase)
