"""The console's Deliveries pages and `csplay deliveries`, against real deliveries: the list and
its filters, a delivery's attempts, the replay of a failed one (CSRF-checked), what is on or off."""

from __future__ import annotations

import asyncio
import os
import re
import sys

from core.settings import PROJECT_ROOT
from starter.console.auth import SESSION_COOKIE, add_user, log_in
from tests.deliveries.chat_test import ACME, p0_ticket
from tests.deliveries.conftest import Running, Service, notify_settings, settled

PASSWORD = "correct horse battery"


async def test_deliveries_pages_show_attempts_and_replay_a_failed_one(env, pool, settings, servers):
    slack = servers["slack"]
    slack.archived.add(ACME)
    s = notify_settings(settings, servers)
    async with Running(env, pool, s):
        await p0_ticket(env, pool, s)
        await settled(pool, "the P0 ticket's messages", 6, kind="chat")
        failed = await pool.fetchval("SELECT min(id) FROM deliveries WHERE status = 'failed'")
        async with Service(env, pool, s) as http:
            anonymous = await http.get("/console/deliveries")
            assert anonymous.status_code == 303 and anonymous.headers["location"].startswith("/console/login")
            await add_user(pool, "diana.hoang@tai.example", "Diana Hoang", PASSWORD, role="cs_manager")
            login = await log_in(pool, s, "diana.hoang@tai.example", PASSWORD)
            http.cookies.set(SESSION_COOKIE, login.token)
            page = await http.get("/console/deliveries")
            html = page.text
            assert page.status_code == 200 and 'href="/console/deliveries" class="current"' in html
            assert 'id="count-delivered">4<' in html and 'id="count-failed">2<' in html
            assert "Escalation L2: Acme Logistics" in html and "is_archived" in html
            # What is configured: everything in the test is on.
            assert re.search(r"<td>escalations</td>.*?<td>on</td>", html, re.S)
            only = await http.get("/console/deliveries", params={"status": "failed", "kind": "chat"})
            assert only.text.count('data-delivery="') == 2
            bad = await http.get("/console/deliveries", params={"kind": "<script>"})
            assert bad.status_code == 422 and "<script>" not in bad.text
            one = await http.get(f"/console/deliveries/{failed}")
            assert one.status_code == 200 and 'id="replay"' in one.text and "Slack chat.postMessage: is_archived" in one.text
            assert "C0ACMESHRD" in one.text and "/workflows/delivery-" in one.text
            csrf = re.search(r'name="csrf_token" value="([^"]+)"', one.text).group(1)
            forged = await http.post(f"/console/deliveries/{failed}/replay", data={"csrf_token": "forged"})
            assert forged.status_code == 403
            assert await pool.fetchval("SELECT status FROM deliveries WHERE id = $1", failed) == "failed"
            slack.archived.clear()
            replayed = await http.post(f"/console/deliveries/{failed}/replay", data={"csrf_token": csrf})
            assert replayed.status_code == 303
            again = await settled(pool, "the replayed delivery", id=failed)
            assert again[0]["status"] == "delivered"
            after = await http.get(f"/console/deliveries/{failed}")
            assert "being delivered again" in after.text and 'id="replay"' not in after.text
            twice = await http.post(f"/console/deliveries/{failed}/replay", data={"csrf_token": csrf})
            shown = await http.get(twice.headers["location"])
            assert "only a failed delivery is replayed" in shown.text
            missing = await http.get("/console/deliveries/999999")
            assert missing.status_code == 404
            outbox = await http.get("/console/outbox")
            assert 'id="deliveries-link"' in outbox.text


async def test_the_cli_lists_shows_checks_and_replays(env, pool, settings, servers, db_url, tmp_path):
    slack = servers["slack"]
    slack.archived.add(ACME)
    s = notify_settings(settings, servers)
    async with Running(env, pool, s):
        await p0_ticket(env, pool, s)
        await settled(pool, "the P0 ticket's messages", 6, kind="chat")
    failed = await pool.fetchval("SELECT min(id) FROM deliveries WHERE status = 'failed'")
    environment = {**os.environ, "DATABASE_URL": db_url, "DATA_DIR": str(tmp_path), "COLUMNS": "220",
                   "SLACK_BOT_TOKEN": "xoxb-anything", "TASK_QUEUE": s.task_queue,
                   "TEMPORAL_ADDRESS": env.client.service_client.config.target_host}

    async def cli(*args):
        proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "starter", "deliveries", *args,
                                                    env=environment, cwd=PROJECT_ROOT,
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate()
        return proc.returncode, out.decode(), err.decode()

    code, out, err = await cli("list", "--status", "failed")
    assert code == 0, err
    assert "is_archived" in out and "failed 2" in out and "delivered 4" in out
    code, out, _ = await cli("show", str(failed))
    assert code == 0 and "Slack chat.postMessage: is_archived" in out and "C0ACMESHRD" in out
    code, out, _ = await cli("check")
    assert code == 0 and re.search(r"critical-alerts.*\bon\b", out) and "off: CHAT_WEBHOOK_URLS has no" in out
    code, _, err = await cli("list", "--kind", "sms")
    assert code == 1 and "unknown kind 'sms'" in err and "Traceback" not in err
    code, _, err = await cli("replay", "999999", "--by", "test")
    assert code == 1 and "no delivery 999999" in err
