"""The preview runs the real plays with recording activities: same timeline, nothing sent or written."""

from __future__ import annotations

import re
import time
from datetime import date, timedelta
from zoneinfo import ZoneInfo

import pytest
from temporalio import activity

from core.settings import get_settings
from playbooks.samples import SAMPLE_ACCOUNT, SAMPLE_STAFF
from starter.demo import DEMO_ACCOUNT_ID
from starter.preview import RecordingActivities, check_mirrors, format_timeline, preview, real_activities
from starter.steering import launch_onboarding
from tests.workflows.onboarding_test import ON_TIME_EMAILS, planned_emails
from tests.workflows.play_driver import ET, PlayDriver, skip_to_next_monday, us_calendar
from tests.workflows.renewal_test import ENTERPRISE_EMAILS, ENTERPRISE_TASKS, email_day, task_day

WRITTEN_TABLES = ("communications", "tasks", "escalations", "risk_events", "sla_tickets", "service_credits")


async def timed_preview(capsys, playbook: str, **kw):
    started = time.perf_counter()
    entries = await preview(playbook, **kw)
    with capsys.disabled():
        print(f"\npreview({playbook!r}, {kw}) took {time.perf_counter() - started:.2f}s wall, {len(entries)} entries")
    return entries


def weekly_undated(step: str) -> str:
    # Weekly status steps carry the Friday's date; the plays compared start on different Mondays.
    return re.sub(r"^(email/weekly_status/).*$", r"\1", step)


def of_kind(entries, kind: str):
    return [e for e in entries if e.kind == kind]


async def row_counts(pool) -> dict[str, int]:
    return {t: await pool.fetchval(f"SELECT count(*) FROM {t}") for t in WRITTEN_TABLES}


async def test_onboarding_preview_is_the_real_play_and_writes_nothing(
    env, worker, pool, settings, sink, capsys, monkeypatch
):
    # Point the default settings at this test's database and SMTP sink: a preview that
    # reached for the real activities would write where this test looks.
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    monkeypatch.setenv("SMTP_HOST", settings.smtp_host)
    monkeypatch.setenv("SMTP_PORT", str(settings.smtp_port))
    get_settings.cache_clear()
    entries = await timed_preview(capsys, "onboarding")
    get_settings.cache_clear()
    assert await row_counts(pool) == dict.fromkeys(WRITTEN_TABLES, 0)
    assert sink.messages == []

    emails = of_kind(entries, "email")
    start = emails[0].at.astimezone(ET)
    cal = us_calendar(start)
    assert {e.step for e in emails} == planned_emails(cal, cal.roll_forward(start.date()))
    days = {e.step: e.day for e in emails}
    assert {s: days[s] for s, _ in ON_TIME_EMAILS} == dict(ON_TIME_EMAILS)  # the plan's working days
    assert "Welcome to TAI Autonomic Systems, Sample Corp" in emails[0].summary
    assert "to sponsor, contacts; cc csm" in emails[0].summary
    tasks = of_kind(entries, "task")
    assert len(tasks) == 20
    assert of_kind(entries, "escalation") == of_kind(entries, "risk") == of_kind(entries, "failed") == []

    await skip_to_next_monday(env)
    handle = await launch_onboarding(env.client, pool, settings, DEMO_ACCOUNT_ID, "test", settings.task_queue)
    await PlayDriver(env, pool, handle).run()
    assert [weekly_undated(m.step) for m in sink.messages] == [weekly_undated(e.step) for e in emails]
    real_tasks = await pool.fetch("SELECT step FROM tasks WHERE workflow_id = $1", handle.id)
    assert sorted(r["step"] for r in real_tasks) == sorted(e.step for e in tasks)


async def test_renewal_preview_shows_the_enterprise_countdown(capsys):
    entries = await timed_preview(capsys, "renewal")
    emails = of_kind(entries, "email")
    renewal = emails[0].at.astimezone(ET).date() + timedelta(days=180)
    assert [(e.step, e.day) for e in emails] == [(s, email_day(renewal, s, offset)) for s, offset in ENTERPRISE_EMAILS]

    tasks = {e.step: e.summary for e in of_kind(entries, "task")}
    assert tasks.keys() == ENTERPRISE_TASKS.keys()
    for step, (owner, offset, due) in ENTERPRISE_TASKS.items():
        due_on = renewal + timedelta(days=task_day(renewal, offset, due))
        assert f"owner {owner}," in tasks[step] and f"due {due_on} " in tasks[step], step
    # Renewed ten days out: the countdown's open tasks are closed as moot.
    assert {e.step for e in of_kind(entries, "task_completed")} == {
        s for s in ENTERPRISE_TASKS if not s.startswith(("step/post_renewal", "step/success_plan"))
    }
    assert [e.summary.split(" (")[0] for e in of_kind(entries, "risk")] == ["contract_final_90_days +10"]
    next_term = renewal.replace(year=renewal.year + 1)
    assert [e.summary for e in of_kind(entries, "outcome")] == [f"account renewed, next renewal {next_term}"]


