"""`llmtui wizard` and `llmtui web` from the command line; the web page in headless Chromium where one exists."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llmtui.cli.app import app

ROOT = Path(__file__).resolve().parents[1]


def test_wizard_and_web_are_commands():
    runner = CliRunner()
    for command in ("wizard", "web"):
        result = runner.invoke(app, [command, "--help"])
        assert result.exit_code == 0, result.output
    assert "127.0.0.1" in runner.invoke(app, ["web", "--help"]).output


def test_wizard_on_a_missing_path_is_one_clear_error(tmp_path):
    result = CliRunner().invoke(app, ["wizard", str(tmp_path / "nope.toml")])
    assert result.exit_code == 1
    assert "no recipe or run folder at" in result.output
    assert "Traceback" not in result.output


def test_help_does_not_import_textual_or_keras():
    code = (
        "import sys; from llmtui.cli.app import app; "
        "print(sorted(m for m in ('textual', 'keras', 'tensorflow') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def _web(tmp_path, *options: str):
    """`llmtui web` on a free loopback port: yields (the address it printed, token included; its port; the
    process) and stops it afterwards."""
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "llmtui", "web", "--port", str(port), *options],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        printed = []
        while not any("token=" in line for line in printed):
            line = process.stdout.readline().decode("utf-8", "replace")
            if not line:
                pytest.fail(f"llmtui web stopped: {''.join(printed)}")
            printed.append(line)
        url = re.search(r"(http://\S+)", printed[-1]).group(1)
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(url, timeout=2):
                    break
            except urllib.error.HTTPError:
                raise
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"llmtui web did not answer on {url}: {''.join(printed)}")
                time.sleep(0.3)
        yield url, port, process, "".join(printed)
    finally:
        os.killpg(process.pid, signal.SIGTERM)  # the server and the app sessions it started
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


@pytest.fixture
def web_server(tmp_path):
    """`llmtui web` on a free loopback port; yields its address (with the token) and its page."""
    with _web(tmp_path) as (url, _, _, _):
        with urllib.request.urlopen(url, timeout=10) as response:
            yield url, response.read().decode("utf-8")


def _status(url: str, headers: dict | None = None) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_web_serves_the_app_on_loopback(web_server):
    url, page = web_server
    assert "xterm" in page  # the terminal the browser draws the app in
    port = urllib.parse.urlsplit(url).port
    assert f'data-session-websocket-url="ws://127.0.0.1:{port}/ws"' in page


def test_web_refuses_a_missing_or_wrong_token_and_other_sites(web_server):
    """The token is needed for the page and the websocket; another site's page (its Origin) or another host
    name (DNS rebinding) is refused even with it."""
    import asyncio

    import aiohttp

    url, _ = web_server
    parts = urllib.parse.urlsplit(url)
    base = f"http://{parts.netloc}/"
    token = urllib.parse.parse_qs(parts.query)["token"][0]
    assert _status(url) == 200
    assert _status(base) == 403
    assert _status(base + "?token=" + token[:-1] + "x") == 403
    assert _status(url, {"Origin": "http://evil.example"}) == 403
    assert _status(url, {"Host": f"evil.example:{parts.port}"}) == 403
    assert _status(url, {"Origin": f"http://{parts.netloc}"}) == 200
    assert _status(base + "static/js/textual.js") == 200  # the page's script: public, no data

    async def handshake(query: str, headers: dict) -> int:
        async with aiohttp.ClientSession() as session:
            try:
                async with session.ws_connect(f"ws://{parts.netloc}/ws{query}", headers=headers):
                    return 101
            except aiohttp.WSServerHandshakeError as exc:
                return exc.status

    async def handshakes() -> list[int]:
        return [
            await handshake("", {}),
            await handshake("?token=nope", {}),
            await handshake(f"?token={token}", {"Origin": "http://evil.example"}),
        ]

    assert asyncio.run(handshakes()) == [403, 403, 403]


def test_web_caps_the_wizard_sessions(tmp_path):
    import asyncio

    import aiohttp

    with _web(tmp_path, "--max-sessions", "1") as (url, port, _, _):
        token = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)["token"][0]

        async def two_sessions() -> int:
            async with aiohttp.ClientSession() as session:
                async with session.ws_connect(f"ws://127.0.0.1:{port}/ws?token={token}"):
                    try:
                        async with session.ws_connect(f"ws://127.0.0.1:{port}/ws?token={token}"):
                            return 101
                    except aiohttp.WSServerHandshakeError as exc:
                        return exc.status

        assert asyncio.run(two_sessions()) == 503


def test_web_refuses_a_remote_host_without_allow_remote_and_a_busy_port(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    refused = subprocess.run(
        [sys.executable, "-m", "llmtui", "web", "--host", "0.0.0.0"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 1
    assert "--host 0.0.0.0 would let other machines" in refused.stderr and "--allow-remote" in refused.stderr
    assert "Traceback" not in refused.stderr
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        taken = subprocess.run(
            [sys.executable, "-m", "llmtui", "web", "--port", str(port)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert taken.returncode == 1
    assert f"cannot listen on 127.0.0.1 port {port}" in taken.stderr and "Traceback" not in taken.stderr
    invalid = subprocess.run(
        [sys.executable, "-m", "llmtui", "web", "--port", "70000"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert invalid.returncode == 2 and "65535" in invalid.stderr


def test_web_allow_remote_warns(tmp_path):
    with _web(tmp_path, "--host", "0.0.0.0", "--allow-remote") as (_, _, _, printed):
        assert "warning: --allow-remote" in printed


def test_web_session_runs_the_wizard(web_server):
    """What the browser does, without one: open the page's websocket and read the app's screen from it."""
    import asyncio

    url, _ = web_server
    screen = asyncio.run(read_screen(url, "Tiny run"))
    assert "Tiny run" in screen and "Playground" in screen


@pytest.fixture
def running_run(tmp_path):
    """A long tiny run started from the shell (`llmtui run`), training by the time it is yielded; stopped after."""
    import tomli_w

    from tests.helpers import tiny_recipe_dict, write_corpus

    write_corpus(tmp_path / "corpus")
    recipe = tiny_recipe_dict(
        Path("corpus"), Path("runs"), run={"name": "long"}, train={"steps": 5000, "checkpoint_every": 5000}
    )
    (tmp_path / "long.toml").write_text(tomli_w.dumps(recipe), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with open(tmp_path / "run.out", "wb") as out:
        run = subprocess.Popen(
            [sys.executable, "-m", "llmtui", "run", "long.toml"],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        events = tmp_path / "runs" / "long" / "events.jsonl"
        deadline = time.monotonic() + 240
        while not (events.is_file() and '"split": "train"' in events.read_text(encoding="utf-8")):
            assert run.poll() is None and time.monotonic() < deadline, (tmp_path / "run.out").read_text()
            time.sleep(0.5)
        yield run
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)


def test_web_session_attaches_to_a_running_run(tmp_path, running_run):
    """`llmtui web runs/NAME` on a run that a shell started: the browser's wizard follows its training."""
    import asyncio

    from llmtui.runcontrol import write_control

    with _web(tmp_path, "runs/long") as (url, _, _, _):
        screen = asyncio.run(read_screen(url, "running: train"))
    assert "running: train" in screen and "step " in screen
    write_control(tmp_path / "runs" / "long", stop=True)  # stopped from outside, as the wizard does
    assert running_run.wait(timeout=120) == 130


