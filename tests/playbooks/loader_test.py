"""Loading playbook files (`playbooks/loader.py`) and rendering their e-mails (`playbooks/rendering.py`).

Each broken-file case copies the shipped `playbooks/` folder (the YAML and
its templates) into a temporary folder, breaks it in exactly one way and
checks that `PlaybookError` names the file, the line of the offending YAML
key (found by searching the text the test wrote) and the field path in
bracket form (`emails[0].template`), and formats as `file:line: field:
message`. Cross-field rules point at the key they are about; a broken
template is reported on the `template:` line of the e-mail using it, with the
template's own line in the message. Also: the shipped folder loads and
validates clean, template partials go into the snapshot, and rendering
escapes HTML, keeps subjects on one line and refuses sandbox escapes.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from core.models import EmailTemplate
from playbooks.loader import PLAYBOOKS_DIR, PlaybookError, load_named, load_playbook, validate_all
from playbooks.rendering import RenderError, email_context, render_email
from playbooks.schema import PLAYBOOK_MODELS
from playbooks.samples import SAMPLE_ACCOUNT, SAMPLE_DATA, SAMPLE_STAFF

EMAIL_KEYS = {"escalation", "blocker_alert", "welcome", "kickoff_summary", "weekly_status",
              "go_live_health_check", "thirty_day_checkin"}
LAYOUT = "common/_layout.html.j2"
WELCOME = "onboarding/welcome.html.j2"
# Every e-mail of onboarding.yaml in file order: (field path, template), all extending LAYOUT.
TEMPLATE_FIELDS = [
    ("escalation.template", "common/escalation_report.html.j2"),
    ("blockers.alert.template", "onboarding/blocker_alert.html.j2"),
    ("emails[0].template", WELCOME),
    ("emails[1].template", "onboarding/kickoff_summary.html.j2"),
    ("emails[2].template", "onboarding/weekly_status.html.j2"),
    ("emails[3].template", "onboarding/health_check.html.j2"),
    ("emails[4].template", "onboarding/thirty_day_checkin.html.j2"),
]


def lines_of(text: str, needle: str) -> list[int]:
    """1-based numbers of the lines of `text` containing `needle`."""
    return [n for n, line in enumerate(text.splitlines(), start=1) if needle in line]


def line_of(text: str, needle: str) -> int:
    """1-based number of the one line of `text` containing `needle`."""
    hits = lines_of(text, needle)
    assert len(hits) == 1, f"{needle!r} is on lines {hits}"
    return hits[0]


def edit_yaml(folder: Path, old: str, new: str, file: str = "onboarding.yaml") -> str:
    path = folder / file
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{old!r} is not unique in {file}"
    text = text.replace(old, new)
    path.write_text(text, encoding="utf-8")
    return text


def load_error(path: Path) -> PlaybookError:
    with pytest.raises(PlaybookError) as info:
        load_playbook(path)
    return info.value


# -- the shipped folder ----------------------------------------------------------------


def test_shipped_onboarding_loads_with_every_template_and_its_layout():
    snapshot = load_named("onboarding")
    assert snapshot.source == "onboarding.yaml"
    assert snapshot.content.playbook == "onboarding"
    assert len(snapshot.digest) == 16 and int(snapshot.digest, 16) >= 0
    assert set(snapshot.templates) == EMAIL_KEYS
    welcome = snapshot.template("welcome")
    assert welcome.name == WELCOME
    assert welcome.body == (PLAYBOOKS_DIR / "templates" / WELCOME).read_text(encoding="utf-8")
    assert welcome.partials == {LAYOUT: (PLAYBOOKS_DIR / "templates" / LAYOUT).read_text(encoding="utf-8")}
    assert all(LAYOUT in t.partials for t in snapshot.templates.values())


def test_validate_all_is_clean_for_the_shipped_folder():
    assert validate_all() == []


def test_copy_loads_like_the_original(folder):
    assert load_playbook(folder / "onboarding.yaml") == load_named("onboarding")
    assert validate_all(folder) == []


def test_digest_follows_template_edits(folder):
    before = load_playbook(folder / "onboarding.yaml").digest
    welcome = folder / "templates" / WELCOME
    welcome.write_text(welcome.read_text(encoding="utf-8") + "{# edited #}\n", encoding="utf-8")
    assert load_playbook(folder / "onboarding.yaml").digest != before


# -- broken YAML ------------------------------------------------------------------------
# (old text, new text, text on the offending line of the new file, field, message)

YAML_CASES = {
    "task day outside its phase": (
        "        day: 9\n", "        day: 16\n",
        # a phase rule, reported at the task's own `day:`
        "        day: 16", "phases[2].tasks[0].day",
        "task 'data_validated' is due on day 16, outside the phase's days 9-14",
    ),
    "phase ending before it starts": (
        "    last_day: 14\n", "    last_day: 7\n",
        "    last_day: 7", "phases[2].last_day", "day 7 is before first_day 9",
    ),
    "gap between phases": (
        "    first_day: 4\n", "    first_day: 5\n",
        "    first_day: 5", "phases[1].first_day",
        "phase 'technical_setup' starts on day 5; phases must follow each other without gaps or overlaps "
        "(expected day 4)",
    ),
    "e-mail keyed like the escalation report": (
        "  - key: welcome\n", "  - key: escalation\n",
        "  - key: escalation", "emails[0].key", "e-mail key 'escalation' appears twice",
    ),
    "playbook milestone no task completes": (
        "kickoff_milestone: kickoff", "kickoff_milestone: kick_off",
        "kickoff_milestone: kick_off", "kickoff_milestone", "names milestone 'kick_off', which no task completes",
    ),
    "weekly e-mail until a milestone no task completes": (
        "until_milestone: steady_state}", "until_milestone: steady}",
        "until_milestone: steady}", "emails[2].trigger.until_milestone",
        "names milestone 'steady', which no task completes",
    ),
    "readiness gate after go-live": (
        "readiness_gate: go_live_readiness", "readiness_gate: steady_state",
        "readiness_gate: steady_state", "readiness_gate",
        "the readiness gate (day 30) must come before go-live (day 25)",
    ),
    "latest go-live before the planned one": (
        "max_go_live_day: 90", "max_go_live_day: 20",
        "max_go_live_day: 20", "max_go_live_day", "day 20 is before go-live day 25",
    ),
    "slip escalations out of order": (
        # a rule about the whole list: reported on the key that names the list
        "  - over_days: 2\n", "  - over_days: 8\n",
        "slip_escalations:", "slip_escalations", "must be in rising order of over_days, each once",
    ),
    "unknown priority": (
        "        priority: P1\n        milestone: kickoff\n", "        priority: P7\n        milestone: kickoff\n",
        "priority: P7", "phases[0].tasks[0].priority", "Input should be 'P0', 'P1', 'P2' or 'P3'",
    ),
    "unknown top-level key": (
        "version: 1\n", "version: 1\nsponsor_colour: teal\n",
        "sponsor_colour: teal", "sponsor_colour", "Extra inputs are not permitted",
    ),
    "unknown task key": (
        "        day: 19\n", "        day: 19\n        colour: red\n",
        "colour: red", "phases[3].tasks[1].colour", "Extra inputs are not permitted",
    ),
    "unknown weekday": (
        "weekday: friday", "weekday: fryday",
        "weekday: fryday", "emails[2].trigger.weekday",
        "Input should be 'monday', 'tuesday', 'wednesday', 'thursday', 'friday', 'saturday' or 'sunday'",
    ),
    "unknown trigger kind": (
        "trigger: {kind: start}", "trigger: {kind: sometime}",
        "kind: sometime", "emails[0].trigger",
        "Input tag 'sometime' found using 'kind' does not match any of the expected tags: "
        "'start', 'after_milestone', 'weekly', 'daily_after_milestone'",
    ),
    "unknown time zone": (
        "timezone: America/New_York", "timezone: Mars/Olympus_Mons",
        "timezone: Mars", "timezone", "unknown time zone 'Mars/Olympus_Mons'",
    ),
    "time zone that is a folder": (
        "timezone: America/New_York", "timezone: America",
        "timezone: America", "timezone", "unknown time zone 'America'",
    ),
    "hour out of range": (
        "work_start_hour: 9\n", "work_start_hour: 25\n",
        "work_start_hour: 25", "work_start_hour", "Input should be less than or equal to 23",
    ),
    "escalation level out of range": (
        "    level: 3\n", "    level: 9\n",
        "level: 9", "slip_escalations[1].level", "Input should be less than or equal to 4",
    ),
    "unknown playbook kind": (
        "playbook: onboarding", "playbook: retention",
        "playbook: retention", "playbook", "must be one of: " + ", ".join(sorted(PLAYBOOK_MODELS)),
    ),
    "template outside templates/": (
        f"template: {WELCOME}", "template: ../loader.py",
        "template: ../loader.py", "emails[0].template", "must be a file under templates/",
    ),
    "YAML syntax error": (
        "name: 30-day onboarding", "name: 30-day: onboarding",
        "name: 30-day: onboarding", "", "YAML syntax: mapping values are not allowed here",
    ),
}


@pytest.mark.parametrize(("old", "new", "needle", "field", "message"), YAML_CASES.values(), ids=YAML_CASES.keys())
def test_broken_yaml_names_file_line_and_field(folder, old, new, needle, field, message):
    path = folder / "onboarding.yaml"
    text = edit_yaml(folder, old, new)
    line = line_of(text, needle)
    error = load_error(path)
    assert error.problems == [(str(path), line, field, message)]
    expected = f"{path}:{line}: {field}: {message}" if field else f"{path}:{line}: {message}"
    assert str(error) == expected
    assert validate_all(folder) == [expected]


def test_email_trigger_naming_an_unknown_milestone_points_at_the_trigger(folder):
    path = folder / "onboarding.yaml"
    text = edit_yaml(folder, "milestone: kickoff, offset_days: 2", "milestone: kick_off, offset_days: 2")
    error = load_error(path)
    line = line_of(text, "milestone: kick_off")
    message = "names milestone 'kick_off', which no task completes"
    assert error.problems == [(str(path), line, "emails[1].trigger.milestone", message)]
    assert str(error) == f"{path}:{line}: emails[1].trigger.milestone: {message}"


# (old text, new text, text on the line of both the first and the second entry, field, message):
# a value that must be unique is reported where it appears the second time.
DUPLICATE_CASES = {
    "phase key": ("  - key: testing\n", "  - key: planning\n", "  - key: planning", "phases[3].key",
                  "phase key 'planning' appears twice"),
    "task key": ("      - key: runbook\n", "      - key: dry_run\n", "      - key: dry_run", "phases[4].tasks[1].key",
                 "task key 'dry_run' appears twice"),
    "e-mail key": ("  - key: weekly_status\n", "  - key: welcome\n", "  - key: welcome", "emails[2].key",
                   "e-mail key 'welcome' appears twice"),
    "milestone": ("        milestone: ready_for_testing\n", "        milestone: data_migration\n",
                  "        milestone: data_migration", "phases[2].tasks[2].milestone",
                  "milestone 'data_migration' appears twice"),
}


@pytest.mark.parametrize(("old", "new", "needle", "field", "message"), DUPLICATE_CASES.values(), ids=DUPLICATE_CASES.keys())
def test_duplicate_is_reported_at_its_second_appearance(folder, old, new, needle, field, message):
    path = folder / "onboarding.yaml"
    text = edit_yaml(folder, old, new)
    first, second = lines_of(text, needle)
    error = load_error(path)
    assert error.problems == [(str(path), second, field, message)]
    assert str(error) == f"{path}:{second}: {field}: {message}"


def test_invalid_field_of_a_block_style_trigger_is_reported_on_its_own_line(folder):
    """pydantic's location holds the union tag ('weekly'), which is no key of the file: it is skipped,
    so the error is on the `weekday:` line, not on the trigger's first line (`kind:`)."""
    path = folder / "onboarding.yaml"
    text = edit_yaml(
        folder, "    trigger: {kind: weekly, weekday: friday, until_milestone: steady_state}\n",
        "    trigger:\n      kind: weekly\n      weekday: fryday\n      until_milestone: steady_state\n",
    )
    assert line_of(text, "weekday: fryday") != line_of(text, "kind: weekly")
    error = load_error(path)
    assert error.problems == [(
        str(path), line_of(text, "weekday: fryday"), "emails[2].trigger.weekday",
        "Input should be 'monday', 'tuesday', 'wednesday', 'thursday', 'friday', 'saturday' or 'sunday'",
    )]


