"""Shared payload parts stored once (issue 18, "lighter plays"): the playbook snapshot of a play's
input and the calendars of its start activity are in PostgreSQL, the history holds their keys."""

from __future__ import annotations

import json
from datetime import date, timedelta

import asyncpg
import pytest
from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import EventType
from temporalio.contrib.pydantic import pydantic_data_converter

from activities import stored_parts
from activities.playbook_store import store_version
from activities.stored_parts import (
    ENCODING, MARK, DictPartStore, PgPartStore, StoredPartMissing, StoredParts, canonical, part_key,
)
from core.models import PlayCalendars
from core.working_time import WorkCalendar
from starter.demo import DEMO_ACCOUNT_ID
from starter.steering import launch_renewal, playbook_snapshot
from tests.conftest import asleep_on_timer
from workflows.renewal import RenewalCountdown
from workflows.renewal_messages import RENEWAL, RenewalInput


def _payload(obj) -> Payload:
    return pydantic_data_converter.payload_converter.to_payloads([obj])[0]


async def _light_input(pool, settings) -> RenewalInput:
    light = await store_version(pool, playbook_snapshot(settings, RENEWAL), RENEWAL)
    return RenewalInput(account_id="acct-1", renewal_date=date(2027, 6, 1), tier="Enterprise", playbook=light)


async def test_a_shared_part_goes_out_and_comes_back_whole(pool, settings):
    arg = await _light_input(pool, settings)
    plain = _payload(arg)
    store = DictPartStore()
    (encoded,) = await StoredParts(store).encode([plain])
    assert encoded.metadata["encoding"] == ENCODING
    assert len(encoded.data) < 600 < 10_000 < len(plain.data), (len(encoded.data), len(plain.data))
    key = json.loads(encoded.data)["playbook"][MARK]
    assert store.kinds == {key: "playbook"} and part_key(store.parts[key]) == key
    stored_parts._cache.clear()  # another process: the part comes from the store
    (decoded,) = await StoredParts(store).decode([encoded])
    assert decoded.metadata["encoding"] == b"json/plain"
    assert json.loads(decoded.data) == json.loads(plain.data)
    assert RenewalInput.model_validate_json(decoded.data) == arg


async def test_payloads_without_a_shared_part_pass_untouched():
    codec = StoredParts(DictPartStore())
    small = _payload({"playbook": {"content": 1, "templates": {}, "digest": "x"}})  # under MIN_PART_BYTES
    other = _payload({"notes": "x" * 5000})
    text = _payload("playbook " * 500)
    assert await codec.encode([small, other, text]) == [small, other, text]
    assert await codec.decode([small, other, text]) == [small, other, text]


async def test_stored_parts_are_written_once_and_never_change(pool):
    text = canonical({"account": {"tz": "UTC", "holidays": ["2027-01-01"] * 100}, "staff": {"tz": "UTC"}})
    key = part_key(text)
    for store in (PgPartStore(pool), PgPartStore(pool)):  # a second process writes it again: nothing changes
        await store.put({key: ("calendars", text)})
    assert await pool.fetch("SELECT part_key, kind, body FROM stored_payload_parts") == [(key, "calendars", text)]
    with pytest.raises(asyncpg.RaiseError, match="immutable"):
        await pool.execute("UPDATE stored_payload_parts SET body = '{}'")
    with pytest.raises(asyncpg.RaiseError, match="immutable"):
        await pool.execute("DELETE FROM stored_payload_parts")
    assert await PgPartStore(pool).get([key]) == {key: text}


async def test_a_reference_to_a_part_not_stored_is_refused_by_name(pool):
    missing = "ab" * 32
    payload = Payload(metadata={"encoding": ENCODING}, data=json.dumps({"playbook": {MARK: missing}}).encode())
    stored_parts._cache.clear()
    with pytest.raises(StoredPartMissing, match="abababababab is not in stored_payload_parts"):
        await StoredParts(PgPartStore(pool)).decode([payload])


async def test_plays_of_one_version_share_one_snapshot_and_calendar_object(pool, settings):
    data = _payload(await _light_input(pool, settings)).data
    first, second = RenewalInput.model_validate_json(data), RenewalInput.model_validate_json(data)
    assert first is not second and first.playbook is second.playbook
    cal = {"tz": "America/New_York", "weekend": [5, 6], "holidays": ["2027-01-01", "2027-07-05"], "source": "US"}
    one = PlayCalendars.model_validate_json(json.dumps({"account": cal, "staff": cal}))
    two = PlayCalendars.model_validate_json(json.dumps({"account": cal, "staff": {**cal, "tz": "Europe/Paris"}}))
    assert one.account is one.staff is two.account and two.staff.tz == "Europe/Paris"
    built = PlayCalendars(account=WorkCalendar(tz="UTC"), staff=WorkCalendar(tz="UTC"))  # objects: as given
    assert built.account.tz == built.staff.tz == "UTC" and built.account.weekend == (5, 6)


async def test_a_parked_renewal_keeps_only_keys_in_its_history(env, worker, pool, settings):
    handle = await launch_renewal(env.client, pool, settings, DEMO_ACCOUNT_ID, "test",
                                  date.today() + timedelta(days=200), settings.task_queue)
    await asleep_on_timer(env.client, handle.id)
    events = (await handle.fetch_history()).events
    started = events[0].workflow_execution_started_event_attributes.input.payloads[0]
    assert started.metadata["encoding"] == ENCODING and len(started.data) < 1500, len(started.data)
    results = [e.activity_task_completed_event_attributes.result.payloads[0] for e in events
               if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED]
    context = next(p for p in results if b'"calendars"' in p.data)  # load_play_context: account and calendars
    assert context.metadata["encoding"] == ENCODING and b'"calendars":{"$stored":"' in context.data
    kinds = {r["kind"] for r in await pool.fetch("SELECT kind FROM stored_payload_parts")}
    assert kinds == {"playbook", "calendars"}
    # The play saw its whole input: its status (a plain client, no codec) shows the version.
    status = await env.client.get_workflow_handle(handle.id).query(RenewalCountdown.status)
    assert status.playbook_digest == playbook_snapshot(settings, RENEWAL).digest and status.schedule
