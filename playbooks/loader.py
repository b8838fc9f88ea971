"""Load and validate a playbook file into a snapshot for a workflow input.

Every problem is reported as `file:line: field: message`, the way a CS
manager editing YAML needs it: the place to look, and what is wrong there.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import yaml
from pydantic import ValidationError

from core.models import EmailTemplate
from playbooks.rendering import RenderError, email_context, referenced_templates, render_email
from playbooks.samples import SAMPLE_ACCOUNT, SAMPLE_DATA, SAMPLE_STAFF
from playbooks.schema import PLAYBOOK_MODELS, SNAPSHOT_MODELS, Content, PlaybookSnapshot
from playbooks.scoring import ScoringContent
from playbooks.notifications import NOTIFICATIONS_FILE, NotificationsContent
from playbooks.triggers import TriggersContent

PLAYBOOKS_DIR = Path(__file__).parent
MAX_FILE_BYTES = 1_000_000
TRIGGERS_FILE = "triggers.yaml"
SCORING_FILE = "churn_scoring.yaml"


class PlaybookError(ValueError):
    """An invalid playbook file. `problems` are (file, line, field, message)."""

    def __init__(self, problems: list[tuple[str, int | None, str, str]]):
        self.problems = problems
        super().__init__("\n".join(_format(*p) for p in problems))


def _format(file: str, line: int | None, field: str, message: str) -> str:
    where = f"{file}:{line}" if line else file
    return f"{where}: {field}: {message}" if field else f"{where}: {message}"


def _node_at(root: yaml.Node | None, loc: tuple) -> yaml.Node | None:
    """The node to point at for a pydantic error location: the deepest key
    (or list item) along it. A key, not its value, because a block value
    starts on the line after the key that names it."""
    node = at = root
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next(((k, v) for k, v in node.value if k.value == part), None)
            if match is not None:
                at, node = match
            # else: a missing key or pydantic's union tag ('weekly'): stay on this mapping
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            at = node = node.value[part]
        else:
            # discriminator tags and the like are not YAML keys: keep the nearest node
            continue
    return at


_RELATIVE = re.compile(r"^([a-z_]+(?:\[\d+\])*(?:\.[a-z_]+(?:\[\d+\])*)*): (.+)$", re.S)


def _relative(message: str) -> tuple[tuple, str]:
    """Cross-field checks start their message with the path they are about,
    relative to the model they validate (`tasks[1].day: ...`); split it off
    so the error points at that key's line, not at the model's first line."""
    match = _RELATIVE.match(message)
    if not match:
        return (), message
    loc: list = []
    for part in match.group(1).split("."):
        name, *indexes = part.replace("]", "").split("[")
        loc.append(name)
        loc.extend(int(i) for i in indexes)
    return tuple(loc), match.group(2)


def _line(node: yaml.Node | None) -> int | None:
    return node.start_mark.line + 1 if node is not None else None


def _field(loc: tuple) -> str:
    parts: list[str] = []
    previous = None
    for part in loc:
        if isinstance(part, int):
            parts.append(f"[{part}]")
        elif previous == "trigger" and part in ("start", "after_milestone", "weekly", "daily_after_milestone"):
            pass  # pydantic's name for the branch of the e-mail trigger union, not a key of the file
        elif part == "[key]":
            pass  # pydantic marks a bad mapping key so: the key itself is named already
        elif isinstance(part, str) and (part.startswith(("literal[", "dict[", "function-")) or part in ("str", "int")):
            pass  # the branch of a union field (`owner_role`: a role or a role per tier)
        else:
            parts.append(("." if parts else "") + str(part))
        previous = part
    return "".join(parts) or "(top level)"


def _read_yaml(path: Path) -> tuple[str, bytes, yaml.Node, object]:
    """(name, raw bytes, node tree for line numbers, parsed data) of a YAML file."""
    name = str(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise PlaybookError([(name, None, "", f"cannot read the file: {exc.strerror}")]) from None
    if len(raw) > MAX_FILE_BYTES:
        raise PlaybookError([(name, None, "", f"file is larger than {MAX_FILE_BYTES} bytes")])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PlaybookError([(name, None, "", f"not UTF-8 text (byte {exc.start})")]) from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise PlaybookError([(name, line, "", f"YAML syntax: {exc.problem or exc}")]) from None
    except RecursionError:
        raise PlaybookError([(name, _deep_line(text), "", "YAML nested too deeply")]) from None
    return name, raw, root, data


def _deep_line(text: str, limit: int = 100) -> int:
    """The line where `text` first nests more than `limit` brackets or indents past `limit` columns
    (where a too-deep YAML document goes wrong), else 1."""
    depth = 0
    for number, line in enumerate(text.splitlines(), 1):
        if len(line) - len(line.lstrip(" ")) > limit:
            return number
        for char in line:
            depth += (char in "[{") - (char in "]}")
            if depth > limit:
                return number
    return 1


def _validate(name: str, root: yaml.Node, model: type[Content], data: object, context: dict | None = None) -> Content:
    try:
        return model.model_validate(data, context=context)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            rel, message = _relative(err["msg"].removeprefix("Value error, "))
            loc = tuple(err["loc"]) + rel
            problems.append((name, _line(_node_at(root, loc)), _field(loc), message))
        raise PlaybookError(problems) from None


def _load_config(path: Path, model: type[Content], profile=None):
    """A configuration file, validated in `profile` (playbooks/profiles.Profile; default: the active one)."""
    name, _, root, data = _read_yaml(Path(path))
    if not isinstance(data, dict):
        raise PlaybookError([(name, 1, "", "expected a mapping at the top")])
    return _validate(name, root, model, data, _context(profile))


def _context(profile=None) -> dict:
    """The validation context of content: the organisation profile it must fit."""
    from playbooks.profiles import active_profile

    return (profile or active_profile()).context


def load_triggers(path: Path) -> TriggersContent:
    """The CRM routing rules (triggers.yaml), validated, errors as file:line: field: message."""
    return _load_config(path, TriggersContent)


def load_scoring(path: Path | None = None) -> ScoringContent:
    """The churn-risk models (churn_scoring.yaml), validated, errors as file:line: field: message."""
    return _load_config(path or PLAYBOOKS_DIR / SCORING_FILE, ScoringContent)


_snapshots: dict[tuple, PlaybookSnapshot] = {}


def _fingerprint(path: Path, templates_dirs: list[Path], profile) -> tuple:
    """What a snapshot depends on, cheaply: the file's and every template's size and mtime, and the
    profile it was validated in."""
    files = [path, *(p for d in templates_dirs if d.is_dir() for p in sorted(d.rglob("*")) if p.is_file())]
    stats = [(profile.name, str(profile.root), profile.digest)]
    for f in files:
        try:
            st = f.stat()
        except OSError:
            return ()  # gone: load for real, which reports it
        stats.append((str(f), st.st_mtime_ns, st.st_size))
    return (str(path.resolve()), tuple(str(d.resolve()) for d in templates_dirs), tuple(stats))


def _templates_dirs(path: Path, profile) -> list[Path]:
    """A playbook's template folders, in lookup order: a file of a profile's own folder finds its
    templates in the profile's templates/, then the default profile's; any other file beside it."""
    if path.parent.resolve() in (profile.folder.resolve(), profile.root.resolve()):
        return profile.templates_dirs()
    return [path.parent / "templates"]


def load_playbook(path: Path, templates_dir: Path | None = None, profile=None) -> PlaybookSnapshot:
    """Parse, validate and snapshot one playbook file (content + template sources), in `profile`
    (playbooks/profiles.Profile: its tiers and priorities; default: the active profile).

    Launches happen by the thousand (a segment, a CRM burst): a snapshot is kept while neither
    the file nor any template changed, since validating renders every template once."""
    from playbooks.profiles import active_profile

    path = Path(path)
    profile = profile or active_profile()
    templates_dirs = [Path(templates_dir)] if templates_dir else _templates_dirs(path, profile)
    key = _fingerprint(path, templates_dirs, profile)
    if key and key in _snapshots:
        return _snapshots[key]
    snapshot = _load_playbook(path, templates_dirs, profile)
    if key:
        if len(_snapshots) > 64:
            _snapshots.clear()
        _snapshots[key] = snapshot
    return snapshot


def _template_path(templates_dirs: list[Path], name: str) -> tuple[Path | None, bool]:
    """(the file of template `name` in the first folder that has it, or None; whether `name` stays
    inside the folders at all)."""
    inside = False
    for folder in templates_dirs:
        try:
            path = (folder / name).resolve()
            if not path.is_relative_to(folder.resolve()):
                continue
            inside = True
            if path.is_file():
                return path, True
        except (ValueError, OSError):  # a NUL byte, a name longer than the file system takes
            return None, False
    return None, inside


def _load_playbook(path: Path, templates_dirs: list[Path], profile) -> PlaybookSnapshot:
    name, raw, root, data = _read_yaml(path)
    if not isinstance(data, dict):
        raise PlaybookError([(name, 1, "", "expected a mapping with a 'playbook' key at the top")])
    kind = data.get("playbook")
    model = PLAYBOOK_MODELS.get(kind) if isinstance(kind, str) else None
    if model is None:
        known = ", ".join(sorted(PLAYBOOK_MODELS))
        raise PlaybookError([(name, _line(_node_at(root, ("playbook",))), "playbook", f"must be one of: {known}")])
    content = _validate(name, root, model, data, profile.context)

    templates: dict[str, EmailTemplate] = {}
    problems = _calendar_problems(name, root, content)
    for key, loc, email in content.email_contents():
        where = _field(loc)
        line = _line(_node_at(root, loc + ("template",)))
        template_path, inside = _template_path(templates_dirs, email.template)
        if not inside:
            problems.append((name, line, f"{where}.template", "must be a file under templates/"))
            continue
        if template_path is None:
            problems.append((name, line, f"{where}.template", f"no template file {email.template!r}"))
            continue
        try:
            body = template_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            problems.append((name, line, f"{where}.template", f"no template file {email.template!r}"))
            continue
        except (OSError, UnicodeDecodeError):
            problems.append((name, line, f"{where}.template", f"{email.template!r} cannot be read as UTF-8 text"))
            continue
        try:
            partials = _partials(body, email.template, templates_dirs)
        except RenderError as exc:
            problems.append((name, line, f"{where}.template", str(exc)))
            continue
        template = content.email_template(key, email, body, partials)
        problem = check_template(template, kind)
        if problem:
            problems.append((name, line, f"{where}.template", problem))
        templates[key] = template
    if problems:
        raise PlaybookError(problems)
    digest = hashlib.sha256(raw + b"".join(t.body.encode() for t in templates.values())).hexdigest()[:16]
    return SNAPSHOT_MODELS[kind](source=path.name, digest=digest, content=content, templates=templates)


def _calendar_problems(name: str, root: yaml.Node, content) -> list[tuple[str, int | None, str, str]]:
    """Countries and regions the `holidays` package must know (our team's; the SLA's support region)."""
    from core.holiday_calendars import place_problem

    places = [("team_country", content.team_country, "team_region", content.team_region)]
    if getattr(content, "holidays", "none") != "none":
        places.append(("holidays", content.holidays, "holidays_region", content.holidays_region))
    problems = []
    for country_field, country, region_field, region in places:
        problem = place_problem(country, region)
        if problem:
            field = region_field if problem[0] == "region" else country_field
            problems.append((name, _line(_node_at(root, (field,))), field, problem[1]))
    return problems


def _partials(body: str, name: str, templates_dirs: list[Path] | Path) -> dict[str, str]:
    """Every layout or include a template needs, transitively, by name (first folder that has it)."""
    if isinstance(templates_dirs, Path):
        templates_dirs = [templates_dirs]
    found: dict[str, str] = {}
    pending = list(referenced_templates(body, name))
    while pending:
        ref = pending.pop()
        if ref in found:
            continue
        path, _ = _template_path(templates_dirs, ref)
        if path is None:
            raise RenderError(ref, "the template it extends or includes does not exist")
        try:
            found[ref] = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            raise RenderError(ref, "cannot be read as UTF-8 text") from None
        pending.extend(referenced_templates(found[ref], ref))
    return found


def check_template(template: EmailTemplate, playbook: str) -> str | None:
    """Render once against sample data; None when it renders, else what is wrong and where."""
    context = email_context(SAMPLE_ACCOUNT, SAMPLE_STAFF, "sample", SAMPLE_DATA[playbook], SAMPLE_ACCOUNT.sponsor)
    try:
        render_email(template, context)
    except RenderError as exc:
        return str(exc)
    return None


def standalone_template(name: str, subject: str, playbooks_dir: Path | None = None,
                        category: str = "internal") -> EmailTemplate:
    """A template the product sends outside any playbook (the CSM's notice of a customer reply), read
    from the templates folder now, with its partials. Raises PlaybookError naming the file."""
    templates_dir = (playbooks_dir or PLAYBOOKS_DIR) / "templates"
    path = (templates_dir / name).resolve()
    try:
        body = path.read_text(encoding="utf-8")
        partials = _partials(body, name, templates_dir)
    except (OSError, UnicodeDecodeError) as exc:
        raise PlaybookError([(str(path), None, "", f"cannot read the template: {exc}")]) from None
    except RenderError as exc:
        raise PlaybookError([(str(path), exc.line, "", str(exc))]) from None
    return EmailTemplate(name=name, subject=subject, body=body, partials=partials, category=category)


# Files of the playbooks folder that are configuration, not playbooks.
CONFIG_FILES: dict[str, type[Content]] = {TRIGGERS_FILE: TriggersContent, SCORING_FILE: ScoringContent,
                                          NOTIFICATIONS_FILE: NotificationsContent}


def load_named(playbook: str, playbooks_dir: Path | None = None, profile=None) -> PlaybookSnapshot:
    """Playbook `playbook` (its kind: sla, onboarding, ...) of `profile` (default: the active
    profile, or with `playbooks_dir` that folder's file validated in the active profile)."""
    if profile is not None:
        return load_playbook(profile.path(f"{playbook}.yaml"), profile=profile)
    if playbooks_dir is None:
        from playbooks.profiles import active_profile

        profile = active_profile()
        return load_playbook(profile.path(f"{playbook}.yaml"), profile=profile)
    return load_playbook(Path(playbooks_dir) / f"{playbook}.yaml")


def crm_config_files(playbooks_dir: Path | None = None, examples: bool = True) -> list[tuple[Path, type[Content]]]:
    """The CRM content of `crm/` (team, currencies, and every mapping; with `examples`, the example
    mappings of `crm/examples/` too, which are written for the default profile's tiers)."""
    from playbooks.crm_mapping import CurrenciesContent, Mapping, TeamContent

    crm = (playbooks_dir or PLAYBOOKS_DIR) / "crm"
    named = {"team.yaml": TeamContent, "currencies.yaml": CurrenciesContent}
    # connections.yaml is the webhooks' (playbooks/crm_connections.py), checked on its own.
    paths = [p for p in sorted(crm.glob("*.yaml")) if p.name != "connections.yaml"] + (sorted(
        (crm / "examples").glob("*.yaml")) if examples else [])
    return [(p, named.get(p.name, Mapping) if p.parent == crm else Mapping) for p in paths]


def validate_all(playbooks_dir: Path | None = None, profile: str | None = None) -> list[str]:
    """Every problem in the content of organisation profile `profile` (default: the configured one,
    PROFILE), formatted: its profile.yaml, every playbook file it has or takes from the default
    profile, its crm/ content; and, without `profile`, every other profile's profile.yaml."""
    from core.settings import get_settings
    from playbooks.profiles import load_profile, profile_names

    root = Path(playbooks_dir or PLAYBOOKS_DIR)
    name = profile or get_settings().profile
    errors: list[str] = []
    for other in profile_names(root):
        if other != name and profile is None:
            try:
                load_profile(other, root)
            except PlaybookError as exc:
                errors.extend(_format(*p) for p in exc.problems)
    try:
        prof = load_profile(name, root)
    except PlaybookError as exc:
        return errors + [_format(*p) for p in exc.problems]
    for file in content_files(prof):
        path = prof.path(file)
        try:
            if file in CONFIG_FILES:
                _load_config(path, CONFIG_FILES[file], prof)
            else:
                load_playbook(path, profile=prof)
        except PlaybookError as exc:
            errors.extend(_format(*p) for p in exc.problems)
    from playbooks.profiles import DEFAULT_PROFILE

    for path, model in crm_config_files(root, examples=prof.name == DEFAULT_PROFILE):
        try:
            _load_config(path, model, prof)
        except PlaybookError as exc:
            errors.extend(_format(*p) for p in exc.problems)
    errors.extend(_crm_connection_problems(root / "crm"))
    return errors


def content_files(profile) -> list[str]:
    """The content files (playbooks and configuration) of a profile: the default profile's and
    its own (profile.yaml aside), by name."""
    names = {p.name for p in profile.root.glob("*.yaml")}
    if profile.folder.is_dir():
        names |= {p.name for p in profile.folder.glob("*.yaml") if p.name != "profile.yaml"}
    return sorted(names)


def profile_sources(profile) -> list[tuple[str, str]]:
    """(content file, where it comes from: the profile's own folder or the default profile)."""
    return [(file, profile.source(file)) for file in content_files(profile)]


def _crm_connection_problems(crm_dir: Path) -> list[str]:
    """The vendor webhooks' connections.yaml and the mappings it names (playbooks/crm_connections.py)."""
    from playbooks.crm_connections import CONNECTIONS_FILE, load_connections

    if not (crm_dir / CONNECTIONS_FILE).is_file():
        return []
    try:
        load_connections(crm_dir)
    except PlaybookError as exc:
        return [_format(*p) for p in exc.problems]
    return []
