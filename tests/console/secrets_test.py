"""What ./run.sh leaves lying around (issue 16): no secret or password in any process's command
line or in the logs, what was typed into the e-mail box of a failed login nowhere, and the data
and log folders the owner's alone."""

from __future__ import annotations

import stat
from pathlib import Path

from playwright.sync_api import expect

from starter.console.auth import REFUSED


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_no_secret_in_process_lists_or_logs_and_private_folders(page, console_stack):
    stack = console_stack
    typed = "tr0ub4dor3-typed@into.the.email.box"  # a browser sends only what looks like an e-mail
    page.goto(stack.base_url + "/console/login")
    page.fill("input[name=email]", typed)
    page.fill("input[name=password]", "another secret typed here 99")
    page.click("button[type=submit]")
    expect(page.locator("#problem")).to_have_text(REFUSED)
    secrets = [stack.env["CRM_WEBHOOK_SECRET"], stack.env["NPS_LINK_SECRET"], stack.env["OIDC_CLIENT_SECRET"],
               stack.password, typed, "another secret typed here 99"]

    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        assert not any(s in cmdline for s in secrets), f"a secret is in the command line of process {proc.name}"

    logs = [*(stack.data_dir / "logs").glob("*.log"), stack.log]
    assert len(logs) >= 3
    for log in logs:
        text = log.read_text(errors="replace")
        assert not any(s in text for s in secrets), f"a secret is in {log.name}"
    assert not stack.sql("SELECT 1 FROM audit_log WHERE actor LIKE '%typed%' OR object LIKE '%typed%'"
                         " OR detail LIKE '%typed%'")
    assert stack.sql("SELECT 1 FROM audit_log WHERE action = 'login.failed' AND actor = '(unknown e-mail)'")

    data = stack.data_dir
    assert mode(data) == 0o700 and mode(data / "logs") == 0o700
    for path in [*(data / "logs").glob("*.log"), *data.glob("temporal.db*"), data / "console-login.txt"]:
        assert mode(path) & 0o077 == 0, f"{path.name} is readable by others ({oct(mode(path))})"
    assert (data / "temporal.db").exists()
    mail = data / "mail"
    assert mail.exists() and mode(mail) & 0o077 == 0