def test_non_utf8_yaml_names_the_file_and_the_byte(folder):
    path = folder / "onboarding.yaml"
    raw = path.read_bytes().replace(b"name: 30-day onboarding", b"name: 30-day \xff onboarding")
    path.write_bytes(raw)
    error = load_error(path)
    offset = raw.index(b"\xff")
    assert error.problems == [(str(path), None, "", f"not UTF-8 text (byte {offset})")]
    assert str(error) == f"{path}: not UTF-8 text (byte {offset})"


def test_missing_yaml_file(folder):
    path = folder / "absent.yaml"
    error = load_error(path)
    assert error.problems == [(str(path), None, "", "cannot read the file: No such file or directory")]


def test_several_problems_are_all_reported(folder):
    path = folder / "onboarding.yaml"
    edit_yaml(folder, "work_start_hour: 9\n", "work_start_hour: 25\n")
    text = edit_yaml(folder, "        priority: P1\n        milestone: kickoff\n", "        priority: P7\n        milestone: kickoff\n")
    error = load_error(path)
    assert [(p[1], p[2]) for p in error.problems] == [
        (line_of(text, "work_start_hour: 25"), "work_start_hour"),
        (line_of(text, "priority: P7"), "phases[0].tasks[0].priority"),
    ]
    assert len(str(error).splitlines()) == 2