async def read_screen(url: str, until: str) -> str:
    """What the browser does, without one: open the page's websocket and read the app's output until `until`."""
    import asyncio

    import aiohttp

    parts = urllib.parse.urlsplit(url)
    seen = ""
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(f"ws://{parts.netloc}/ws?width=100&height=32&{parts.query}") as ws:
            deadline = time.monotonic() + 90
            while until not in seen and time.monotonic() < deadline:
                try:
                    message = await ws.receive(timeout=5)
                except asyncio.TimeoutError:
                    continue
                if message.type in (aiohttp.WSMsgType.BINARY, aiohttp.WSMsgType.TEXT):
                    data = message.data
                    seen += data.decode("utf-8", "ignore") if isinstance(data, bytes) else data
                elif message.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                    break
            await ws.close()
    return seen


def _chromium():
    """Playwright's Chromium, or the binary LLMTUI_CHROMIUM names (.ci/run takes one from npm, offline)."""
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    executable = os.environ.get("LLMTUI_CHROMIUM") or None
    manager = playwright.sync_playwright().start()
    try:
        # A single process without the zygote: what a headless shell build needs in a container.
        browser = manager.chromium.launch(
            headless=True,
            executable_path=executable,
            args=["--no-sandbox", "--no-zygote", "--single-process", "--disable-gpu"] if executable else [],
        )
    except Exception as exc:  # no browser downloaded (`python -m playwright install chromium` needs the network)
        manager.stop()
        pytest.skip(f"no headless Chromium available: {str(exc).splitlines()[0]}")
    return manager, browser


def test_web_page_runs_the_app_in_headless_chromium(web_server):
    url, _ = web_server
    manager, browser = _chromium()
    try:
        page = browser.new_page()
        parts = urllib.parse.urlsplit(url)
        refused = page.goto(f"http://{parts.netloc}/")  # without the token
        assert refused.status == 403 and "token" in page.content()
        frames: list = []
        page.on("websocket", lambda ws: ws.on("framereceived", lambda payload: frames.append(payload)))
        page.goto(url)
        page.wait_for_selector(".xterm", timeout=30_000)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any("llmtui" in str(f) for f in frames):
            page.wait_for_timeout(500)
        assert any("llmtui" in str(f) for f in frames), "the app's screen never reached the browser"
    finally:
        browser.close()
        manager.stop()


def test_headless_chromium_attaches_to_a_running_run(tmp_path, request):
    manager, browser = _chromium()
    try:
        request.getfixturevalue("running_run")
        with _web(tmp_path, "runs/long") as (url, _, _, _):
            page = browser.new_page()
            frames: list = []
            page.on("websocket", lambda ws: ws.on("framereceived", lambda payload: frames.append(str(payload))))
            page.goto(url)
            page.wait_for_selector(".xterm", timeout=30_000)
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline and "running: train" not in "".join(frames):
                page.wait_for_timeout(500)
            assert "running: train" in "".join(frames), "the run's progress never reached the browser"
    finally:
        browser.close()
        manager.stop()
