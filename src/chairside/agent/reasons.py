"""What the agent tells the reception desk: Japanese first, then English, and what to do."""

from __future__ import annotations

import httpx

from chairside.client import ChairsideError
from chairside.client._pin import is_pin_mismatch

EMPTY = ("ファイルが空です（0 バイト）。録画ソフトで保存し直してください。再送はしません。",
         "The file is empty (0 bytes): save it again from the capture software. It will not be retried.")
GONE = ("ファイルが送信前に消えました（削除または移動）。元の場所に戻すと送信します。",
        "The file disappeared before it was sent (deleted or moved). Put it back to send it.")
AWAY = ("サーバー（またはリレー）に接続できません。接続が戻れば自動で送信します。",
        "The server (or relay) cannot be reached. Sending resumes by itself when it is back.")
TOKEN = ("この端末の登録（トークン）が無効です。管理者に新しいトークンを依頼してください。",
         "This station's token is not valid (revoked?). Ask the administrator for a new one.")
# Answers that no retry changes: the file itself is refused (someone must look at it).
_PERMANENT = {400, 409, 413, 415, 422}
_WAIT_CODES = {"unknown-patient"}  # resolved again: the patient may have been merged or re-registered


def is_permanent(e: ChairsideError) -> bool:
    return e.status in _PERMANENT and (e.problem or {}).get("code") not in _WAIT_CODES


def for_error(e: Exception) -> tuple[str, str]:
    """The reason to show for an error from the network or the server."""
    if isinstance(e, httpx.TransportError):
        if is_pin_mismatch(e):  # another box answers at the relay's address
            return ("リレーの証明書が登録時と違います。別の機器の可能性があるため送信しません。"
                    "管理者に連絡してください。",
                    f"The relay's certificate is not the pinned one, so nothing is sent; call the administrator. ({e})")
        return AWAY
    if isinstance(e, ChairsideError):
        if e.status == 0 or e.status >= 500 or e.status in (408, 423, 429):
            if e.status == 507:
                return ("リレーのディスクがいっぱいです。管理者に連絡してください。自動で再試行します。",
                        f"The relay's disk is full; tell the administrator. Retrying by itself. ({e.detail})")
            return AWAY[0], f"{AWAY[1]} ({e.detail})"
        if e.status == 401:
            return TOKEN
        if e.status == 403 and (e.problem or {}).get("code") == "video-quota-full":
            return ("動画の保存時間が上限に達しています。管理者にプランの追加を依頼してください。自動で再試行します。",
                    f"Video hours are used up: ask the administrator for a larger plan. Retrying. ({e.detail})")
        if is_permanent(e):
            return ("サーバーがこのファイルを受け付けませんでした。ファイルを確認してください。再送はしません。",
                    f"The server refused this file; check it. It will not be retried: {e.detail}")
        return ("サーバーが要求を断りました。自動で再試行します。",
                f"The server refused the request; retrying: {e.detail}")
    return (f"予期しないエラー: {e}", f"Unexpected error: {e}")
