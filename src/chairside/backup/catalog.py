"""The generations a target holds: listing, choosing one, and pruning by the retention policy."""

from __future__ import annotations

import logging
from collections.abc import Callable

from .manifest import Manifest, blob_key, manifest_key
from .retention import Policy, to_keep
from .targets import Target, TargetMissing

__all__ = ["GenerationNotFound", "generations", "incomplete", "load", "prune", "resolve"]

log = logging.getLogger(__name__)


class GenerationNotFound(Exception):
    """No complete generation by that name (or none at all)."""


def _ids(target: Target) -> list[str]:
    ids = set()
    for key in target.keys("generations/"):
        parts = key.split("/")
        if len(parts) == 3 and parts[2] == "manifest.json":
            ids.add(parts[1])
    return sorted(ids)


def load(target: Target, generation: str) -> Manifest:
    try:
        raw = b"".join(target.read(manifest_key(generation)))
    except TargetMissing:
        raise GenerationNotFound(
            f"世代 {generation} はバックアップ先にありません（未完了または削除済み） / generation {generation} "
            "is not in the target (never completed, or pruned)"
        ) from None
    return Manifest.from_json(raw)


def generations(target: Target) -> list[Manifest]:
    """Every complete generation (one with a manifest), oldest first."""
    found = []
    for gen_id in _ids(target):
        try:
            found.append(load(target, gen_id))
        except (GenerationNotFound, ValueError, KeyError, TypeError) as exc:
            log.warning("skipping generation %s: unreadable manifest (%s)", gen_id, exc)
    return found


def resolve(target: Target, generation: str) -> Manifest:
    """``latest`` or a generation id → its manifest."""
    if generation == "latest":
        ids = _ids(target)
        if not ids:
            raise GenerationNotFound(
                "バックアップ先に完了した世代がありません / the target holds no complete generation"
            )
        return load(target, ids[-1])
    if "/" in generation or not generation:
        raise GenerationNotFound(f"not a generation id: {generation!r}")
    return load(target, generation)


def incomplete(target: Target) -> list[str]:
    """Generations that were started but never got their manifest (a killed or failed run)."""
    started = {key.split("/")[1] for key in target.keys("generations/") if key.count("/") == 2}
    return sorted(started - set(_ids(target)))


def prune(target: Target, policy: Policy, *, keep_also: str | None = None,
          on_progress: Callable[[str, int, int], None] | None = None) -> list[str]:
    """Delete the generations the policy drops, then the blobs no kept generation names; answer the ids dropped.

    On a locked target what is still under lock stays (deleted by a later run once the lock ends).
    Run it only from the one backup run of the target (the command line holds a lock for that).
    """
    complete = generations(target)
    kept = to_keep([(m.generation, m.created_at) for m in complete], policy)
    dropped = [m.generation for m in complete if m.generation not in kept]
    # Under the run lock no other run is writing: every unfinished generation but the caller's own is dead.
    stale = [g for g in incomplete(target) if g != keep_also]
    gone = []
    for gen_id in [*dropped, *stale]:
        # The manifest first: if its lock refuses, the generation stays whole (and listed); once it is gone,
        # what remains is an incomplete generation, which the next run removes.
        if not target.delete(manifest_key(gen_id)):
            continue
        for key in list(target.keys(f"generations/{gen_id}/")):
            target.delete(key)
        if gen_id in dropped:
            gone.append(gen_id)
    if not gone:
        return []
    needed = {b.sha256 for m in complete if m.generation not in gone for b in m.blobs}
    candidates = {b.sha256 for m in complete if m.generation in gone for b in m.blobs} - needed
    for done, sha in enumerate(sorted(candidates), 1):
        target.delete(blob_key(sha))
        if on_progress is not None:
            on_progress("prune", done, len(candidates))
    return gone
