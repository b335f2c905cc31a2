"""Linux `TCP_INFO` of a socket we own: what the kernel knows of a connection (struct tcp_info, linux/tcp.h).

Read with `getsockopt(IPPROTO_TCP, TCP_INFO)`. Only the fields the line check uses are decoded, by their
offsets in the kernel's struct (stable ABI: fields are only ever appended). An older kernel answers a
shorter struct; fields it lacks come back as None.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

_SIZE = 232  # up to tcpi_snd_wnd (Linux 5.4+); the kernel copies min(its size, ours)
_FIELDS: dict[str, tuple[int, str]] = {  # name: (offset, struct format)
    "rtt_us": (68, "I"),
    "rttvar_us": (72, "I"),
    "snd_cwnd": (80, "I"),
    "total_retrans": (100, "I"),
    "bytes_acked": (120, "Q"),
    "bytes_received": (128, "Q"),
    "segs_out": (136, "I"),
    "data_segs_out": (156, "I"),
    "bytes_sent": (200, "Q"),
    "bytes_retrans": (208, "Q"),
}


@dataclass(frozen=True)
class TcpInfo:
    rtt_us: int | None = None  # the kernel's smoothed round-trip time
    rttvar_us: int | None = None
    snd_cwnd: int | None = None
    total_retrans: int | None = None  # segments retransmitted, whole connection
    bytes_acked: int | None = None  # payload bytes the peer acknowledged
    bytes_received: int | None = None  # payload bytes received
    segs_out: int | None = None
    data_segs_out: int | None = None  # segments carrying data sent (retransmissions included)
    bytes_sent: int | None = None  # payload bytes sent, retransmissions included (Linux 4.19+)
    bytes_retrans: int | None = None  # payload bytes retransmitted (Linux 4.19+)

    @property
    def retransmit_ratio(self) -> float | None:
        """Share of the sent payload that was sent again: bytes if the kernel counts them, else segments."""
        if self.bytes_sent and self.bytes_retrans is not None:
            return self.bytes_retrans / self.bytes_sent
        if self.data_segs_out and self.total_retrans is not None:
            return self.total_retrans / self.data_segs_out
        return None


def supported() -> bool:
    return hasattr(socket, "TCP_INFO")


def decode(raw: bytes) -> TcpInfo:
    values: dict[str, int] = {}
    for name, (offset, fmt) in _FIELDS.items():
        end = offset + struct.calcsize(fmt)
        if len(raw) >= end:
            values[name] = struct.unpack_from("=" + fmt, raw, offset)[0]
    return TcpInfo(**values)


def read(sock: socket.socket) -> TcpInfo:
    """The connection's TCP_INFO; an empty TcpInfo where the platform has none or the socket is closed."""
    if not supported() or sock.fileno() < 0:
        return TcpInfo()
    try:
        raw = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _SIZE)
    except OSError:
        return TcpInfo()
    return decode(raw)
