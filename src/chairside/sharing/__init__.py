"""Sharing with the patient: expiring, revocable read-only links (links.py) and handouts with drawings burnt in
(handouts.py). docs/viewer.md, "Share with the patient" and "Handouts"."""
