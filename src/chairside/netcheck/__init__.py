"""The onboarding line check (`chairside netcheck`): codes, the measuring client and the verdict.

- `codes.py`: the onboarding codes the operator hands out (stored hashed, expiring, a few runs each) and the
  check every measurement request passes (the cloud's side; its routes are api/netcheck.py).
- `wire.py`, `tcpinfo.py`, `measure.py`: the client. It speaks HTTP/1.1 over sockets it owns so that it can
  read Linux `TCP_INFO` (bytes acknowledged, retransmissions) from them.
- `verdict.py`: the rules (pure): does the line carry N chairs × H hours of 15 Mbit/s video in the night,
  and what to change when it does not. docs/netcheck.md has the figures.
"""
