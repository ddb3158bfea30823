"""One version: `steervit.__version__` is the source; package metadata, the CLI and the changelog agree."""
from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pytest

import steervit
from steervit.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_metadata_and_cli_report_the_package_version(capsys):
    # Installed metadata is written at install time: after changing __version__, reinstall (pip install -e .).
    assert importlib.metadata.version("steervit") == steervit.__version__
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"steervit {steervit.__version__}"


def test_pyproject_reads_the_version_from_the_package():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in config["project"] and "version" in config["project"]["dynamic"]
    assert config["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "steervit.__version__"}


def test_changelog_has_the_current_version():
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert "## [Unreleased]" in changelog
    assert f"## [{steervit.__version__}]" in changelog
