"""`steervit serve`: options and start-up, with uvicorn replaced by a recorder."""
from __future__ import annotations

import pytest

from support import OFFICIAL, TINY_ROBERTA, TRUNK


def test_serve_builds_the_app_and_runs_uvicorn(monkeypatch, capsys):
    import uvicorn
    from fastapi.testclient import TestClient

    from steervit.cli import main

    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append((app, kw)))
    code = main(["serve", "--model", str(OFFICIAL), "--backbone-weights", str(TRUNK),
                 "--text-encoder", str(TINY_ROBERTA), "--port", "8123", "--gate-factor", "0.5"])
    assert code == 0 and len(calls) == 1
    app, options = calls[0]
    assert options["host"] == "127.0.0.1" and options["port"] == 8123
    assert "http://127.0.0.1:8123/" in capsys.readouterr().out
    assert TestClient(app).get("/api/examples").json()["default_gate_factor"] == 0.5


def test_serve_options(capsys):
    from steervit.cli import build_parser

    args = build_parser().parse_args(["serve"])
    assert args.model == "steervit_s14_minilm_offline" and args.port == 7860 and args.host == "127.0.0.1"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--port", "70000"])
    assert "port number" in capsys.readouterr().err
