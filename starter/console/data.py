"""What the console pages show, read from PostgreSQL and from the plays themselves.

Plays are found through Temporal visibility (the search attributes every play
sets) and read through their `status` query, which every playbook workflow
answers. The query is asked untyped, so one page can show every playbook:
each status is a dict, and `timeline` turns the shapes the playbooks use
(a schedule, SLA clocks, band changes, done steps) into one list of rows.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from urllib.parse import quote

import asyncpg
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError

from core.logs import get_logger
from core.models import tier_of
from core.settings import Settings
from starter.book.merges import merged_ids

log = get_logger("console")

BANDS = ("GREEN", "YELLOW", "ORANGE", "RED")
QUERY_SECONDS = 5.0  # a play whose worker is down must not hang the page
OPEN_TASK = "status NOT IN ('completed', 'cancelled')"


@dataclass
class PlaySummary:
    workflow_id: str
    run_id: str
    playbook: str
    account_id: str
    phase: str
    status: str  # running, completed, canceled, failed, terminated, timed_out, continued_as_new
    started: datetime
    next_action_at: datetime | None = None
    # Filled for the account page:
    state: dict | None = None
    state_error: str = ""
    timeline: list[dict] = field(default_factory=list)
    skippable: dict[str, str] = field(default_factory=dict)

    @property
    def running(self) -> bool:
        return self.status == "running"

    @property
    def paused(self) -> bool:
        return bool(self.state and (self.state.get("control") or {}).get("paused_at"))


def temporal_ui_link(settings: Settings, play: PlaySummary) -> str:
    base = settings.temporal_ui_url.rstrip("/")
    return (f"{base}/namespaces/{quote(settings.temporal_namespace, safe='')}/workflows/"
            f"{quote(play.workflow_id, safe='')}/{quote(play.run_id, safe='')}/history")


def _visibility_string(value: str) -> str:
    # Visibility queries take SQL-like string literals; account ids are [a-z0-9_-] anyway.
    return json.dumps(value)


async def find_plays(client: Client, query: str, limit: int = 2000) -> list[PlaySummary]:
    plays = []
    async for w in client.list_workflows(query, limit=limit):
        attrs = {p.key.name: p.value for p in w.typed_search_attributes}
        plays.append(PlaySummary(
            workflow_id=w.id, run_id=w.run_id, playbook=attrs.get("Playbook", ""),
            account_id=attrs.get("AccountId", ""), phase=attrs.get("Phase", ""),
            status=(w.status or WorkflowExecutionStatus.RUNNING).name.lower(), started=w.start_time,
            next_action_at=attrs.get("NextActionAt"),
        ))
    return plays


# -- portfolio ------------------------------------------------------------------------
async def portfolio(pool: asyncpg.Pool, client: Client, csm: str | None, tier: str | None,
                    band: str | None) -> dict:
    rows = await pool.fetch(
        "SELECT a.id, a.name, a.status, a.health, a.arr, a.usd_rate, a.crm_tier, a.csm_name, a.csm_email, a.renewal_date,"
        " coalesce(r.band, 'GREEN') AS band, r.score FROM accounts a"
        " LEFT JOIN account_risk r ON r.account_id = a.id ORDER BY a.name, a.id"
    )
    accounts = [{**dict(r), "tier": tier_of(r)} for r in rows]
    csms = sorted({(a["csm_email"], a["csm_name"]) for a in accounts})
    counts = {b: sum(a["band"] == b for a in accounts) for b in BANDS}
    shown = [a for a in accounts if (not csm or a["csm_email"] == csm) and (not tier or a["tier"] == tier)
             and (not band or a["band"] == band)]
    plays_error = ""
    by_account: dict[str, list[PlaySummary]] = {}
    try:
        for p in await find_plays(client, "ExecutionStatus = 'Running'"):
            by_account.setdefault(p.account_id, []).append(p)
    except RPCError as exc:
        log.warning("console.visibility_unavailable", error=str(exc))
        plays_error = "running plays are not available right now (Temporal did not answer)"
    for a in shown:
        plays = sorted(by_account.get(a["id"], []), key=lambda p: p.playbook)
        a["plays"] = plays
        due = [p for p in plays if p.next_action_at]
        a["next"] = min(due, key=lambda p: p.next_action_at) if due else None
    return {"accounts": shown, "counts": counts, "total": len(accounts), "csms": csms,
            "plays_error": plays_error}


# -- one account ------------------------------------------------------------------------
async def account_page(pool: asyncpg.Pool, client: Client, account_id: str) -> dict | None:
    account = await pool.fetchrow(
        "SELECT a.*, coalesce(r.band, 'GREEN') AS band, r.score, r.indicators FROM accounts a"
        " LEFT JOIN account_risk r ON r.account_id = a.id WHERE a.id = $1", account_id,
    )
    if account is None:
        return None
    # A CRM merge moved other accounts into this one: their plays, tasks and e-mails show here too.
    ids = [account_id, *await merged_ids(pool, account_id)]
    plays_error = ""
    try:
        plays = await find_plays(client, " OR ".join(f"AccountId = {_visibility_string(i)}" for i in ids), limit=200)
    except RPCError as exc:
        log.warning("console.visibility_unavailable", error=str(exc))
        plays, plays_error = [], "plays are not available right now (Temporal did not answer)"
    # Continue-as-new leaves one closed run per hop: show the newest run of each play.
    newest: dict[str, PlaySummary] = {}
    for p in sorted(plays, key=lambda p: p.started):
        newest[p.workflow_id] = p
    plays = sorted(newest.values(), key=lambda p: (not p.running, p.playbook, p.workflow_id))
    await asyncio.gather(*(_read_play(client, p) for p in plays))
    tasks = await pool.fetch(
        "SELECT id, workflow_id, step, title, owner_role, owner_email, due_at, priority, status, completed_at,"
        " completed_by FROM tasks WHERE account_id = ANY($1::text[])"
        " ORDER BY (status IN ('completed', 'cancelled')), due_at, id", ids,
    )
    emails = await pool.fetch(
        "SELECT id, workflow_id, step, to_addrs, subject, status, created_at, sent_at FROM communications"
        " WHERE account_id = ANY($1::text[]) ORDER BY id DESC LIMIT 200", ids,
    )
    escalations = await pool.fetch(
        "SELECT workflow_id, level, to_role, to_email, severity, title, reason, created_at FROM escalations"
        " WHERE account_id = ANY($1::text[]) ORDER BY created_at DESC, id DESC", ids,
    )
    crm_ids = await pool.fetch("SELECT connection, object_type, crm_id FROM crm_links WHERE account_id = $1"
                               " ORDER BY connection, object_type, crm_id", account_id)
    from starter.console.mail import account_mail

    return {"account": dict(account), "tier": tier_of(account), "plays": plays, "crm_ids": crm_ids,
            "plays_error": plays_error, "tasks": tasks, "emails": emails, "escalations": escalations,
            "mail": await account_mail(pool, account_id)}


async def _read_play(client: Client, play: PlaySummary) -> None:
    handle = client.get_workflow_handle(play.workflow_id, run_id=play.run_id)
    try:
        play.state = await asyncio.wait_for(handle.query("status"), QUERY_SECONDS)
        play.timeline = timeline(play.state)
        if play.running:
            play.skippable = await asyncio.wait_for(handle.query("skippable_steps"), QUERY_SECONDS) or {}
    except Exception as exc:  # a timeout, an RPC error, a bad state: one unreadable play must not hide the others
        log.warning("console.play_unreadable", workflow_id=play.workflow_id, error=f"{type(exc).__name__}: {exc}")
        play.state_error = "this play's details are not available right now"


def _when(value) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


def timeline(st: dict) -> list[dict]:
    """Done, current and next steps of any playbook's status, oldest first; undated rows last."""
    rows: list[dict] = []
    for e in st.get("schedule") or []:
        rows.append({"at": _when(e.get("at")), "what": e.get("title") or e.get("step"), "step": e.get("step", ""),
                     "status": e.get("status", ""), "note": e.get("note", "")})
    for c in st.get("clocks") or []:  # SLA
        state = "met" if c.get("met") else "missed" if c.get("met") is False else (
            "running" if c.get("running") else "stopped")
        rows.append({"at": _when(c.get("due_at")), "what": f"{c.get('clock')} clock, target {c.get('target')}",
                     "step": f"clock/{c.get('clock')}", "status": state, "note": ""})
    for e in st.get("escalations") or []:
        if isinstance(e, dict):  # SLA escalations; onboarding lists step names
            rows.append({"at": _when(e.get("at")), "what": f"escalated to L{e.get('level')} {e.get('to_role')}",
                         "step": e.get("rule", ""), "status": "done", "note": e.get("rule", "")})
    for b in st.get("band_changes") or []:  # churn
        rows.append({"at": _when(b.get("at")), "what": f"risk band {b.get('from_band')} to {b.get('to_band')}",
                     "step": "band", "status": "done", "note": f"score {b.get('score')}"})
    if not st.get("schedule"):
        listed = {r["step"] for r in rows}
        rows += [{"at": None, "what": s, "step": s, "status": "done", "note": ""}
                 for s in st.get("done_steps") or [] if s not in listed]
        if st.get("next_action"):
            rows.append({"at": _when(st.get("next_action_at")), "what": st["next_action"], "step": "",
                         "status": "next", "note": ""})
    for step, why in (st.get("failed_steps") or {}).items():
        rows.append({"at": None, "what": step, "step": step, "status": "failed", "note": why})
    far = datetime.max.replace(tzinfo=timezone.utc)
    return sorted(rows, key=lambda r: r["at"] or far)


