"""E-mail rendering in a Jinja2 sandbox.

Templates are content a CS manager edits, so they are treated as untrusted:
`SandboxedEnvironment` blocks attribute tricks such as `''.__class__`,
autoescape keeps an account named `<script>` from becoming markup, and
`StrictUndefined` turns a misspelt variable into an error instead of a
blank in a customer's inbox.
"""

from __future__ import annotations

import re
from functools import lru_cache
from html import unescape as html_unescape

from jinja2 import BaseLoader, StrictUndefined, TemplateError, TemplateNotFound, TemplateSyntaxError
from jinja2.sandbox import SandboxedEnvironment

from core.models import EmailTemplate
from core.text import defang_urls, header_safe

# Characters of a subject line; a longer one is cut with an ellipsis.
MAX_SUBJECT = 250


class RenderError(ValueError):
    """A template failed to render; `line` is the template line when known."""

    def __init__(self, template: str, message: str, line: int | None = None):
        self.template, self.line, self.message = template, line, message
        where = f"{template}:{line}" if line else template
        super().__init__(f"{where}: {message}")


def _as_date(value):
    # Dates cross the activity boundary as ISO strings; accept both forms.
    if isinstance(value, str):
        from datetime import datetime

        return datetime.fromisoformat(value)
    return value


def _weekday(value) -> str:
    return _as_date(value).strftime("%A")


def _long_date(value) -> str:
    return _as_date(value).strftime("%a %d %b %Y")


def _when(value, tz: str = "America/New_York") -> str:
    """A moment as the reader's local time, e.g. 'Mon 30 Nov 2026 10:00 EST'."""
    from zoneinfo import ZoneInfo

    moment = _as_date(value)
    if getattr(moment, "tzinfo", None) is not None:
        moment = moment.astimezone(ZoneInfo(tz))
    return moment.strftime("%a %d %b %Y %H:%M %Z").strip()


class _SnapshotLoader(BaseLoader):
    """Templates from a snapshot, compiled under their own names so errors carry file and line."""

    def __init__(self, templates: dict[str, str]):
        self.templates = templates

    def get_source(self, environment, template):
        if template not in self.templates:
            raise TemplateNotFound(template)
        return self.templates[template], template, lambda: True


