"""Content read from files and kept until one of them changes, so that edits to the playbooks
folder (notification routes, CRM mappings, connections) apply without a restart."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")
_cache: dict[tuple, tuple[tuple, object]] = {}


def cached_content(key: tuple, files: list[Path], load: Callable[[], T]) -> T:
    """`load()`'s result, computed again when a file of `files` changed (modification time in
    nanoseconds, or appeared or went) since the last call with `key`. `load` may raise
    (PlaybookError for invalid content): nothing is cached then."""
    stamp = tuple((str(f), f.stat().st_mtime_ns) if f.exists() else (str(f), 0) for f in files)
    hit = _cache.get(key)
    if hit is None or hit[0] != stamp:
        hit = (stamp, load())
        _cache[key] = hit
    return hit[1]  # type: ignore[return-value]