# -- tasks ------------------------------------------------------------------------------
async def people(pool: asyncpg.Pool) -> list[tuple[str, str]]:
    """Everyone a task can belong to: (e-mail, name)."""
    rows = await pool.fetch(
        "SELECT email, name FROM staff UNION SELECT csm_email, csm_name FROM accounts"
        " UNION SELECT email, name FROM console_users ORDER BY 2, 1"
    )
    seen: dict[str, str] = {}
    for r in rows:
        seen.setdefault(r["email"], r["name"])
    return sorted(seen.items(), key=lambda p: (p[1], p[0]))


async def tasks_for(pool: asyncpg.Pool, owner: str, horizon_days: int = 14) -> dict:
    """A person's open tasks: overdue, and due within `horizon_days`; their own or their role's."""
    now = datetime.now(timezone.utc)
    rows = await pool.fetch(
        "SELECT t.id, t.workflow_id, t.step, t.title, t.detail, t.account_id, a.name AS account_name, t.owner_role,"
        " t.owner_email, t.due_at, t.priority, t.status FROM tasks t JOIN accounts a ON a.id = t.account_id"
        f" WHERE t.{OPEN_TASK} AND t.due_at < $2 AND (t.owner_email = $1 OR"
        " (t.owner_email IS NULL AND t.owner_role IN (SELECT role FROM staff WHERE email = $1)))"
        " ORDER BY t.due_at, t.priority, t.id",
        owner, now + timedelta(days=horizon_days),
    )
    return {"overdue": [r for r in rows if r["due_at"] < now], "due": [r for r in rows if r["due_at"] >= now],
            "horizon_days": horizon_days}


