"""Our CSMs, and the CRM owners (ids, names, e-mails) that stand for each of them
(playbooks/crm/team.yaml): an imported account's owner becomes its CSM through them; an
owner that matches nobody gets the default CSM, and the import says so."""

from __future__ import annotations

import asyncpg

from core.models import Person
from playbooks.crm_mapping import TeamContent


class Team:
    """Our CSMs and the CRM owners that stand for them."""

    def __init__(self, content: TeamContent):
        self.default = next(c for c in content.csms if str(c.email).lower() == str(content.default_csm).lower())
        self.default_person = Person(name=self.default.name, email=str(self.default.email).lower())
        self.by_key: dict[str, Person] = {}
        for csm in content.csms:
            person = Person(name=csm.name, email=str(csm.email).lower())
            for key in (*csm.owners, csm.name, str(csm.email)):
                self.by_key[key.strip().lower()] = person
        self.content = content

    def resolve(self, keys: list[str]) -> tuple[Person, str | None, bool]:
        """(CSM, the owner key used, matched?) for the CRM owner keys (id, name, e-mail)."""
        for key in keys:
            person = self.by_key.get(key.strip().lower())
            if person is not None:
                return person, key, True
        return self.default_person, (keys[0] if keys else None), False


async def sync_team(pool: asyncpg.Pool | asyncpg.Connection, team: TeamContent) -> None:
    """Write team.yaml's CSMs to `csms` (adds and updates; a CSM removed from the file stays)."""
    await pool.executemany(
        "INSERT INTO csms (email, name, owner_keys) VALUES ($1, $2, $3) ON CONFLICT (email) DO UPDATE"
        " SET name = EXCLUDED.name, owner_keys = EXCLUDED.owner_keys, updated_at = now()"
        " WHERE (csms.name, csms.owner_keys) IS DISTINCT FROM (EXCLUDED.name, EXCLUDED.owner_keys)",
        [(str(c.email).lower(), c.name, sorted({k.strip().lower() for k in (*c.owners, c.name)})) for c in team.csms],
    )
