"""Refuse to serve the outside world with secrets anyone can know.

The service is *reachable from outside* when it listens on a non-loopback address (HTTP_HOST
0.0.0.0, ::, a LAN or public address) or is published under a non-loopback PUBLIC_BASE_URL
(a proxy forwards to it). Then every secret in REQUIRED_SECRETS must be set, non-empty, at
least MIN_SECRET_LENGTH characters and not a published default; so must every other secret
setting that is set (OIDC_CLIENT_SECRET, vendor secrets added later). On a laptop (loopback
only) the demo defaults still work, so `./run.sh` runs with no configuration.

Settings of other modules that hold a secret and must be set when exposed are added to
REQUIRED_SECRETS by name (the environment variable is the upper-cased name).
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from pydantic import SecretStr

from core.settings import Settings

REQUIRED_SECRETS: list[str] = ["crm_webhook_secret", "nps_link_secret", "email_link_secret"]
MIN_SECRET_LENGTH = 24
# Values published in this repository, its README and common placeholders.
DEMO_SECRETS = {"local-demo-secret", "local-demo-nps-secret", "changeme", "change-me", "secret", "password",
                "test", "demo", "example", "xxx", "default", "your-secret-here"}
HOW_TO = "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"


class ExposureRefused(SystemExit):
    """The service must not start as configured; the message names every variable to fix."""


def _loopback(host: str) -> bool:
    host = host.strip("[]").lower()
    if host in ("localhost", "localhost.localdomain") or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def exposed_because(settings: Settings) -> str | None:
    """Why the service is reachable from outside, or None when it only listens to this machine."""
    if not _loopback(settings.http_host):
        return f"HTTP_HOST={settings.http_host} listens beyond this machine"
    if settings.public_base_url:
        host = urlsplit(settings.public_base_url).hostname or ""
        if not _loopback(host):
            return f"PUBLIC_BASE_URL={settings.public_base_url} publishes it"
    if "*" in settings.allowed_hosts:
        return "ALLOWED_HOSTS=* answers any host name"
    public = [h for h in settings.allowed_hosts if not _loopback(h.rsplit(":", 1)[0] if h.count(":") == 1 else h)]
    if public:  # a reverse proxy forwards that name to this loopback port: the service is public
        return f"ALLOWED_HOSTS names {public[0]}, served through a proxy"
    return None


def _secret_value(value) -> str | None:
    if value is None:
        return None
    return value.get_secret_value() if isinstance(value, SecretStr) else str(value)


def secret_problem(value: str | None) -> str | None:
    """What is wrong with a secret's value (None: fine)."""
    if value is None or not value.strip():
        return "is missing or empty"
    if value.strip().lower() in DEMO_SECRETS or "demo" in value.lower():
        return "is a published demo default"
    if len(value) < MIN_SECRET_LENGTH:
        return f"is shorter than {MIN_SECRET_LENGTH} characters"
    if len(set(value)) < 8:
        return "repeats too few characters to be random"
    return None


def problems(settings: Settings) -> list[str]:
    """Every reason not to start, each naming its environment variable; empty when it may start."""
    found = []
    why = exposed_because(settings)
    if why is not None:
        checked = list(REQUIRED_SECRETS)
        for name, info in type(settings).model_fields.items():
            if name not in checked and info.annotation in (SecretStr, SecretStr | None) \
                    and getattr(settings, name) is not None and name.endswith(("_secret", "_token", "_key")):
                checked.append(name)
        for name in checked:
            problem = secret_problem(_secret_value(getattr(settings, name, None)))
            if problem:
                found.append(f"{name.upper()} {problem}")
        if "*" in settings.allowed_hosts:
            found.append("ALLOWED_HOSTS must list the host names the service answers, not *")
    if settings.oidc_enabled:
        issuer = urlsplit(settings.oidc_issuer or "")
        if issuer.scheme != "https" and not _loopback(issuer.hostname or ""):
            found.append("OIDC_ISSUER must be an https URL")
        if why is not None and settings.oidc_client_secret is None:
            found.append("OIDC_CLIENT_SECRET is missing or empty")
    if settings.public_base_url and urlsplit(settings.public_base_url).scheme not in ("http", "https"):
        found.append("PUBLIC_BASE_URL must start with https:// (or http:// for this machine)")
    return found


def check(settings: Settings) -> None:
    """Raise ExposureRefused (a SystemExit with the whole message) if the service must not start."""
    found = problems(settings)
    if found:
        why = exposed_because(settings)
        lead = f"refusing to start: the HTTP service is reachable from outside ({why})" if why \
            else "refusing to start"
        raise ExposureRefused(f"{lead} and\n" + "\n".join(f"  - {p}" for p in found) +
                              f"\nSet each secret to a random value of {MIN_SECRET_LENGTH}+ characters, e.g. {HOW_TO}")
