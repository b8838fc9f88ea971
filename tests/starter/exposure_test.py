"""Refusing to start with secrets anyone can know when the service is reachable from outside
(issue 16): the rule, ./run.sh's start, and the HTTP service started by itself."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from core.settings import PROJECT_ROOT, Settings
from starter.security.exposure import ExposureRefused, check, exposed_because, problems

STRONG = "k3J9-vQ2m_Xw8pL4zR7tY1bN6cH5dF0e"


def settings(**kw) -> Settings:
    return Settings(_env_file=None, **kw)


def test_on_this_machine_the_demo_defaults_still_run():
    assert exposed_because(settings()) is None and problems(settings()) == []
    assert problems(settings(public_base_url="http://localhost:8000")) == []


@pytest.mark.parametrize(("kw", "why"), [
    ({"http_host": "0.0.0.0"}, "HTTP_HOST=0.0.0.0"),
    ({"http_host": "::"}, "HTTP_HOST=::"),
    ({"http_host": "192.0.2.10"}, "HTTP_HOST=192.0.2.10"),
    ({"public_base_url": "https://cs.tai.example"}, "PUBLIC_BASE_URL=https://cs.tai.example"),
    ({"allowed_hosts": ["*"]}, "ALLOWED_HOSTS=*"),
    ({"allowed_hosts": ["cs.tai.example", "127.0.0.1"]}, "ALLOWED_HOSTS names cs.tai.example"),  # behind a proxy
])
def test_reachable_from_outside_with_demo_secrets_names_every_variable(kw, why):
    found = problems(settings(**kw))
    assert exposed_because(settings(**kw)).startswith(why)
    assert "CRM_WEBHOOK_SECRET is a published demo default" in found
    assert "NPS_LINK_SECRET is a published demo default" in found
    assert "EMAIL_LINK_SECRET is a published demo default" in found
    with pytest.raises(ExposureRefused) as refused:
        check(settings(**kw))
    assert "CRM_WEBHOOK_SECRET" in str(refused.value) and "secrets.token_urlsafe" in str(refused.value)


@pytest.mark.parametrize(("value", "says"), [
    ("", "is missing or empty"),
    ("   ", "is missing or empty"),
    ("changeme", "is a published demo default"),
    ("my-demo-secret-for-production-use", "is a published demo default"),
    ("short-but-random", "is shorter than 24 characters"),
    ("a" * 40, "repeats too few characters to be random"),
])
def test_weak_secrets_are_refused(value, says):
    found = problems(settings(http_host="0.0.0.0", crm_webhook_secret=value, nps_link_secret=STRONG,
                              email_link_secret=STRONG[1:]))
    assert found == [f"CRM_WEBHOOK_SECRET {says}"]


def test_strong_secrets_start_and_optional_secrets_are_checked_when_set():
    ok = settings(http_host="0.0.0.0", allowed_hosts=["cs.tai.example"], crm_webhook_secret=STRONG,
                  nps_link_secret=STRONG[::-1], email_link_secret=STRONG[1:])
    assert problems(ok) == []
    check(ok)
    sso = ok.model_copy(update={"oidc_issuer": "http://idp.tai.example", "oidc_client_id": "csplay",
                                "oidc_client_secret": None})
    assert problems(sso) == ["OIDC_ISSUER must be an https URL", "OIDC_CLIENT_SECRET is missing or empty"]
    from pydantic import SecretStr

    weak_sso = ok.model_copy(update={"oidc_issuer": "https://idp.tai.example", "oidc_client_id": "csplay",
                                     "oidc_client_secret": SecretStr("secret")})
    assert problems(weak_sso) == ["OIDC_CLIENT_SECRET is a published demo default"]


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CRM_", "NPS_", "HTTP_", "PUBLIC_", "OIDC_"))}
    return {**env, **extra}


def test_run_sh_refuses_to_start_exposed_with_the_demo_secrets(tmp_path):
    done = subprocess.run([sys.executable, "-m", "starter.devstack"], cwd=PROJECT_ROOT, capture_output=True,
                          text=True, timeout=120, env=_env(HTTP_HOST="0.0.0.0", DATA_DIR=str(tmp_path / "data"),
                                                           NPS_LINK_SECRET=""))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "refusing to start: the HTTP service is reachable from outside (HTTP_HOST=0.0.0.0" in done.stdout
    assert "CRM_WEBHOOK_SECRET is a published demo default" in done.stdout
    assert "NPS_LINK_SECRET is missing or empty" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr
    assert not (tmp_path / "data").exists()  # nothing was started or created


def test_the_http_service_alone_refuses_too(tmp_path):
    from tests.conftest import free_port

    done = subprocess.run(
        [sys.executable, "-m", "uvicorn", "starter.http:app", "--host", "127.0.0.1", "--port", str(free_port())],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120,
        env=_env(PUBLIC_BASE_URL="https://cs.tai.example", CRM_WEBHOOK_SECRET=STRONG, DATA_DIR=str(tmp_path)))
    assert done.returncode != 0
    assert "NPS_LINK_SECRET is a published demo default" in done.stderr + done.stdout
    assert "Application startup failed" in done.stderr + done.stdout
    assert STRONG not in done.stderr + done.stdout  # a secret is named, never shown


def test_allowed_hosts_come_comma_separated_or_as_json(monkeypatch):
    monkeypatch.setenv("ALLOWED_HOSTS", "cs.tai.example, localhost")
    assert Settings(_env_file=None).allowed_hosts == ["cs.tai.example", "localhost"]
    monkeypatch.setenv("ALLOWED_HOSTS", '["cs.tai.example"]')
    assert Settings(_env_file=None).allowed_hosts == ["cs.tai.example"]


@pytest.mark.parametrize(("env", "says"), [
    ({"PROFILE": "../../etc"}, "error: PROFILE: String should match pattern"),
    ({"PROFILE": "nope"}, "no profile 'nope' (profiles: "),
    ({"HTTP_PORT": "abc"}, "error: HTTP_PORT: Input should be a valid integer"),
])
def test_run_sh_refuses_a_bad_setting_or_profile_before_starting_anything(tmp_path, env, says):
    done = subprocess.run([sys.executable, "-m", "starter.devstack"], cwd=PROJECT_ROOT, capture_output=True,
                          text=True, timeout=120, env=_env(DATA_DIR=str(tmp_path / "data"), **env))
    assert done.returncode == 2, done.stdout + done.stderr
    assert says in done.stdout
    assert "Traceback" not in done.stdout + done.stderr
    assert not (tmp_path / "data").exists()  # nothing was started or created


def test_run_sh_refuses_a_profile_whose_content_does_not_fit(tmp_path):
    """vmcloud without its own help-desk priority map: the shared crm/ mappings name seed 001's P0."""
    import re
    import shutil

    playbooks = tmp_path / "playbooks"
    shutil.copytree(PROJECT_ROOT / "playbooks", playbooks, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    profile = playbooks / "profiles" / "vmcloud" / "profile.yaml"
    text, n = re.subn(r"(?ms)^ticket_priorities:\n(  .*?\n)+", "", profile.read_text())
    assert n == 1
    profile.write_text(text)
    done = subprocess.run([sys.executable, "-m", "starter.devstack"], cwd=PROJECT_ROOT, capture_output=True,
                          text=True, timeout=120, env=_env(DATA_DIR=str(tmp_path / "data"), PROFILE="vmcloud",
                                                           PLAYBOOKS_DIR=str(playbooks)))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "'P0' is not a priority of profile vmcloud" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr
    assert not (tmp_path / "data").exists()