# -- broken templates ------------------------------------------------------------------------
# The problem is reported on the `template:` line of the e-mail that uses the template.


def _delete(path: Path) -> None:
    path.unlink()


def _write(content: bytes):
    return lambda path: path.write_bytes(content)


SYNTAX_ERROR = "<p>Hi</p>\n{% if %}\n<p>bye</p>\n"
UNKNOWN_ATTRIBUTE = "<p>Hi</p>\n<p>x</p>\n{{ data.no_such_thing }}\n"
UNSAFE = "<p>Hi</p>\n<p>{{ ''.__class__.__mro__ }}</p>\n"

TEMPLATE_CASES = {
    "missing template file": (_delete, f"no template file {WELCOME!r}"),
    "Jinja syntax error": (
        _write(SYNTAX_ERROR.encode()),
        f"{WELCOME}:{line_of(SYNTAX_ERROR, '{% if %}')}: Expected an expression, got 'end of statement block'",
    ),
    "unknown variable": (
        _write(UNKNOWN_ATTRIBUTE.encode()),
        f"{WELCOME}:{line_of(UNKNOWN_ATTRIBUTE, 'no_such_thing')}: 'dict object' has no attribute 'no_such_thing'",
    ),
    "unknown top-level variable": (_write(b"{{ no_such_variable }}\n"), f"{WELCOME}:1: 'no_such_variable' is undefined"),
    "sandbox escape": (
        _write(UNSAFE.encode()),
        f"{WELCOME}:{line_of(UNSAFE, '__class__')}: access to attribute '__class__' of 'str' object is unsafe.",
    ),
    "non-UTF-8 template": (_write(b"<p>caf\xe9</p>\n"), f"{WELCOME!r} cannot be read as UTF-8 text"),
    "include of a missing partial": (
        _write(b'{% include "common/_nope.html.j2" %}\n'),
        "common/_nope.html.j2: the template it extends or includes does not exist",
    ),
}


