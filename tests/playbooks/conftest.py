"""Each broken-file test works on its own copy of the shipped playbooks folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from playbooks.loader import PLAYBOOKS_DIR


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A private copy of the shipped playbooks folder: the YAML files and templates/."""
    dest = tmp_path / "playbooks"
    shutil.copytree(PLAYBOOKS_DIR, dest, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    assert (dest / "onboarding.yaml").is_file() and (dest / "templates" / "common" / "_layout.html.j2").is_file()
    return dest
