"""What an import run did, or in a dry run would do: counts per kind of record and action, the
first refused rows, warnings and changed records (`file:row`, column, reason), how many more.

Bounded whatever the length of the files: only counts grow; the lists keep their first `keep`
items, and warnings are also counted by kind (column and reason, up to 100 kinds).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Generic, TypeVar

from starter.book.records import Problem
from starter.book.store import Outcome

KEEP = 200
MAX_WARNING_KINDS = 100
T = TypeVar("T")


@dataclass
class Counts:
    """Records (rows, and for a contact of two companies one per account) per action."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0
    refused: int = 0

    def add(self, action: str) -> None:
        setattr(self, action, getattr(self, action) + 1)

    @property
    def total(self) -> int:
        return self.created + self.updated + self.unchanged + self.refused


@dataclass
class Firsts(Generic[T]):
    """The first `keep` items of a kind, and how many more there were."""

    keep: int = KEEP
    items: list = field(default_factory=list)
    more: int = 0

    def add(self, item: T) -> None:
        if len(self.items) < self.keep:
            self.items.append(item)
        else:
            self.more += 1

    @property
    def total(self) -> int:
        return len(self.items) + self.more


@dataclass
class Change:
    """An updated record: which of our fields changed."""

    kind: str  # accounts, contacts
    where: str
    account_id: str
    fields: list[str]


@dataclass
class ImportReport:
    """What an import run did (or, in a dry run, would do)."""

    dialect: str
    source: str  # accounts.source of what it creates: hubspot, salesforce, csv:<mapping>, demo
    connection: str  # the key of the CRM ids (crm_links.connection)
    apply: bool
    files: list[str]
    counts: dict[str, Counts] = field(default_factory=lambda: {"accounts": Counts(), "contacts": Counts()})
    sponsors: int = 0
    refused: Firsts[Problem] = field(default_factory=Firsts)
    warnings: Firsts[Problem] = field(default_factory=Firsts)
    warning_kinds: Counter = field(default_factory=Counter)
    changes: Firsts[Change] = field(default_factory=Firsts)
    rows: int = 0
    seconds: float = 0.0
    run_id: int | None = None

    def total(self, action: str) -> int:
        return sum(getattr(c, action) for c in self.counts.values())

    def to_json(self) -> dict:
        """A JSON-able form (import_runs.report, the console's stored dry run)."""
        data = asdict(self)
        data["warning_kinds"] = [[column, reason, n] for (column, reason), n in self.warning_kinds.most_common()]
        return data

    @classmethod
    def from_json(cls, data: dict) -> "ImportReport":
        def firsts(raw: dict, make) -> Firsts:
            return Firsts(keep=raw["keep"], items=[make(**i) for i in raw["items"]], more=raw["more"])

        return cls(
            dialect=data["dialect"], source=data["source"], connection=data["connection"], apply=data["apply"],
            files=list(data["files"]), counts={k: Counts(**v) for k, v in data["counts"].items()},
            sponsors=data["sponsors"], refused=firsts(data["refused"], Problem),
            warnings=firsts(data["warnings"], Problem),
            warning_kinds=Counter({(c, r): n for c, r, n in data["warning_kinds"]}),
            changes=firsts(data["changes"], Change), rows=data["rows"], seconds=data["seconds"],
            run_id=data["run_id"],
        )

    def summary(self) -> str:
        """One line: what happened, for logs and the console's message."""
        verb = "" if self.apply else "would be "
        parts = []
        for kind, c in self.counts.items():
            if c.total:
                parts.append(f"{kind}: {c.created} {verb}created, {c.updated} {verb}updated, {c.unchanged} unchanged, "
                             f"{c.refused} refused")
        if self.sponsors:
            parts.append(f"sponsors named: {self.sponsors}")
        return "; ".join(parts) or "nothing to import"


class Tally:
    """Adds outcomes and refusals to a report as they come: counts, and the first few of each kind."""

    def __init__(self, report: ImportReport):
        self.report = report

    def warning(self, problem: Problem) -> None:
        self.report.warnings.add(problem)
        key = (problem.column, problem.reason)
        kinds = self.report.warning_kinds
        if key in kinds or len(kinds) < MAX_WARNING_KINDS:
            kinds[key] += 1
        else:
            kinds[("", "(other warnings)")] += 1

    def refused(self, kind: str, problem: Problem) -> None:
        self.report.counts[kind].add("refused")
        self.report.refused.add(problem)

    def outcomes(self, kind: str, outcomes: list[Outcome]) -> None:
        seen: set[tuple[str, str, str]] = set()  # a contact of two companies: its warnings once
        for o in outcomes:
            if o.action == "refused":
                self.refused(kind, o.reason or Problem(o.where, "", "refused"))
            else:
                self.report.counts[kind].add(o.action)
            for w in o.warnings:
                key = (w.where, w.column, w.reason)
                if key not in seen:
                    seen.add(key)
                    self.warning(w)
            if o.action == "updated" and o.changes and o.account_id:
                self.report.changes.add(Change(kind, o.where, o.account_id, list(o.changes)))
