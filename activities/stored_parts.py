"""A claim check for the shared parts of Temporal payloads (issue 18, "lighter plays").

Thousands of plays carry the same playbook snapshot in their input (about 16 KB of JSON for the
renewal countdown) and get the same working-day calendars back from their first activity. This
payload codec stores each such part once in PostgreSQL (`stored_payload_parts`, migration 0049:
content-addressed by the SHA-256 of its canonical JSON, rows never change) and leaves only
`{"$stored": "<64 hex>"}` in the payload, which the Temporal server keeps in the play's history.
Decoding (in the worker, before the play or activity sees its argument) puts the part back, from a
bounded in-process cache or PostgreSQL. A play sees exactly the input it always did: its code and
its commands do not change, so plays in flight and recorded histories replay as before (their
payloads have no reference: they pass through untouched).

Which parts: a top-level `playbook` that is a snapshot (`content`, `templates`, `digest`) and a
top-level `calendars` that holds `account` and `staff` calendars, each of `MIN_PART_BYTES` or
more. Everything else passes through: a payload without such a part is not even parsed past a
byte search. A stored payload gets the encoding `json/stored-parts`, so a client without this
codec fails loudly instead of reading a reference as data.

Why not the SDK's whole-payload external storage (temporalio.converter external storage drivers):
it stores each payload whole, so every play's input would still cost its 16 KB, only in another
store; here the part is stored once per playbook version (or calendar) for every play.

Every client that starts or runs plays uses it (`with_stored_parts`): the worker (build_worker),
the launches of starter/steering.py. A history exported with references replays with
`DictPartStore` over the parts saved beside it (tests/histories/*.parts.json).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import weakref
from collections import OrderedDict
from collections.abc import Mapping, Sequence

import asyncpg
from temporalio.api.common.v1 import Payload
from temporalio.client import Client
from temporalio.converter import PayloadCodec

ENCODING = b"json/stored-parts"
PLAIN = b"json/plain"
MARK = "$stored"
MIN_PART_BYTES = 1024  # a smaller part costs less in the history than its reference's round trip
CACHE_BYTES = 16 * 2**20  # parts kept decoded in a process (a few per playbook version and place)


class StoredPartMissing(RuntimeError):
    """A payload refers to a part that is not stored (another database than the one that wrote it)."""


def part_kind(name: str, value: object) -> str | None:
    """The kind of a top-level payload field worth storing once, or None."""
    if not isinstance(value, dict):
        return None
    if name == "playbook" and {"content", "templates", "digest"} <= value.keys():
        return "playbook"
    if name == "calendars" and {"account", "staff"} <= value.keys():
        return "calendars"
    return None


def canonical(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def part_key(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class PartStore:
    """Where parts live: `put` {key: (kind, canonical JSON)} (idempotent), `get` keys -> JSON texts
    (raises StoredPartMissing naming the first key it does not have)."""

    async def put(self, parts: dict[str, tuple[str, str]]) -> None:
        raise NotImplementedError

    async def get(self, keys: Sequence[str]) -> dict[str, str]:
        raise NotImplementedError


class PgPartStore(PartStore):
    """`stored_payload_parts` in PostgreSQL. A part this store wrote once is not written again
    (one statement per new part and pool, `ON CONFLICT DO NOTHING`)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self._written: set[str] = set()

    async def put(self, parts: dict[str, tuple[str, str]]) -> None:
        new = {k: v for k, v in parts.items() if k not in self._written}
        if not new:
            return
        await self.pool.execute(
            "INSERT INTO stored_payload_parts (part_key, kind, body)"
            " SELECT * FROM unnest($1::text[], $2::text[], $3::text[]) ON CONFLICT (part_key) DO NOTHING",
            list(new), [kind for kind, _ in new.values()], [text for _, text in new.values()],
        )
        self._written.update(new)

    async def get(self, keys: Sequence[str]) -> dict[str, str]:
        rows = await self.pool.fetch("SELECT part_key, body FROM stored_payload_parts WHERE part_key = ANY($1::text[])",
                                     list(keys))
        found = {r["part_key"]: r["body"] for r in rows}
        missing = [k for k in keys if k not in found]
        if missing:
            raise StoredPartMissing(f"stored payload part {missing[0][:12]} is not in stored_payload_parts "
                                    "(a play started against another database?)")
        return found