# -- outbox -----------------------------------------------------------------------------
async def outbox(pool: asyncpg.Pool, q: str, page: int, per_page: int = 50) -> dict:
    like = f"%{q.strip()}%" if q.strip() else None
    rows = await pool.fetch(
        "SELECT c.id, c.workflow_id, c.step, c.account_id, c.to_addrs, c.subject, c.status, c.created_at,"
        " c.sent_at FROM communications c WHERE $1::text IS NULL OR c.subject ILIKE $1 OR c.account_id ILIKE $1"
        " OR c.workflow_id ILIKE $1 OR c.step ILIKE $1 OR array_to_string(c.to_addrs, ' ') ILIKE $1"
        " ORDER BY c.id DESC LIMIT $2 OFFSET $3",
        like, per_page + 1, (page - 1) * per_page,
    )
    return {"rows": rows[:per_page], "more": len(rows) > per_page, "page": page, "q": q}


async def message(pool: asyncpg.Pool, message_id: int) -> asyncpg.Record | None:
    return await pool.fetchrow("SELECT * FROM communications WHERE id = $1", message_id)


# -- reports ----------------------------------------------------------------------------
async def nps_cycles(pool: asyncpg.Pool) -> list[str]:
    return [r["cycle_id"] for r in await pool.fetch(
        "SELECT cycle_id, max(sent_at) AS last FROM nps_invitations GROUP BY cycle_id ORDER BY last DESC NULLS LAST")]