def _environment(autoescape: bool, templates: dict[str, str]) -> SandboxedEnvironment:
    env = SandboxedEnvironment(
        loader=_SnapshotLoader(templates),
        autoescape=autoescape,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["weekday"] = _weekday
    env.filters["long_date"] = _long_date
    env.filters["when"] = _when
    return env


def _failing_template(exc: BaseException, names: set[str], default: str) -> tuple[str, int | None]:
    """The innermost template frame of the error (Jinja rewrites tracebacks so that
    template frames carry the template's name and line): a layout's own line wins
    over the `extends` line of the template using it."""
    tb, where = exc.__traceback__, (default, None)
    while tb is not None:
        if tb.tb_frame.f_code.co_filename in names:
            where = (tb.tb_frame.f_code.co_filename, tb.tb_lineno)
        tb = tb.tb_next
    return where


_BREAKS = frozenset({"p", "div", "br", "tr", "h1", "h2", "h3", "h4", "li", "table", "ul", "ol", "hr"})
_HIDDEN = frozenset({"style", "script", "head"})
# One token of HTML: a comment (an unclosed one hides the rest, as in a browser), a declaration or
# processing instruction, a start or end tag (its attributes skipped, a quoted '>' included), or
# text (a '<' that starts none of these is text). A tag never spans a '<', so a failed attempt reads
# no further than the next one: linear on hostile input (a megabyte of `<a href="`).
_TOKEN = re.compile(
    r"<!--.*?(?:-->|\Z)"
    r"|<[!?][^>]*>?"
    r"|<(/?)([a-zA-Z][^\t\n\r\f />\x00<]*)(?:[^<>\"']|\"[^\"<]*\"|'[^'<]*')*>"
    r"|([^<]+|<)",
    re.S,
)
# The text of these elements is not HTML (HTML 5 "raw text elements"): it runs to their end tag.
_RAW_END = {tag: re.compile(rf"</{tag}\s*>", re.I) for tag in ("style", "script")}
_SPACES = re.compile(r"\s+")
_BLANK_LINES = re.compile(r"\n{3,}")


def html_to_text(html: str) -> str:
    """The plain-text part of an e-mail (RFC 2046 multipart/alternative) from its HTML body: block
    elements (p, div, br, tr, headings, lists, tables, hr) break lines, list items start with "- ",
    table cells stay apart, head, style and script are dropped, entities are decoded, runs of white
    space become one space and blank lines at most one. Also reads the HTML of inbound replies, so
    it never fails and is linear in the input's length. The same text as walking the markup with
    the standard library's `html.parser` (tests/playbooks/rendering_text_test.py compares them), at
    about a quarter of its cost: a survey batch converts every e-mail it sends."""
    parts: list[str] = []
    hidden, pos, end = 0, 0, len(html)
    while pos < end:
        token = _TOKEN.match(html, pos)
        pos = token.end()
        closing, tag, data = token.groups()
        if data is not None:
            if not hidden:
                parts.append(_SPACES.sub(" ", html_unescape(data) if "&" in data else data))
        elif tag is None:  # a comment, declaration or processing instruction
            continue
        elif (tag := tag.lower()) in _HIDDEN:
            if closing:
                hidden = max(0, hidden - 1)
            elif tag in _RAW_END:
                found = _RAW_END[tag].search(html, pos)
                pos = found.end() if found else end
            else:
                hidden += 1
        elif closing:
            if tag in _BREAKS and tag != "li":
                parts.append("\n")
        elif tag == "li":
            parts.append("\n- ")
        elif tag in ("td", "th"):
            parts.append("  ")  # cells of a row stay apart in the plain-text part
        elif tag in _BREAKS:
            parts.append("\n\n" if token.group(0).endswith("/>") else "\n")  # <br/>: a start and an end
    lines = [line.strip() for line in "".join(parts).splitlines()]
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip() + "\n"


@lru_cache(maxsize=256)
def _compiled(autoescape: bool, name: str, sources: tuple[tuple[str, str], ...]):
    """A template compiled once per distinct source: a survey batch renders the same
    template a thousand times, and compiling it is most of the cost."""
    return _environment(autoescape, dict(sources)).get_template(name)


def render_email(template: EmailTemplate, context: dict) -> tuple[str, str, str]:
    """Returns (subject, html body, text body)."""
    name = template.name
    try:
        sources = {**template.partials, name: template.body}
        html = _compiled(True, name, tuple(sorted(sources.items()))).render(context)
    except TemplateSyntaxError as exc:
        raise RenderError(exc.name or name, exc.message or str(exc), exc.lineno) from None
    except (TemplateError, ValueError, TypeError, ArithmeticError, LookupError) as exc:
        # A filter fed the wrong type fails with a plain Python error: still the template's fault.
        where, line = _failing_template(exc, set(sources), name)
        raise RenderError(where, str(exc), line) from None
    subject_name = f"{name} (subject)"
    try:
        subject = _compiled(False, subject_name, ((subject_name, template.subject),)).render(context)
    except (TemplateError, ValueError, TypeError, ArithmeticError, LookupError) as exc:
        raise RenderError(subject_name, str(exc)) from None
    # A header must be one line (RFC 5322 section 2.2): a name with a newline must not add headers,
    # a bidi override must not turn the subject around, and a URL from outside (a ticket's subject)
    # must not become a link in the reader's mail client.
    subject = defang_urls(header_safe(subject, MAX_SUBJECT))
    return subject, html, html_to_text(html)


def referenced_templates(source: str, name: str = "template") -> set[str]:
    """Names a template extends, includes or imports (one level)."""
    from jinja2 import meta

    try:
        ast = SandboxedEnvironment().parse(source)
    except TemplateSyntaxError as exc:
        raise RenderError(name, exc.message or str(exc), exc.lineno) from None
    return {n for n in meta.find_referenced_templates(ast) if n}


def email_context(account, staff: dict, step: str, data: dict, recipient) -> dict:
    """The variables every template sees. Plain data only: no objects with methods.
    A report about many accounts has no `account` (nor csm, sponsor, contacts)."""
    acct = account.model_dump(mode="python") if account is not None else None
    if acct is not None:
        acct["tier"] = account.tier
    return {
        "account": acct,
        "csm": acct["csm"] if acct else None,
        "sponsor": acct["sponsor"] if acct else None,
        "contacts": acct["contacts"] if acct else [],
        "staff": {role: member.model_dump(mode="python") for role, member in staff.items()},
        "recipient": recipient.model_dump(mode="python") if recipient is not None else None,
        "step": step,
        "data": data,
    }
