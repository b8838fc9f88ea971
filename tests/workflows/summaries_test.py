"""What the Temporal Web UI shows of a play (issue 18): a summary on every activity call and timer,
the play's static summary and details, and its current details. Run on the dev server (the
time-skipping test server keeps no user metadata), with the product's worker in this process."""

from __future__ import annotations

import pytest_asyncio
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from starter.demo import DEMO_ACCOUNT_ID
from starter.devstack import dev_server_args
from starter.steering import launch_onboarding
from tests.conftest import DEV_SERVER, asleep_on_timer, free_port
from tests.round_the_clock import round_the_clock
from worker import build_worker
from workflows.summaries import describe_step, markdown_text, recipients

SCHEDULED = EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
TIMER = EventType.EVENT_TYPE_TIMER_STARTED


@pytest_asyncio.fixture
async def dev(tmp_path):
    args = dev_server_args(tmp_path / "temporal.db", free_port(), free_port())
    server = await WorkflowEnvironment.start_local(
        data_converter=pydantic_data_converter, dev_server_existing_path=str(DEV_SERVER),
        dev_server_extra_args=args[args.index("--log-level"):], ui=False,
    )
    yield server
    await server.shutdown()


def text(payload) -> str:
    return pydantic_data_converter.payload_converter.from_payload(payload, str)


async def summaries(handle: WorkflowHandle) -> list[tuple[int, str, str]]:
    """(event type, activity type or "", summary) of every activity scheduled and timer started."""
    out = []
    async for event in handle.fetch_history_events():
        if event.event_type in (SCHEDULED, TIMER):
            assert event.HasField("user_metadata") and event.user_metadata.HasField("summary"), event
            kind = event.activity_task_scheduled_event_attributes.activity_type.name if event.event_type == SCHEDULED else ""
            out.append((event.event_type, kind, text(event.user_metadata.summary)))
    return out


async def test_onboarding_history_and_describe_show_readable_summaries(dev, pool, settings, sink, tmp_path):
    settings = settings.model_copy(update={"playbooks_dir": round_the_clock(tmp_path), "search_attributes": True})
    async with build_worker(dev.client, pool, settings, settings.task_queue):
        handle = await launch_onboarding(dev.client, pool, settings, DEMO_ACCOUNT_ID, "summaries-test",
                                         settings.task_queue)
        await asleep_on_timer(dev.client, handle.id, "the play to send its welcome e-mail and sleep")
        events = await summaries(handle)
        desc = await handle.describe()
        metadata = await handle.query("__temporal_workflow_metadata")

    by_kind = {}
    for event_type, kind, summary in events:
        by_kind.setdefault(kind, []).append(summary)
    assert by_kind["load_play_context"] == [  # the account and both calendars in one activity (issue 18)
        f"load account {DEMO_ACCOUNT_ID} and its working days (staff America/New_York, 5 years)"]
    (welcome,) = [s for s in by_kind["send_templated_email"] if s.startswith("welcome e-mail")]
    assert "welcome e-mail to 3 contacts (sponsor, contacts), cc csm" == welcome, welcome
    (tasks,) = by_kind["create_tasks"]  # a step's tasks in one activity (issue 18)
    assert tasks.startswith("Planning & Assessment phase task"), tasks
    assert "for csm, due " in tasks and "America/New_York" in tasks, tasks
    # Every timer says what it waits for and when, in the account's zone.
    timers = by_kind[""]
    assert timers and all(t.startswith("wait until the ") and "America/New_York" in t for t in timers), timers
    assert any(" day " in t for t in timers), timers
    assert all(len(s) <= 200 for _, _, s in events)

    assert (await desc.static_summary()).startswith("onboarding for Acme Logistics (acme), playbook v")
    details = await desc.static_details()
    assert "**Account:** Acme Logistics" in details and "**Playbook:** onboarding v" in details
    assert "**Launched by:** summaries-test" in details
    current = metadata.current_details
    assert "**Phase:** planning" in current and "**Waiting for:**" in current and "**Next action:**" in current


def test_step_names_and_recipients_read_as_words():
    assert describe_step("email/kickoff_summary") == "the kickoff_summary e-mail"
    assert describe_step("phase/adoption") == "the adoption phase"
    assert describe_step("waiting for renewed or churned") == "waiting for renewed or churned"
    assert recipients(["csm"], [], None, None) == "1 contact (csm)"
    assert recipients([], ["csm"], None, None) == "nobody, cc csm"
    # Text from outside (a ticket subject, a CRM name) shows as text in the UI's Markdown.
    assert markdown_text("Sync [down](http://x.example)\n<b>now</b>") == \
        "Sync \\[down\\]\\(http://x.example\\) \\<b\\>now\\</b\\>"