@pytest.mark.parametrize(("breaks", "message"), TEMPLATE_CASES.values(), ids=TEMPLATE_CASES.keys())
def test_broken_template_fails_to_load(folder, breaks, message):
    path = folder / "onboarding.yaml"
    breaks(folder / "templates" / WELCOME)
    line = line_of(path.read_text(encoding="utf-8"), f"template: {WELCOME}")
    error = load_error(path)
    assert error.problems == [(str(path), line, "emails[0].template", message)]
    assert str(error) == f"{path}:{line}: emails[0].template: {message}"


def on_every_email(path: Path, message: str) -> list[tuple]:
    """The same problem reported on the `template:` line of every e-mail of the file."""
    text = path.read_text(encoding="utf-8")
    return [(str(path), line_of(text, f"template: {name}"), field, message) for field, name in TEMPLATE_FIELDS]


def test_missing_layout_breaks_every_template_that_extends_it(folder):
    path = folder / "onboarding.yaml"
    (folder / "templates" / LAYOUT).unlink()
    message = f"{LAYOUT}: the template it extends or includes does not exist"
    assert load_error(path).problems == on_every_email(path, message)
    assert len(on_every_email(path, message)) == len(EMAIL_KEYS)


def test_runtime_error_in_the_layout_names_the_layout_line(folder):
    """Not the `{% extends %}` line of each template using the layout: the layout's own file and line."""
    path = folder / "onboarding.yaml"
    layout = folder / "templates" / LAYOUT
    body = layout.read_text(encoding="utf-8")
    layout.write_text(body.replace("{{ csm.email }}", "{{ csm.mail }}"), encoding="utf-8")
    message = f"{LAYOUT}:{line_of(body, '{{ csm.email }}')}: 'dict object' has no attribute 'mail'"
    assert load_error(path).problems == on_every_email(path, message)


