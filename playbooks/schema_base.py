"""The common schema of playbook content: what every playbook file has, and its e-mails.

The content is what a CS manager may change without a code change: day
offsets, task lists, e-mail templates, thresholds. The workflow code holds
the control flow and receives a validated, frozen snapshot of this content
in its input, so editing a file never changes a run in flight. One module
per playbook holds its own schema (schema_onboarding, schema_renewal,
schema_sla, schema_churn, schema_nps); playbooks/schema.py gathers them.

Content is validated against an organisation profile when the loader gives
one as validation context ({"profile": ProfileContent}): `context_profile`.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from datetime import timedelta

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, field_validator, model_validator

from core.models import EmailCategory, EmailTemplate, MeetingSpec, Role, context_profile  # noqa: F401 (re-exported)
from core.working_time import WEEKDAY_INDEX, SendWindow

Slug = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,62}$")]
Weekday = Literal["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
WEEKDAYS: tuple[str, ...] = Weekday.__args__  # type: ignore[attr-defined]


class Content(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Span(Content):
    """An amount of a time unit, as an SLA target or an update cadence gives it: `minutes` and
    `hours` run 24/7; `business_hours` and `business_days` count the support region's opening hours
    (one business day = the region's business-day hours). Subclasses narrow `unit` and bound `amount`."""

    amount: float = Field(gt=0)
    unit: str

    @property
    def business(self) -> bool:
        return self.unit.startswith("business_")

    def duration(self, business_day_hours: float) -> timedelta:
        """The span as a duration of its own clock (24/7 or business time)."""
        hours = {"minutes": 1 / 60, "hours": 1, "business_hours": 1, "business_days": business_day_hours}[self.unit]
        return timedelta(hours=self.amount * hours)

    def __str__(self) -> str:
        amount = int(self.amount) if self.amount == int(self.amount) else self.amount
        return f"{amount} {self.unit.replace('_', ' ')}"


CUSTOMER_ROLES = frozenset({"sponsor", "contacts"})


class WindowContent(Content):
    """When customer e-mail may go out, in the account's local time (see core/working_time.py)."""

    days: list[Weekday] | None = Field(None, min_length=1, description="default: the account's working days")
    opens: str = Field("09:00", description="HH:MM local")
    closes: str = Field("17:00", description="HH:MM local; not after `opens`: the window runs past midnight")
    on_holidays: bool = Field(False, description="also on the account's public holidays")

    @model_validator(mode="after")
    def _valid(self) -> "WindowContent":
        self.window()  # raises ValueError with the reason
        return self

    def window(self) -> SendWindow:
        days = None if self.days is None else tuple(WEEKDAY_INDEX[d] for d in self.days)
        return SendWindow(days=days, opens=self.opens, closes=self.closes, on_holidays=self.on_holidays)


class TemplateContent(Content):
    template: str = Field(description="file under playbooks/templates/")
    subject: str = Field(min_length=1, description="Jinja2, rendered as plain text")
    category: EmailCategory | None = Field(
        None, description="transactional, lifecycle or survey (default: the playbook's email_category); "
                          "e-mail to our staff only is internal whatever this says")
    send_window: WindowContent | None = Field(None, description="default: the playbook's send_window")
    meeting: MeetingSpec | None = Field(None, description="the e-mail proposes a meeting: an iCalendar invitation")
    stop_on_reply: bool = Field(False, description="a reply to this e-mail stops its follow-ups")
    reach_another_way: bool = Field(
        False, description="a customer in To it cannot reach (unsubscribed, bounced) gets the CSM a task")


class FollowUpEmail(TemplateContent):
    """A reminder sent `after_working_days` of the account after the e-mail it follows, to the same
    people, unless someone replied (`stop_on_reply` holds for every follow-up)."""

    after_working_days: PositiveInt


class EmailContent(TemplateContent):
    to: list[Role] = Field(min_length=1)
    cc: list[Role] = []
    follow_ups: list[FollowUpEmail] = Field([], description="reminders, in date order (renewal step e-mails)")

    @property
    def customer_facing(self) -> bool:
        return bool(CUSTOMER_ROLES & {*self.to, *self.cc})

    @model_validator(mode="after")
    def _class_fits_recipients(self) -> "EmailContent":
        if self.category == "internal" and self.customer_facing:
            raise ValueError("category: an e-mail to the sponsor or contacts cannot be internal")
        days = [f.after_working_days for f in self.follow_ups]
        if days != sorted(set(days)):
            raise ValueError("follow_ups: must be in rising order of after_working_days, each once")
        if self.follow_ups and not self.customer_facing:
            raise ValueError("follow_ups: only e-mails to the sponsor or contacts have follow-ups")
        return self


class PlaybookContent(Content):
    """What every playbook file has."""

    name: str
    version: PositiveInt
    timezone: str = Field("America/New_York", description="our team's time zone for this playbook")
    work_start_hour: int = Field(9, ge=0, le=23, description="steps of a day fire at this local hour")
    due_hour: int = Field(18, ge=1, le=23, description="tasks of a day are due at this local hour")
    escalation: TemplateContent = Field(description="the report e-mailed to whoever a step escalates to")
    # Our staff's calendar: internal tasks and escalations fall on its working days.
    team_country: str = Field("US", pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2: our team's public holidays")
    team_region: str | None = Field(None, pattern=r"^[A-Z0-9]{1,3}$", description="ISO 3166-2 subdivision")
    email_category: EmailCategory = Field("lifecycle", description="the class of this playbook's customer e-mails")
    dates_on_days_off: Literal["next_working_day", "keep"] = Field(
        "next_working_day", description="a step, due date or meeting that falls on a weekend or public holiday "
                                        "moves to the next working day, unless this says keep")
    send_window: WindowContent = Field(WindowContent(), description="customer e-mail: when, in the account's time")
    # Templates without recipients in the file that are nonetheless for customers (NPS surveys).
    CUSTOMER_TEMPLATES: ClassVar[tuple[str, ...]] = ()

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v: str) -> str:
        return known_zone(v)

    def email_contents(self) -> list[tuple[str, tuple, TemplateContent]]:
        """(snapshot key, location in the file, content) of every e-mail this playbook can send."""
        return [("escalation", ("escalation",), self.escalation)]

    def email_class(self, key: str, email: TemplateContent) -> str:
        """The class an e-mail is sent as: internal when only our staff get it, else its own or the
        playbook's (see core.models.EmailCategory). A follow-up goes as the e-mail it follows."""
        if isinstance(email, FollowUpEmail):
            parent_key, parent = self._followed(key)
            return email.category or self.email_class(parent_key, parent)
        if isinstance(email, EmailContent):
            customers = email.customer_facing
        else:
            customers = key in self.CUSTOMER_TEMPLATES or key.endswith("/respondent")
        if not customers:
            return "internal"
        return email.category or self.email_category

    def _followed(self, key: str) -> tuple[str, TemplateContent]:
        parent_key = key.rsplit("/follow-up/", 1)[0]
        return parent_key, next(c for k, _, c in self.email_contents() if k == parent_key)

    def email_template(self, key: str, email: TemplateContent, body: str, partials: dict[str, str]) -> EmailTemplate:
        """The snapshot of one e-mail: its sources and the rules its content gives it."""
        category = self.email_class(key, email)
        own = email.send_window or (self._followed(key)[1].send_window if isinstance(email, FollowUpEmail) else None)
        window = (own or self.send_window).window() if category in ("lifecycle", "survey") else None
        return EmailTemplate(name=email.template, subject=email.subject, body=body, partials=partials,
                             category=category, window=window, meeting=email.meeting,
                             stop_on_reply=email.stop_on_reply or isinstance(email, FollowUpEmail),
                             reach_another_way=email.reach_another_way)


def _unique(what: str, values: dict[str, str]) -> None:
    """`values` maps each value's path in the file to the value."""
    seen: set[str] = set()
    for path, v in values.items():
        if v in seen:
            raise ValueError(f"{path}: {what} {v!r} appears twice")
        seen.add(v)


class PlaybookSnapshot(Content):
    """Validated content plus the template sources it uses, as of launch time."""

    source: str
    digest: str
    templates: dict[str, EmailTemplate]

    def template(self, name: str) -> EmailTemplate:
        return self.templates[name]


SHARED_SNAPSHOTS = 64  # distinct stored versions a worker holds shared at a time
_SHARED: dict[tuple, "PlaybookSnapshot"] = {}


def shared_snapshot(value, handler):
    """A wrap validator for a play input's `playbook` field: cached plays of one stored playbook
    version share one snapshot object (issue 18: worker memory per cached play). Only a light
    snapshot read from a payload is shared (every template a reference to the stored version,
    `stored_as`): the reference names an immutable version, so equal references mean equal
    snapshots. Snapshots are frozen; nothing changes a shared one."""
    ref = _stored_reference(value)
    if ref is None:
        return handler(value)
    shared = _SHARED.get(ref)
    if shared is None:
        shared = handler(value)
        if len(_SHARED) >= SHARED_SNAPSHOTS:
            _SHARED.clear()
        _SHARED[ref] = shared
    return shared


def _stored_reference(data: object) -> tuple | None:
    """(version key, digest, source, playbook kind) of a light snapshot's input data, or None."""
    if not isinstance(data, dict) or not isinstance(data.get("templates"), dict) or not data["templates"]:
        return None
    keys = set()
    for template in data["templates"].values():
        ref = template.get("stored_as") if isinstance(template, dict) else None
        if not isinstance(ref, str):
            return None
        keys.add(ref.partition("#")[0])
    if len(keys) != 1:
        return None
    content = data.get("content")
    kind = content.get("playbook") if isinstance(content, dict) else None
    return keys.pop(), str(data.get("digest")), str(data.get("source")), str(kind)


# Playbook kind -> its content and snapshot models (each playbook's schema module adds its own).
PLAYBOOK_MODELS: dict[str, type[PlaybookContent]] = {}
SNAPSHOT_MODELS: dict[str, type[PlaybookSnapshot]] = {}


def known_zone(v: str) -> str:
    """`v` if it is an IANA time zone; ValueError "unknown time zone" otherwise (also for a folder of
    the zone database such as "America", or a name too long for a file)."""
    try:
        ZoneInfo(v)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(f"unknown time zone {v[:80]!r}") from None
    return v
