"""bin/render-nginx: placeholders, precedence, defaults consistent with the app, refusal of unsafe values."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from refapi.config import Settings
from tests.support.processes import REPO

RENDER = str(REPO / "bin" / "render-nginx")


def render(*args: str, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    # A clean environment, so placeholders set in the caller's (MAX_REQUEST_SIZE, TLS_DIR) do not leak in.
    base = {"PATH": os.environ["PATH"]}
    return subprocess.run(
        [sys.executable, RENDER, *args], env={**base, **(env or {})}, capture_output=True, text=True, check=False
    )


def directive(config: str, name: str) -> list[str]:
    return re.findall(rf"^[ \t]*{name}[ \t]+([^;{{\n]+);", config, re.MULTILINE)


def test_defaults_agree_with_the_apps_settings() -> None:
    listed = dict(line.split("=", 1) for line in render("--list").stdout.splitlines())
    settings = Settings()
    assert listed["NGINX_HTTP_PORT"] == str(settings.http_port)
    assert listed["NGINX_HTTPS_PORT"] == str(settings.https_port)
    assert listed["MAX_REQUEST_SIZE"] == str(settings.max_request_size)


def test_every_placeholder_is_filled() -> None:
    result = render()
    assert result.returncode == 0, result.stderr
    assert not re.search(r"\$\{[A-Z]", result.stdout)
    assert directive(result.stdout, "listen") == ["8001", "8444 ssl http2"]
    assert directive(result.stdout, "client_max_body_size") == ["10485760"]
    assert '"details":{"max_bytes":10485760}' in result.stdout


def test_arguments_win_over_the_environment_which_wins_over_defaults() -> None:
    env = {"NGINX_HTTP_PORT": "9001", "NGINX_HTTPS_PORT": "9444", "MAX_REQUEST_SIZE": "2048"}
    result = render("NGINX_HTTPS_PORT=10444", env=env)
    assert result.returncode == 0, result.stderr
    assert directive(result.stdout, "listen") == ["9001", "10444 ssl http2"]
    assert directive(result.stdout, "client_max_body_size") == ["2048"]
    assert directive(result.stdout, "server") == ["127.0.0.1:8000"]


def test_writes_the_file_given_with_out(tmp_path: Path) -> None:
    out = tmp_path / "nginx.conf"
    result = render("--out", str(out), "REFAPI_UPSTREAM=unix:/run/refapi/gunicorn.sock")
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert directive(out.read_text(), "server") == ["unix:/run/refapi/gunicorn.sock"]


def test_unknown_names_and_unsafe_values_are_refused() -> None:
    misspelt = render("NGINX_HTTP_PROT=8001")
    assert misspelt.returncode == 1
    assert "NGINX_HTTP_PROT" in misspelt.stderr
    for value in ("8001; include /etc/passwd", "", "8001 }", "$host"):
        refused = render(f"NGINX_HTTP_PORT={value}")
        assert refused.returncode == 1, value
        assert "NGINX_HTTP_PORT" in refused.stderr
        assert refused.stdout == ""
