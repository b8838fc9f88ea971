"""Playbook versions stored once, content-addressed and immutable; plays carry a light snapshot
and the e-mail is rendered from the stored version (issue 18, "lighter plays")."""

from __future__ import annotations

from datetime import date, timedelta

import asyncpg
import pytest
from temporalio.client import WorkflowHistory
from temporalio.exceptions import ApplicationError

from activities import playbook_store
from activities.playbook_store import full_template, light, store_version, version_key
from activities.stored_parts import PgPartStore, StoredParts
from starter.demo import DEMO_ACCOUNT_ID
from starter.steering import launch_renewal, playbook_snapshot
from tests.conftest import asleep_on_timer, eventually
from tests.workflows.replay_test import HISTORIES
from workflows.renewal_messages import RENEWAL, RenewalInput


async def test_a_version_is_stored_once_and_never_changes(pool, settings):
    whole = playbook_snapshot(settings, RENEWAL)
    first = await store_version(pool, whole, RENEWAL)
    playbook_store._cache.clear()  # a second launcher (another process) stores it again
    second = await store_version(pool, whole, RENEWAL)
    assert first == second
    rows = await pool.fetch("SELECT version_key, playbook, version, digest FROM playbook_versions")
    assert [(r["version_key"], r["playbook"], r["digest"]) for r in rows] == [(version_key(whole), RENEWAL, whole.digest)]
    with pytest.raises(asyncpg.RaiseError, match="immutable"):
        await pool.execute("UPDATE playbook_versions SET version = 99")
    with pytest.raises(asyncpg.RaiseError, match="immutable"):
        await pool.execute("DELETE FROM playbook_versions")

    # The play carries the plan whole and no template source: about half the bytes (the plan is the rest).
    assert first.content == whole.content and first.digest == whole.digest
    assert all(t.body == "" and t.subject == "" and not t.partials and t.stored_as for t in first.templates.values())
    assert len(first.model_dump_json()) < 0.6 * len(whole.model_dump_json())

    # An activity gets the sources back from the store (here: from PostgreSQL, the cache emptied).
    playbook_store._cache.clear()
    for key, t in first.templates.items():
        full = await full_template(pool, t)
        assert full == whole.templates[key]
    # A play from before carries its sources: used as they are, nothing read.
    assert await full_template(pool, whole.templates["churn_notice"]) is whole.templates["churn_notice"]


async def test_another_version_gets_another_key_and_a_missing_one_fails_for_good(pool, settings):
    whole = playbook_snapshot(settings, RENEWAL)
    changed = whole.model_copy(update={"templates": {
        **whole.templates, "churn_notice": whole.templates["churn_notice"].model_copy(update={"body": "Changed"})}})
    assert version_key(changed) != version_key(whole)
    ref = light(changed, version_key(changed)).templates["churn_notice"]
    playbook_store._cache.clear()
    with pytest.raises(ApplicationError, match="is not stored") as err:
        await full_template(pool, ref)
    assert err.value.non_retryable and err.value.type == "VersionMissing"


async def test_the_worker_cache_is_bounded(pool, settings):
    whole = playbook_snapshot(settings, RENEWAL)
    for n in range(playbook_store.CACHE_VERSIONS + 5):
        content = whole.content.model_copy(update={"version": n + 1})
        await store_version(pool, whole.model_copy(update={"content": content}), RENEWAL)
    assert len(playbook_store._cache) == playbook_store.CACHE_VERSIONS
    assert await pool.fetchval("SELECT count(*) FROM playbook_versions") == playbook_store.CACHE_VERSIONS + 5


async def test_a_light_play_sends_its_email_rendered_from_the_stored_version(env, worker, pool, settings, sink):
    handle = await launch_renewal(env.client, pool, settings, DEMO_ACCOUNT_ID, "test",
                                  date.today() + timedelta(days=100), settings.task_queue)
    history = await handle.fetch_history()
    (started,) = [e for e in history.events if e.HasField("workflow_execution_started_event_attributes")]
    payload = started.workflow_execution_started_event_attributes.input.payloads[0]
    # The light snapshot is itself a stored payload part (activities/stored_parts.py): only its key is here.
    assert payload.metadata["encoding"] == b"json/stored-parts" and b'"playbook":{"$stored":"' in payload.data
    (decoded,) = await StoredParts(PgPartStore(pool)).decode([payload])
    arg = RenewalInput.model_validate_json(decoded.data)
    assert all(not t.body and t.stored_as for t in arg.playbook.templates.values())
    await asleep_on_timer(env.client, handle.id)
    # 100 days out: the countdown's next steps come within weeks.
    await env.sleep(timedelta(days=40))
    mails = await eventually(lambda: _sent(sink), "a renewal e-mail at the sink")
    assert all(m.subject and "{{" not in m.subject for m in mails)


async def _sent(sink):
    return list(sink.messages)


def test_histories_recorded_before_carry_whole_snapshots():
    """The recorded histories are from before light plays: their inputs carry every template's
    sources, and tests/workflows/replay_test.py replays them with this code."""
    for path in sorted(p for p in HISTORIES.glob("renewal-*.json") if "light" not in p.stem):
        history = WorkflowHistory.from_json(path.stem, path.read_text())
        data = history.events[0].workflow_execution_started_event_attributes.input.payloads[0].data
        arg = RenewalInput.model_validate_json(data)
        assert all(t.body and t.stored_as is None for t in arg.playbook.templates.values())
