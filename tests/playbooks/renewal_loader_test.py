"""The renewal playbook file: what it ships, and how each kind of mistake in it is reported."""

from __future__ import annotations

import pytest

from playbooks.loader import load_named
from playbooks.profiles import default_profile
from tests.playbooks.loader_test import edit_yaml, line_of, load_error

SEED_DAYS = [180, 150, 120, 90, 60, 30, 0]


def test_shipped_renewal_playbook_follows_the_seed_countdown():
    content = load_named("renewal").content
    assert [s.days_before for s in content.countdown] == SEED_DAYS
    assert [s.days_after for s in content.post_renewal] == [0, 14, 30]
    assert (content.final_window.points, content.past_due.points) == (10, 25)
    # Every tier has work at 180, 90, 30 and 0 days, and a post-renewal plan.
    for tier in default_profile().tier_names:
        active = [s.days_before for s in content.countdown if s.tasks_for(tier) or s.emails_for(tier)]
        assert {180, 90, 30, 0} <= set(active), tier
        assert all(s.tasks_for(tier) or s.emails_for(tier) for s in content.post_renewal if s.key != "post_renewal_kickoff")
    executive = content.step("executive_review")
    assert executive.tasks_for("Starter") == []
    assert executive.tasks[0].owner_for("Enterprise") == "vp_customer_success"


# (old text, new text, text on the offending line (or: text, lines below it), field, message)
RENEWAL_CASES = {
    "steps out of order": (
        "    days_before: 120\n", "    days_before: 160\n",
        "days_before: 160", "countdown[2].days_before", "steps must count down, each on its own day (160 after 150)",
    ),
    "negative offset": (
        "    days_before: 60\n", "    days_before: -60\n",
        "days_before: -60", "countdown[4].days_before", "Input should be greater than or equal to 0",
    ),
    "owner missing for a tier": (
        "          Starter: csm\n        priority: P1\n        due_days: 21\n",
        "        priority: P1\n        due_days: 21\n",
        ("      - key: terms", 2), "countdown[4].tasks[0].owner_role", "names no owner for Starter",
    ),
    "task for a tier its step skips": (
        "      - key: expansion_proposal\n", "      - key: expansion_proposal\n        tiers: [Starter]  # here\n",
        "tiers: [Starter]  # here", "countdown[2].tasks[1].tiers",
        "Starter not among the step's tiers (Enterprise, Mid-Market)",
    ),
    "unknown tier": (
        "        tiers: [Starter]\n\n  - key: executive_review",
        "        tiers: [Small]\n\n  - key: executive_review",
        "tiers: [Small]", "countdown[1].emails[1].tiers[0]",
        "'Small' is not a tier of profile tai (Enterprise, Mid-Market, Starter)",
    ),
    "unknown template": (
        "template: renewal/proposal.html.j2", "template: renewal/propsal.html.j2",
        "renewal/propsal.html.j2", "countdown[3].emails[0].template", "no template file 'renewal/propsal.html.j2'",
    ),
    "template with an unknown variable": (
        "subject: \"{{ account.name }}: your renewal is {{ data.days_to_renewal }} days away\"",
        "subject: \"{{ account.name }}: your renewal is {{ data.days_to_renwal }} days away\"",
        "template: renewal/reminder.html.j2", "countdown[4].emails[0].template",
        "renewal/reminder.html.j2 (subject): 'dict object' has no attribute 'days_to_renwal'",
    ),
    "unknown key": (
        "    days_before: 0\n    tasks:\n", "    days_before: 0\n    tasks: []\n    old_tasks:\n",
        "    old_tasks:", "countdown[6].old_tasks", "Extra inputs are not permitted",
    ),
    "past-due escalation level": (
        "      level: 2\n", "      level: 5\n",
        "level: 5", "past_due.escalations[1].level", "Input should be less than or equal to 4",
    ),
}


@pytest.mark.parametrize(("old", "new", "needle", "field", "message"), RENEWAL_CASES.values(), ids=RENEWAL_CASES.keys())
def test_broken_renewal_yaml_names_file_line_and_field(folder, old, new, needle, field, message):
    path = folder / "renewal.yaml"
    text = edit_yaml(folder, old, new, "renewal.yaml")
    error = load_error(path)
    line = line_of(text, needle[0]) + needle[1] if isinstance(needle, tuple) else line_of(text, needle)
    assert (str(path), line, field, message) in error.problems, error.problems