def test_filter_failing_on_its_input_fails_to_load(folder):
    """A filter fed the wrong type raises a plain ValueError: still a PlaybookError, not a crash."""
    path = folder / "onboarding.yaml"
    body = "<p>Hi</p>\n{{ account.name | long_date }}\n"
    (folder / "templates" / WELCOME).write_text(body, encoding="utf-8")
    line = line_of(path.read_text(encoding="utf-8"), f"template: {WELCOME}")
    message = f"{WELCOME}:{line_of(body, 'long_date')}: Invalid isoformat string: 'Sample Corp'"
    error = load_error(path)
    assert error.problems == [(str(path), line, "emails[0].template", message)]
    assert validate_all(folder) == [f"{path}:{line}: emails[0].template: {message}"]


def test_subject_with_an_unknown_variable_fails_to_load(folder):
    path = folder / "onboarding.yaml"
    text = edit_yaml(folder, '"{{ account.name }} Implementation Kickoff', '"{{ account.nmae }} Implementation Kickoff')
    (problem,) = load_error(path).problems
    assert problem == (
        str(path), line_of(text, "template: onboarding/kickoff_summary.html.j2"), "emails[1].template",
        "onboarding/kickoff_summary.html.j2 (subject): 'dict object' has no attribute 'nmae'",
    )


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("with {{ sponsor.name }}", "with {{ sponsor.nmae }}", "'dict object' has no attribute 'nmae'"),
        ("{% endif %}", "{% endiff %}", "Encountered unknown tag 'endiff'. Jinja was looking for the following tags: "
                                        "'elif' or 'else' or 'endif'. The innermost block that needs to be closed is 'if'."),
    ],
    ids=["unknown variable", "syntax error"],
)
def test_template_error_names_the_template_line(folder, old, new, message):
    """An error deep inside the shipped welcome template (a block of a template that extends the layout)."""
    path = folder / "onboarding.yaml"
    welcome = folder / "templates" / WELCOME
    body = welcome.read_text(encoding="utf-8")
    assert body.count(old) == 1
    welcome.write_text(body.replace(old, new), encoding="utf-8")
    line = line_of(body, old)
    assert line > 10
    (problem,) = load_error(path).problems
    assert problem == (str(path), line_of(path.read_text(encoding="utf-8"), f"template: {WELCOME}"),
                       "emails[0].template", f"{WELCOME}:{line}: {message}")


# -- rendering -----------------------------------------------------------------------------


def render_welcome(account):
    template = load_named("onboarding").template("welcome")
    context = email_context(account, SAMPLE_STAFF, "email/welcome", SAMPLE_DATA["onboarding"], account.sponsor)
    return render_email(template, context)


def test_welcome_renders_with_sample_data():
    subject, html, text = render_welcome(SAMPLE_ACCOUNT)
    assert subject == "Welcome to TAI Autonomic Systems, Sample Corp! Your implementation starts now"
    assert "Hi Sam Sponsor," in html and "Casey Manager" in html  # the layout's signature
    assert "Day 25 (Thu 28 Jan 2027): Go-live" in text
    assert "<p>" not in text


