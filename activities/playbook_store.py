"""Playbook versions stored once, content-addressed and immutable (issue 18, "lighter plays").

A launch stores the playbook snapshot it would have copied into the play (`store_version`) and
gives the play a light copy: the same content (the plan its own logic needs) with every
template's sources (subject, body, layouts) left out and a reference to the stored version in
their place (`EmailTemplate.stored_as`). Activities turn a light template back into the whole
one (`full_template`) from a bounded in-process cache, or PostgreSQL. A play launched before
this carries whole templates: they are used as they are.

Table `playbook_versions` (migration 0040): the key is the SHA-256 (hex) of the snapshot's
canonical JSON, so the same files give the same key and another version another row; rows are
never updated nor deleted (a trigger refuses it).
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict

import asyncpg

from activities.common import not_retryable
from core.models import EmailTemplate
from playbooks.schema import PlaybookSnapshot

CACHE_VERSIONS = 32  # versions kept in a worker; a few per playbook live at any time


def version_key(snapshot: PlaybookSnapshot) -> str:
    """The SHA-256 (64 hex digits) of the snapshot's canonical JSON: its content address."""
    canonical = json.dumps(snapshot.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def light(snapshot: PlaybookSnapshot, key: str) -> PlaybookSnapshot:
    """The snapshot as a play carries it: content whole, templates without their sources."""
    templates = {
        name: t.model_copy(update={"subject": "", "body": "", "partials": {}, "stored_as": f"{key}#{name}"})
        for name, t in snapshot.templates.items()
    }
    return snapshot.model_copy(update={"templates": templates})


async def store_version(pool: asyncpg.Pool, snapshot: PlaybookSnapshot, playbook: str) -> PlaybookSnapshot:
    """Store the version once (a second store of the same files changes nothing) and return the
    light copy to launch the play with. Raises asyncpg errors (PostgreSQL down) as they come."""
    key = version_key(snapshot)
    # Written every time (one statement that finds it there): this process's cache says what some
    # database held, not that this one does (a restored database, another DATABASE_URL).
    await pool.execute(
        "INSERT INTO playbook_versions (version_key, playbook, version, digest, snapshot)"
        " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (version_key) DO NOTHING",
        key, playbook, snapshot.content.version, snapshot.digest, snapshot.model_dump(mode="json"),
    )
    _remember(key, snapshot.templates)
    return light(snapshot, key)


async def full_template(pool: asyncpg.Pool, template: EmailTemplate) -> EmailTemplate:
    """The template with its sources: itself when it carries them, else from the stored version.
    A reference to no stored version is a permanent failure (non-retryable, says which)."""
    if template.stored_as is None:
        return template
    key, _, name = template.stored_as.partition("#")
    templates = _cache.get(key)
    if templates is None:
        raw = await pool.fetchval("SELECT snapshot->'templates' FROM playbook_versions WHERE version_key = $1", key)
        if raw is None:
            raise not_retryable(f"playbook version {key[:12]} is not stored (template {name!r})", "VersionMissing")
        raw = json.loads(raw) if isinstance(raw, str) else raw  # the pool's codec decodes jsonb
        templates = {k: EmailTemplate.model_validate(v) for k, v in raw.items()}
        _remember(key, templates)
    else:
        _cache.move_to_end(key)
    stored = templates.get(name)
    if stored is None:
        raise not_retryable(f"playbook version {key[:12]} has no template {name!r}", "VersionMissing")
    # The play's own rules (window, meeting, category) as it carries them; the sources from the store.
    return template.model_copy(update={"subject": stored.subject, "body": stored.body, "partials": stored.partials,
                                       "stored_as": None})


_cache: OrderedDict[str, dict[str, EmailTemplate]] = OrderedDict()


def _remember(key: str, templates: dict[str, EmailTemplate]) -> None:
    _cache[key] = templates
    _cache.move_to_end(key)
    while len(_cache) > CACHE_VERSIONS:
        _cache.popitem(last=False)