class DictPartStore(PartStore):
    """Parts in memory: {key: canonical JSON}, e.g. read from a recorded history's .parts.json."""

    def __init__(self, parts: Mapping[str, str] | None = None) -> None:
        self.parts: dict[str, str] = dict(parts or {})
        self.kinds: dict[str, str] = {}

    async def put(self, parts: dict[str, tuple[str, str]]) -> None:
        for key, (kind, text) in parts.items():
            self.parts[key], self.kinds[key] = text, kind

    async def get(self, keys: Sequence[str]) -> dict[str, str]:
        missing = [k for k in keys if k not in self.parts]
        if missing:
            raise StoredPartMissing(f"stored payload part {missing[0][:12]} is not among the saved parts")
        return {k: self.parts[k] for k in keys}


_cache: OrderedDict[str, str] = OrderedDict()  # key -> canonical JSON; content-addressed, so any store's
_cache_bytes = 0


def _remember(key: str, text: str) -> None:
    global _cache_bytes
    if key in _cache:
        _cache.move_to_end(key)
        return
    _cache[key] = text
    _cache_bytes += len(text)
    while _cache_bytes > CACHE_BYTES and len(_cache) > 1:
        _, old = _cache.popitem(last=False)
        _cache_bytes -= len(old)


class StoredParts(PayloadCodec):
    """The payload codec: shared parts out to `store` on encode, back in on decode."""

    def __init__(self, store: PartStore) -> None:
        self.store = store

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [await self._encode(p) for p in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [await self._decode(p) for p in payloads]

    async def _encode(self, payload: Payload) -> Payload:
        data = payload.data
        if (payload.metadata.get("encoding") != PLAIN or len(data) < MIN_PART_BYTES
                or (b'"playbook"' not in data and b'"calendars"' not in data)):
            return payload
        obj = json.loads(data)
        if not isinstance(obj, dict):
            return payload
        parts: dict[str, tuple[str, str]] = {}
        for name, value in obj.items():
            kind = part_kind(name, value)
            if kind is None:
                continue
            text = canonical(value)
            if len(text) < MIN_PART_BYTES:
                continue
            key = part_key(text)
            parts[key] = (kind, text)
            obj[name] = {MARK: key}
        if not parts:
            return payload
        await self.store.put(parts)
        for key, (_, text) in parts.items():
            _remember(key, text)
        metadata = dict(payload.metadata)
        metadata["encoding"] = ENCODING
        return Payload(metadata=metadata, data=json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode())

    async def _decode(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding") != ENCODING:
            return payload
        obj = json.loads(payload.data)
        refs = {name: v[MARK] for name, v in obj.items() if isinstance(v, dict) and v.keys() == {MARK}}
        texts = {k: _cache[k] for k in refs.values() if k in _cache}
        wanted = [k for k in dict.fromkeys(refs.values()) if k not in texts]
        if wanted:
            for key, text in (await self.store.get(wanted)).items():
                if part_key(text) != key:
                    raise StoredPartMissing(f"stored payload part {key[:12]} does not match its key")
                texts[key] = text
        for name, key in refs.items():
            _remember(key, texts[key])
            obj[name] = json.loads(texts[key])
        metadata = dict(payload.metadata)
        metadata["encoding"] = PLAIN
        return Payload(metadata=metadata, data=json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode())


_clients: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # client -> {id(pool): (pool, wrapped)}


def with_stored_parts(client: Client, pool: asyncpg.Pool) -> Client:
    """`client` with the StoredParts codec over `pool` (the same client object for the same pair).
    A client that already has a codec (ours or another) is returned as it is."""
    if client.data_converter.payload_codec is not None:
        return client
    known = _clients.setdefault(client, {})
    entry = known.get(id(pool))
    if entry is None or entry[0] is not pool:
        converter = dataclasses.replace(client.data_converter, payload_codec=StoredParts(PgPartStore(pool)))
        entry = known[id(pool)] = (pool, Client(**{**client.config(), "data_converter": converter}))
    return entry[1]