async def test_p0_sla_preview_climbs_the_whole_ladder_and_credits(capsys):
    entries = await timed_preview(capsys, "sla", ticket_priority="P0")
    escalations = of_kind(entries, "escalation")
    assert [e.step for e in escalations] == ["escalation/L1", "escalation/L2", "escalation/L3", "escalation/L4"]
    assert [e.summary.split(":")[0] for e in escalations] == [
        "L1 to cs_manager", "L2 to vp_engineering", "L3 to vp_product", "L4 to ceo",
    ]
    # The escalation reports are e-mails of their own, as the real activity sends them.
    assert {f"{e.step}/email" for e in escalations} <= {e.step for e in of_kind(entries, "email")}
    credits = of_kind(entries, "credit")
    assert [e.step for e in credits] == ["credit/response", "credit/resolution"]
    assert "$1000.00" in credits[1].summary  # 10% of Sample Corp's $10,000 monthly fee
    assert [e.summary for e in of_kind(entries, "ticket")] == [
        "PREVIEW-1 P0 open", "PREVIEW-1 P0 resolved", "PREVIEW-1 P0 closed",
    ]
    lines = format_timeline(entries)
    assert len(lines) == len(entries) and re.match(r"^Mon \d{4}-\d\d-\d\d 10:00  ticket ", lines[0])


async def test_p1_sla_preview_shows_the_ticket_emails(capsys):
    entries = await timed_preview(capsys, "sla", ticket_priority="P1")
    steps = [e.step for e in of_kind(entries, "email") if e.step.startswith("comms/")]
    assert steps[0] == "comms/ack" and "comms/approaching/response" in steps
    assert len([s for s in steps if s.startswith("comms/update/")]) >= 2  # every 4 hours until resolved
    assert steps[-3:] == ["comms/resolution/0", "comms/closing/0", "comms/csat/0"]
    survey = next(e for e in entries if e.step == "comms/csat/0")
    assert "How did we do on ticket PREVIEW-1?" in survey.summary and "one-click scores 1-5" in survey.summary


def test_recorder_mirrors_every_worker_activity_and_refuses_a_missing_or_changed_one():
    mine = RecordingActivities(SAMPLE_ACCOUNT, SAMPLE_STAFF, "America/New_York").activities()  # checks itself
    assert len(mine) == len(real_activities())

    @activity.defn(name="brand_new_step")
    async def brand_new_step(arg: str) -> None: ...

    @activity.defn(name="load_account")
    async def load_account(account_id: int) -> None: ...

    with pytest.raises(RuntimeError, match="the worker runs 'brand_new_step'"):
        check_mirrors(mine, [*real_activities(), brand_new_step])
    changed = [a for a in real_activities() if a.__name__ != "load_account"] + [load_account]
    with pytest.raises(RuntimeError, match="'load_account' takes"):
        check_mirrors(mine, changed)


def test_preview_command_prints_the_timeline_and_sends_nothing():
    import subprocess
    import sys

    from core.settings import PROJECT_ROOT

    done = subprocess.run([sys.executable, "-m", "starter", "preview", "renewal", "--renewal-days-out", "40"],
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "step/signature_chase/email/signature_request" in done.stdout
    assert "step/health_review" not in done.stdout  # dated before the launch: skipped, as a real play does
    assert "nothing was sent or written" in done.stdout and "WARN" not in done.stderr
    bad = subprocess.run([sys.executable, "-m", "starter", "preview", "sla", "--priority", "P9"],
                         cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and "priority 'P9'" in bad.stderr and "Traceback" not in bad.stderr


def next_eu_switch(after: date) -> date:
    """The next last Sunday of March or October (the EU's DST switches) after `after`."""
    for year in (after.year, after.year + 1):
        for month in (3, 10):
            last = date(year, month, 31)
            sunday = last - timedelta(days=(last.weekday() + 1) % 7)
            if sunday > after:
                return sunday
    raise AssertionError("unreachable")


async def test_preview_of_a_paris_account_across_a_dst_switch_keeps_09_00_paris(capsys):
    paris = SAMPLE_ACCOUNT.model_copy(update={"timezone": "Europe/Paris", "country": "FR"})
    switch = next_eu_switch(date.today() + timedelta(days=7))
    entries = await timed_preview(capsys, "onboarding", account=paris, start=switch - timedelta(days=6))
    zone = ZoneInfo("Europe/Paris")
    timed = [e for e in of_kind(entries, "email") if e.step != "email/welcome"]
    for e in timed:  # at 09:00 Paris on a working day of the account, before and after the switch
        local = e.at.astimezone(zone)
        assert 9 <= local.hour < 17 and local.weekday() < 5, (e.step, local)
    before = [e for e in timed if e.at.astimezone(zone).date() < switch]
    after = [e for e in timed if e.at.astimezone(zone).date() > switch]
    assert before and after
    assert {e.at.astimezone(zone).utcoffset() for e in before} != {e.at.astimezone(zone).utcoffset() for e in after}
    lines = format_timeline(entries, "Europe/Paris")
    assert any(" 09:00  email " in line and "weekly_status" in line for line in lines)


async def test_preview_shows_the_welcome_at_the_opening_of_a_tokyo_accounts_window(capsys):
    tokyo = SAMPLE_ACCOUNT.model_copy(update={"timezone": "Asia/Tokyo", "country": "JP"})
    entries = await timed_preview(capsys, "onboarding", account=tokyo)
    welcome = next(e for e in of_kind(entries, "email") if e.step == "email/welcome")
    # Launched Monday 10:00 New York, Tuesday 00:00 Tokyo: the welcome goes at 09:00 Tokyo (19:00 New York).
    local = welcome.at.astimezone(ZoneInfo("Asia/Tokyo"))
    assert (local.weekday(), local.hour, local.minute) == (1, 9, 0) and welcome.at.astimezone(ET).hour == 19
    assert format_timeline([welcome], "Asia/Tokyo")[0].split("  ")[0].endswith("09:00")
