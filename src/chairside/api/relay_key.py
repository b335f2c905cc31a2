"""The relay box's key release (keys/release.py, docs/security.md "The relay box's key").

At the cloud, for a relay's token:
- `PUT /api/v1/relay/key`: the relay's release key, made the first time (`chairside relay seal-key`);
- `POST /api/v1/relay/key`: the relay's release key at boot; 410 once the operator revoked it.

At a relay that was released, for a station's token:
- `GET /api/v1/relay/key-share`: the station's share (the release key wrapped by its own token), which the
  station keeps and gives back when the relay boots without the cloud (`POST /api/v1/relay/unlock`, served by the
  locked relay: relay/keyboot.py).
"""

from __future__ import annotations

import base64
from typing import Annotated

import anyio
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from chairside.api.deps import get_context
from chairside.api.principal import allow
from chairside.auth import audit
from chairside.auth.principal import Principal
from chairside.context import Context
from chairside.errors import Problem
from chairside.keys import MasterKeyError, key_id_of
from chairside.keys import release as rel

router = APIRouter(prefix="/api/v1/relay", tags=["relay"])


class ReleaseOut(BaseModel):
    relay_id: str
    release_key: str = Field(description="The relay's release key, base64 (256 bits)")
    release_key_id: str


class ShareOut(BaseModel):
    relay_id: str
    release_key_id: str
    share: str = Field(description="The release key wrapped by a key derived from this station's token (base64); "
                                   "keep it, and give it back to `POST /api/v1/relay/unlock` when the relay asks")


_CLOUD_ONLY = ("このサーバーは中継機です。中継機の鍵はクラウドが預かります / this server is a relay: relays' keys are "
               "kept by the cloud")


def _release(ctx: Context, principal: Principal, *, create: bool) -> ReleaseOut:
    if ctx.role.reports_upstream_link or principal.relay_id is None:
        raise Problem(404, _CLOUD_ONLY, code="not-the-cloud")
    try:
        key = rel.cloud_release_key(ctx.db, ctx.keys, principal.relay_id, create=create)
    except MasterKeyError as exc:
        raise Problem(503, str(exc), code="cloud-has-no-master-key") from None
    if key is None:
        when = rel.revoked_at(ctx.db, principal.relay_id)
        if when is not None:
            raise Problem(
                410, f"この中継機の鍵は {when:%Y-%m-%d %H:%M} UTC に取り消されました（盗難・紛失の届け出）。"
                f"中継機は起動できません / this relay's key was revoked on {when:%Y-%m-%d %H:%M} UTC (reported "
                "stolen or lost): the relay cannot start", code="relay-key-revoked")
        raise Problem(404, "クラウドはこの中継機の鍵を預かっていません。中継機で `chairside relay seal-key` を実行して"
                      "ください / the cloud keeps no key for this relay: run `chairside relay seal-key` on the relay",
                      code="relay-key-none")
    with ctx.db.session() as s:
        audit.add(s, principal, "relay.key_released" if not create else "relay.key_sealed",
                  detail={"relay_id": str(principal.relay_id), "release_key_id": key_id_of(key)})
    return ReleaseOut(relay_id=str(principal.relay_id), release_key=base64.b64encode(key).decode("ascii"),
                      release_key_id=key_id_of(key))


_RELEASE_RESPONSES: dict[int | str, dict[str, str]] = {
    404: {"description": "This server is a relay, or the cloud keeps no key for this relay"},
    410: {"description": "The operator revoked this relay's key"},
    503: {"description": "The cloud has no master key to keep relays' keys with"},
}


@router.post("/key", response_model=ReleaseOut, responses=_RELEASE_RESPONSES,
             summary="Release the relay's key at its boot (relay token); refused once revoked")
def post_key(principal: Annotated[Principal, allow("relay")],
             ctx: Annotated[Context, Depends(get_context)]) -> ReleaseOut:
    return _release(ctx, principal, create=False)


@router.put("/key", response_model=ReleaseOut, responses=_RELEASE_RESPONSES,
            summary="The relay's release key, made the first time (`chairside relay seal-key`)")
def put_key(principal: Annotated[Principal, allow("relay")],
            ctx: Annotated[Context, Depends(get_context)]) -> ReleaseOut:
    return _release(ctx, principal, create=True)


@router.get("/key-share", response_model=ShareOut,
            responses={404: {"description": "This server is not a relay whose key was released at boot"}},
            summary="This station's share of the relay's key, to release it when the relay boots offline")
async def get_key_share(request: Request, principal: Annotated[Principal, allow("station")],
                        ctx: Annotated[Context, Depends(get_context)]) -> ShareOut:
    released = ctx.relay.released if ctx.relay is not None else None
    if released is None or principal.station_id is None:
        raise Problem(404, "この中継機は鍵の分担を使っていません / this relay does not use key shares (its key is not "
                      "released at boot)", code="no-key-share")
    token = request.headers.get("authorization", "").partition(" ")[2].strip()
    share = await anyio.to_thread.run_sync(rel.share_for, released.release_key, token, released.relay_id)
    return ShareOut(relay_id=released.relay_id, release_key_id=key_id_of(released.release_key), share=share)
