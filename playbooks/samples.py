"""Sample render context, used to check every template when a playbook loads.

A template that names a variable the plays do not provide fails here, at
load time with its file and line, instead of in a customer's inbox weeks
into a play. Keep these keys in step with what the workflows pass as `data`.
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal

from core.models import Account, Contact, EscalationReport, Person, StaffMember

SAMPLE_ACCOUNT = Account(
    id="sample",
    name="Sample Corp",
    arr=Decimal(120_000),
    renewal_date=date(2027, 6, 30),
    vertical="Logistics",
    csm=Person(name="Casey Manager", email="casey@tai.example"),
    sponsor=Person(name="Sam Sponsor", email="sam@sample.example"),
    contacts=[Contact(name="Terry Tech", email="terry@sample.example", role="technical_lead")],
)

SAMPLE_STAFF = {
    role: StaffMember(role=role, name=f"Sample {role}", email=f"{role}@tai.example")
    for role in ("support_team", "cs_manager", "vp_customer_success", "vp_engineering", "vp_product", "ceo")
}


def sample_staff(profile=None) -> dict[str, StaffMember]:
    """SAMPLE_STAFF and a sample person for each staff role `profile` (a ProfileContent) declares."""
    if profile is None:
        return dict(SAMPLE_STAFF)
    domain = f"{profile.name.replace('_', '-')}.example"
    extra = {role: StaffMember(role=role, name=f"Sample {title}"[:200], email=f"{role}@{domain}")
             for role, title in profile.staff_roles.items() if role not in SAMPLE_STAFF}
    return {**SAMPLE_STAFF, **extra}


_T = datetime(2027, 1, 4, 14, tzinfo=timezone.utc)
_TASK = {"title": "Project charter signed", "due": _T, "owner": "csm", "priority": "P1", "milestone": "kickoff"}

ONBOARDING_DATA = {
    "day": 8,
    "week": 2,
    "phase": "Technical Setup & Configuration",
    "started_on": _T.date(),
    "go_live_day": 25,
    "go_live_date": date(2027, 1, 28),
    "original_go_live_date": date(2027, 1, 28),
    "slip_days": 0,
    "health_status": "GREEN",
    "completion_pct": 40,
    "completed_tasks": [_TASK],
    "completed_this_week": [_TASK],
    "open_tasks": [_TASK],
    "overdue_tasks": [_TASK],
    "next_milestones": [{"name": "Go-live", "key": "go_live", "date": date(2027, 1, 28), "day": 25}],
    "blockers": [{"key": "sso", "title": "SSO metadata missing", "opened_at": _T, "open_days": 3}],
    "blocker": {"key": "sso", "title": "SSO metadata missing", "opened_at": _T, "open_days": 3},
    "health_check_day": 1,
    "live_since": date(2027, 1, 28),
}

SAMPLE_REPORT = EscalationReport(
    title="Implementation slipped 3 days",
    severity="P1",
    business_impact="Go-live at risk",
    reported_at=_T,
    why=["SLA at risk"],
    needs=["Timeline extension approval"],
    success_criteria=["Customer timeline adjusted with acceptance"],
    tried=["Daily stand-ups"],
    next_steps=["Call the sponsor"],
)

RENEWAL_DATA = {
    "renewal_date": date(2027, 6, 30),
    "original_renewal_date": date(2027, 6, 30),
    "new_renewal_date": date(2028, 6, 30),
    "days_to_renewal": 90,
    "tier": "Enterprise",
    "step": "Renewal preparation and proposal",
    "phase": "proposal",
    "open_tasks": [_TASK],
    "upcoming_steps": [{"key": "value_review", "name": "Value assessment and ROI review", "date": date(2027, 1, 31)}],
    "churn_reason": "Budget cuts",
    "outcome": None,
}

_TICKET = {"id": "T-1001", "subject": "Dashboards do not load", "priority": "P0", "status": "open", "opened_at": _T}

SLA_DATA = {
    "ticket": _TICKET,
    "clock": "resolution",
    "rule": "SLA breached",
    "target": "4 hours",
    "due_at": _T,
    "level": 2,
    "update_number": 3,
    "every_minutes": 30,
    # Ticket communications (sla.yaml `communications`).
    "response_target": "2 business hours",
    "business": True,
    "hours": "Mon-Fri 09:00-18:00 (America/New_York)",
    "response_due_at": _T,
    "update_every": "4 hours",
    "every": "4 hours",
    "confirm_hours": 72,
    "reopen_days": 7,
    "percent": 75,
    "links": [(n, f"http://127.0.0.1:8000/csat/sample-token?score={n}") for n in range(1, 6)],
    "expires_at": _T,
    "month": "2027-01",
    "rows": [{"tier": "Enterprise", "priority": "P0", "tickets": 2, "response_met": 1, "response_pct": 50.0,
              "resolution_met": 2, "resolution_pct": 100.0, "open": 0, "credits": Decimal("625.00")}],
    "totals": {"tickets": 2, "response_pct": 50.0, "resolution_pct": 100.0, "credits": Decimal("625.00")},
}

CHURN_DATA = {
    "band": "ORANGE",
    "previous_band": "YELLOW",
    "score": 45,
    "play": "Escalated intervention",
    "indicators": [{"key": "nps_below_30", "label": "NPS score < 30", "points": 20}],
    "actions": [{"title": "VP-level call", "owner": "vp_product", "due": _T}],
    "month": "2027-01",
    "counts": {"GREEN": 10, "YELLOW": 3, "ORANGE": 1, "RED": 1},
    "arr": {"GREEN": Decimal(1_000_000), "YELLOW": Decimal(300_000), "ORANGE": Decimal(150_000), "RED": Decimal(90_000)},
    "moves": [{"account": "Sample Corp", "from_band": "YELLOW", "to_band": "ORANGE", "at": _T}],
    "rescued": ["Other Corp"],
    "lost": [],
}

_NPS_ROW = {"name": "Enterprise", "nps": 40, "responses": 10, "response_rate": 33.3}
NPS_DATA = {
    "link": "http://127.0.0.1:8000/nps/sample-token",
    "expires_at": _T,
    "score": 6,
    "comment": "Too slow",
    "cycle": "2027-Q1",
    "respondent": {"name": "Terry Tech", "email": "terry@sample.example"},
    "overall": {"nps": 40, "promoters": 6, "passives": 2, "detractors": 2, "responses": 10, "invited": 30,
                "response_rate": 33.3},
    "groups": [{"by": "tier", "rows": [_NPS_ROW]}],
}

_ESCALATION = {"level": 1, "to": SAMPLE_STAFF["cs_manager"], "report": SAMPLE_REPORT}

SAMPLE_DATA: dict[str, dict] = {
    "onboarding": {**ONBOARDING_DATA, "escalation": _ESCALATION},
    "renewal": {**RENEWAL_DATA, "escalation": _ESCALATION},
    "sla": {**SLA_DATA, "escalation": _ESCALATION},
    "churn": {**CHURN_DATA, "escalation": _ESCALATION},
    "nps": {**NPS_DATA, "escalation": _ESCALATION},
}
