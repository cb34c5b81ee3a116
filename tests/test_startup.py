"""Start-up checks: no default or short secrets, one session secret for several API processes, all
refused before the API answers (`create_app`, and `qa-service serve` before uvicorn starts).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml
from pydantic import ValidationError

from qa_service.app import create_app
from qa_service.errors import ConfigError
from qa_service.settings import Settings
from tests.conftest import REPO_ROOT, free_port

SHORT = "change-me-please-0123456789abcd"  # 31 bytes
LONG = "k" * 32


@pytest.mark.parametrize("name", ["webhook_secret", "session_secret"])
def test_short_secrets_are_refused_without_being_echoed(name):
    with pytest.raises(ValidationError) as caught:
        Settings(**{name: SHORT})
    message = str(caught.value)
    assert f"QA_{name.upper()} is 31 bytes; it must be at least 32" in message
    assert "secrets.token_urlsafe(32)" in message  # how to make one
    assert SHORT not in message
    assert getattr(Settings(**{name: LONG}), name) == LONG
    assert getattr(Settings(**{name: ""}), name) is None  # an empty variable is unset


def test_a_secret_counts_bytes_not_characters():
    with pytest.raises(ValidationError, match="QA_SESSION_SECRET is 30 bytes"):
        Settings(session_secret="é" * 15)
    assert Settings(session_secret="é" * 16).session_secret == "é" * 16


def test_several_processes_need_one_session_secret(make_settings, monkeypatch):
    monkeypatch.setenv("WEB_CONCURRENCY", "2")
    settings = make_settings()
    assert settings.web_concurrency == 2
    with pytest.raises(ConfigError, match="set QA_SESSION_SECRET, the same in each"):
        create_app(settings, queue=object())
    app = create_app(make_settings(session_secret=LONG), queue=object())
    assert app.state.session_secret == LONG.encode()
    app.state.repo.dispose()


def test_one_process_makes_its_own_secret(make_settings):
    first = create_app(make_settings(), queue=object())
    second = create_app(make_settings(), queue=object())
    assert len(first.state.session_secret) == 32
    assert first.state.session_secret != second.state.session_secret
    for app in (first, second):
        app.state.repo.dispose()


# -- qa-service serve ----------------------------------------------------------------------------

def _serve_env(tmp_path: Path, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QA_") and k != "WEB_CONCURRENCY"}
    env.update({"QA_DATABASE_URL": f"sqlite:///{tmp_path / 'qa.db'}", "QA_STORAGE_DIR": str(tmp_path / "s"),
                "QA_REDIS_URL": "redis://127.0.0.1:1/0", **settings})
    env["PYTHONPATH"] = str(REPO_ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _serve(tmp_path: Path, port: int, *args: str, **settings: str) -> subprocess.Popen[str]:
    """`qa-service serve` on this port in a process group of its own, with these QA_* settings."""
    return subprocess.Popen([sys.executable, "-m", "qa_service", "serve", "--port", str(port), *args],
                            cwd=REPO_ROOT, env=_serve_env(tmp_path, **settings), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _stop(proc: subprocess.Popen[str], sig: int = signal.SIGTERM) -> str:
    """Stop the server and its worker processes; what it wrote to stderr."""
    if proc.poll() is None:
        os.killpg(proc.pid, sig)
    try:
        return proc.communicate(timeout=20)[1]
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # its workers hold stderr open too
        return proc.communicate()[1]


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.parametrize(("args", "settings", "message"), [
    (["--workers", "2"], {}, "2 API processes serve"),
    ([], {"WEB_CONCURRENCY": "3"}, "3 API processes serve"),
    ([], {"QA_SESSION_SECRET": SHORT}, "QA_SESSION_SECRET is 31 bytes"),
    ([], {"QA_WEBHOOK_SECRET": "change-me"}, "QA_WEBHOOK_SECRET is 9 bytes"),
    ([], {"QA_TRUSTED_HOSTS": '["qa.example.com:443"]'}, "QA_TRUSTED_HOSTS"),
])
def test_serve_refuses_to_start_misconfigured(tmp_path, args, settings, message):
    port = free_port()
    proc = _serve(tmp_path, port, *args, **settings)
    try:
        _, stderr = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        _stop(proc, signal.SIGKILL)
        pytest.fail(f"serve started with {settings or args}")
    assert proc.returncode == 2
    assert stderr.startswith("error: ") and message in stderr and "Traceback" not in stderr
    assert SHORT not in stderr
    assert not _listening(port)


@pytest.mark.slow
def test_two_processes_share_sessions_and_sign_out(tmp_path):
    """`serve --workers 2` with QA_SESSION_SECRET: every page load of a session is signed in, on
    fresh connections spread over both processes, and none is after signing out in one of them."""
    from qa_service.auth import create_key
    from qa_service.storage import open_repository
    from tests.test_web import form_token

    repo = open_repository(_serve_env(tmp_path)["QA_DATABASE_URL"])
    key = create_key(repo, "supervisor", "two processes")
    repo.dispose()
    port = free_port()
    proc = _serve(tmp_path, port, "--workers", "2", QA_SESSION_SECRET=LONG)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while not _listening(port):
            assert proc.poll() is None and time.monotonic() < deadline, "serve did not start"
            time.sleep(0.2)
        with httpx.Client(base_url=base) as browser:
            page = browser.get("/")
            signed = browser.post("/sign-in", data={"api_key": key, "csrf": form_token(page.text)})
            assert signed.status_code == 303
            cookies = {"qa_session": browser.cookies["qa_session"]}

        def load(path: str) -> int:
            # A new connection each time, so the kernel hands the loads to both processes.
            with httpx.Client(base_url=base, cookies=cookies) as fresh:
                return fresh.get(path).status_code

        assert [load("/agents") for _ in range(12)] == [200] * 12
        with httpx.Client(base_url=base, cookies=cookies) as browser:
            token = form_token(browser.get("/agents").text)
            assert browser.post("/sign-out", data={"csrf": token}).status_code == 303
        assert [load("/agents") for _ in range(12)] == [303] * 12
    finally:
        _stop(proc)


def test_serve_notes_hosts_it_will_refuse(tmp_path):
    # Listening on every address with the loopback names only: said at start, not found out later.
    port = free_port()
    proc = _serve(tmp_path, port, "--host", "0.0.0.0")
    try:
        deadline = time.monotonic() + 60
        while not _listening(port):
            assert proc.poll() is None and time.monotonic() < deadline, "serve did not start"
            time.sleep(0.2)
        assert httpx.get(f"http://127.0.0.1:{port}/", headers={"Host": "qa.example.com"}).status_code == 400
    finally:
        stderr = _stop(proc)
    assert "QA_TRUSTED_HOSTS allows localhost, 127.0.0.1, [::1] only" in stderr


# -- docker ------------------------------------------------------------------------------------

def test_compose_has_no_default_secrets():
    compose = (REPO_ROOT / "docker" / "compose.yaml").read_text()
    assert "change-me" not in compose
    # Every secret is required (${VAR:?message}): compose refuses to start without it.
    secrets = re.findall(r"\$\{(QA_\w*SECRET\w*)([^}]*)\}", compose)
    assert {name for name, _ in secrets} >= {"QA_WEBHOOK_SECRET", "QA_SESSION_SECRET"}
    for name, rest in secrets:
        assert rest.startswith(":?"), f"{name} has a default or may be empty: {rest!r}"
    doc = yaml.safe_load(compose)
    api = doc["services"]["api"]
    assert "--workers" in api["command"]  # more than one process: the session secret is needed
    assert api["environment"]["QA_SESSION_SECRET"].startswith("${QA_SESSION_SECRET:?")
    assert "QA_SESSION_SECRET" not in doc["services"]["worker"]["environment"]  # only where it is used