def test_account_name_is_escaped_in_the_html_body():
    account = SAMPLE_ACCOUNT.model_copy(update={"name": "<script>alert(1)</script>"})
    subject, html, text = render_welcome(account)
    assert "<script>" not in html
    assert "partner with &lt;script&gt;alert(1)&lt;/script&gt;." in html
    assert "partner with <script>alert(1)</script>." in text  # plain text shows the name as written
    assert subject == "Welcome to TAI Autonomic Systems, <script>alert(1)</script>! Your implementation starts now"


@pytest.mark.parametrize("name", ["Evil\nBcc: victim@example.com", "Evil\r\nBcc: victim@example.com", "Evil \n\n Bcc: victim@example.com"])
def test_subject_with_a_newline_in_the_name_is_one_line(name):
    account = SAMPLE_ACCOUNT.model_copy(update={"name": name})
    subject, _, _ = render_welcome(account)
    assert subject == "Welcome to TAI Autonomic Systems, Evil Bcc: victim@example.com! Your implementation starts now"
    assert len(subject.splitlines()) == 1 and "\r" not in subject


CONTEXT = email_context(SAMPLE_ACCOUNT, SAMPLE_STAFF, "step", SAMPLE_DATA["onboarding"], SAMPLE_ACCOUNT.sponsor)


@pytest.mark.parametrize(
    ("body", "subject", "message"),
    [
        ("{{ ''.__class__.__mro__ }}", "s", "t.html.j2:1: access to attribute '__class__' of 'str' object is unsafe."),
        ("ok\n{{ account.__class__ }}", "s", "t.html.j2:2: access to attribute '__class__' of 'dict' object is unsafe."),
        ("ok", "{{ ''.__class__ }}", "t.html.j2 (subject): access to attribute '__class__' of 'str' object is unsafe."),
        ("{{ nope }}", "s", "t.html.j2:1: 'nope' is undefined"),
        ("ok", "{{ nope }}", "t.html.j2 (subject): 'nope' is undefined"),
        ("ok\n{% if %}", "s", "t.html.j2:2: Expected an expression, got 'end of statement block'"),
        ("ok\n{{ 'soon' | weekday }}", "s", "t.html.j2:2: Invalid isoformat string: 'soon'"),
        ("ok", "{{ 'soon' | long_date }}", "t.html.j2 (subject): Invalid isoformat string: 'soon'"),
    ],
)
def test_render_email_refuses(body, subject, message):
    with pytest.raises(RenderError) as info:
        render_email(EmailTemplate(name="t.html.j2", subject=subject, body=body), CONTEXT)
    assert str(info.value) == message


def test_render_filters_and_text_body():
    template = EmailTemplate(
        name="t.html.j2", subject="Go-live {{ data.go_live_date | weekday }}",
        body="<h3>Plan</h3><ul><li>{{ data.go_live_date | long_date }}</li><li>{{ '2027-03-15T09:00:00' | weekday }}</li></ul>",
    )
    subject, html, text = render_email(template, CONTEXT)
    assert subject == "Go-live Thursday"
    assert html == "<h3>Plan</h3><ul><li>Thu 28 Jan 2027</li><li>Monday</li></ul>"
    assert text == "Plan\n\n- Thu 28 Jan 2027\n- Monday\n"


def test_email_context_is_plain_data():
    context = email_context(SAMPLE_ACCOUNT, SAMPLE_STAFF, "email/welcome", {"day": 3}, None)
    assert set(context) == {"account", "csm", "sponsor", "contacts", "staff", "recipient", "step", "data"}
    assert context["account"]["name"] == "Sample Corp"
    assert context["account"]["tier"] == SAMPLE_ACCOUNT.tier
    assert context["account"]["renewal_date"] == date(2027, 6, 30)
    assert context["csm"] == {"name": "Casey Manager", "email": "casey@tai.example"}
    assert context["contacts"] == [{"name": "Terry Tech", "email": "terry@sample.example", "role": "technical_lead"}]
    assert context["staff"]["ceo"] == {"role": "ceo", "name": "Sample ceo", "email": "ceo@tai.example"}
    assert context["recipient"] is None
    assert (context["step"], context["data"]) == ("email/welcome", {"day": 3})
