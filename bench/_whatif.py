"""Run `chairside …` with proposed changes applied in memory, to measure them before they land.

    python bench/_whatif.py adopt-upload -- cloud serve --data DIR --port P [--workers 2]

Changes (each names what a real fix would touch; see docs/benchmarks.md):

- adopt-upload: the blob store adopts a finished upload by renaming it instead of copying
  it. Today `uploads._complete` ingests a hard link of the partial file, and
  `FilesystemBlobStore._can_adopt` refuses any file with more than one link, so every
  upload is copied (and hashed again) into the blob store. Emulated by letting the store
  adopt the upload's own `.ingest` link (the other link is the `.part` file, which
  `_complete` removes right after the row is committed).

With `--workers N` the changes are applied again in each worker process.

Client side, `pipelined_upload` is `Client.upload` with its per-chunk work overlapped: a
helper thread reads and hashes chunk k+1 (and feeds chunk k to the whole-file hash) while
PATCH k is on the wire. Happy path only (no retries): it measures what the overlap buys.

Delete an entry once its change is in src/; this file is not part of the product.
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path
from typing import Any

ENV = "CHAIRSIDE_BENCH_WHATIF"


def adopt_upload() -> None:
    from chairside.blobs import filesystem
    def can_adopt(self: filesystem.FilesystemBlobStore, path: Path) -> bool:
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return False
        own_link = path.suffix == ".ingest" and st.st_nlink == 2
        return stat.S_ISREG(st.st_mode) and (st.st_nlink == 1 or own_link) and st.st_dev == self._device

    filesystem.FilesystemBlobStore._can_adopt = can_adopt  # type: ignore[method-assign]


CHANGES = {"adopt-upload": adopt_upload}


def pipelined_upload(client: Any, path: Path, patient_id: Any, chunk_size: int = 16 << 20) -> Any:
    """What-if for the SDK (client/_client.py): the same requests as Client.upload, overlapped."""
    import base64
    import hashlib
    from concurrent.futures import ThreadPoolExecutor

    from chairside.client import uuid7
    size = path.stat().st_size
    media_id = str(uuid7())
    url = client._create(path, size, patient_id, media_id, None, None)
    whole = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY)

    def prepare(offset: int) -> tuple[bytes, str]:
        data = os.pread(fd, min(chunk_size, size - offset), offset)
        return data, "sha256 " + base64.b64encode(hashlib.sha256(data).digest()).decode()

    try:
        with ThreadPoolExecutor(2) as pool:
            offset = 0
            nxt = pool.submit(prepare, 0)
            fed = None
            while offset < size:
                data, checksum = nxt.result()
                if offset + len(data) < size:
                    nxt = pool.submit(prepare, offset + len(data))
                headers = {"Tus-Resumable": "1.0.0", "Upload-Offset": str(offset), "Upload-Checksum": checksum,
                           "Content-Type": "application/offset+octet-stream"}
                if fed is not None:
                    fed.result()
                fed = pool.submit(whole.update, data)  # overlaps this PATCH
                response = client._http.patch(url, content=data, headers=headers)
                response.raise_for_status()
                offset = int(response.headers["Upload-Offset"])
            if fed is not None:
                fed.result()
    finally:
        os.close(fd)
    item = client.get_media(media_id)
    if item["sha256"] != whole.hexdigest():
        raise RuntimeError("the server stored different bytes")
    return item


def apply(names: list[str]) -> None:
    for name in names:
        CHANGES[name]()
    os.environ[ENV] = ",".join(names)  # for the worker processes of --workers N


def worker_app() -> Any:
    """`chairside.cli.cloud.worker_app`, with the changes applied in this worker process first."""
    apply([n for n in os.environ.get(ENV, "").split(",") if n])
    from chairside.cli import cloud
    return cloud.worker_app()


def main() -> None:
    split = sys.argv.index("--")
    apply(sys.argv[1:split])
    from chairside.cli import cloud
    serve_run = cloud.run

    def run(app: object, host: str, port: int, *, workers: int = 1) -> None:
        if isinstance(app, str):  # the workers import this module's worker_app instead
            sys.path.insert(0, str(Path(__file__).parent))
            os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).parent),
                                                                    os.environ.get("PYTHONPATH")]))
            app = "_whatif:worker_app"
        serve_run(app, host, port, workers=workers)

    cloud.run = run  # type: ignore[assignment]
    sys.argv = ["chairside", *sys.argv[split + 1:]]
    from chairside.cli import main as chairside
    chairside()


if __name__ == "__main__":
    main()
