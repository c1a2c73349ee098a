"""URL sources against a local http.server on 127.0.0.1: robots.txt, links, a 404, a slow page, limits, cache."""

from __future__ import annotations

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from llmtui.config import recipe_from_dict
from llmtui.data.prepare import prepare_data
from llmtui.errors import DataError

TOPICS = ["rivers", "mountains", "forests", "deserts", "oceans", "glaciers", "volcanoes", "islands"]


def article(topic: str, links: list[str] = ()) -> bytes:
    paragraphs = "".join(
        f"<p>Paragraph {i} about {topic}: the {topic} of the world differ in size, age and history, and people "
        f"who study {topic} write long reports about sample number {i} and what it shows.</p>"
        for i in range(6)
    )
    nav = "".join(f'<a href="{link}">{link}</a> ' for link in links)
    return (
        f"<html><head><title>{topic}</title></head><body><nav>{nav}</nav><article><h1>All about {topic}</h1>"
        f"{paragraphs}</article><footer>site footer</footer></body></html>"
    ).encode()


class Site:
    """A tiny web site; remembers every request (path and User-Agent)."""

    def __init__(self):
        self.requests: list[tuple[str, str]] = []
        self.flaky_failures = 1
        self.robots_status = 200  # what /robots.txt answers
        site = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                site.requests.append((self.path, self.headers.get("User-Agent", "")))
                site.route(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def route(self, h: BaseHTTPRequestHandler) -> None:
        pages = {
            "/": article(
                "rivers",
                [
                    "/a.html",
                    "/b.html",
                    "/private/secret.html",
                    "/missing.html",
                    "/slow.html",
                    "/big.html",
                    "http://elsewhere.invalid/page.html",
                    "/a.html#section",
                ],
            ),
            "/a.html": article("mountains", ["/c.html", "/notes.txt"]),
            "/b.html": article("forests", ["/"]),
            "/c.html": article("deserts"),
            "/private/secret.html": article("oceans"),
        }
        if h.path == "/robots.txt":
            self.send(
                h,
                self.robots_status,
                b"User-agent: *\nDisallow: /private/\n" if self.robots_status == 200 else b"no robots here",
                "text/plain",
            )
        elif h.path in ("/go-private", "/go-public"):
            h.send_response(302)
            h.send_header("Location", "/private/secret.html" if h.path == "/go-private" else "/c.html")
            h.send_header("Content-Length", "0")
            h.end_headers()
        elif h.path in pages:
            self.send(h, 200, pages[h.path], "text/html; charset=utf-8")
        elif h.path == "/notes.txt":
            self.send(h, 200, b"Plain notes about glaciers and the ice they leave behind.\n", "text/plain")
        elif h.path == "/slow.html":
            time.sleep(1.5)
            self.send(h, 200, article("volcanoes"), "text/html")
        elif h.path == "/big.html":
            self.send(h, 200, b"<html><body>" + b"<p>word</p>" * 20000 + b"</body></html>", "text/html")
        elif h.path == "/flaky.txt":
            if self.flaky_failures:
                self.flaky_failures -= 1
                self.send(h, 503, b"busy", "text/plain")
            else:
                self.send(h, 200, b"Islands come in every size, from rocks to continents.\n", "text/plain")
        else:
            self.send(h, 404, b"not found", "text/plain")

    @staticmethod
    def send(h: BaseHTTPRequestHandler, status: int, body: bytes, content_type: str) -> None:
        try:
            h.send_response(status)
            h.send_header("Content-Type", content_type)
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout test)

    def paths(self) -> list[str]:
        return [p for p, _ in self.requests]


@pytest.fixture
def site():
    s = Site()
    yield s
    s.server.shutdown()
    s.server.server_close()


def web_config(tmp_path, sources, **web):
    settings = {
        "timeout_s": 0.5,
        "retries": 0,
        "backoff_s": 0.01,
        "rate_limit_s": 0.0,
        "max_bytes": 50_000,
        "cache_dir": str(tmp_path / "cache"),
        **web,
    }
    return recipe_from_dict({"data": {"sources": sources, "web": settings, "val_fraction": 0.2}}).data


def test_crawl_obeys_robots_depth_domain_and_reports_failures(tmp_path, site):
    config = web_config(tmp_path, [{"path": site.base + "/", "crawl": True, "max_depth": 1, "max_pages": 20}])
    report = prepare_data(config, 0, tmp_path / "out", tmp_path)
    paths = site.paths()
    assert "/private/secret.html" not in paths  # robots.txt
    assert "/c.html" not in paths and "/notes.txt" not in paths  # two links away: beyond max_depth = 1
    assert paths.count("/a.html") == 1  # the #section link is the same page
    assert all("llmtui" in agent for _, agent in site.requests)
    assert report.documents_read == 3  # /, a, b
    reasons = {s["path"].removeprefix(site.base): s["reason"] for s in report.skipped}
    assert reasons["/private/secret.html"] == "disallowed by robots.txt"
    assert reasons["/missing.html"].startswith("HTTP 404")
    assert "timed out" in reasons["/slow.html"]
    assert "too large" in reasons["/big.html"]
    assert not any("elsewhere" in p for p in reasons)  # another host is never requested
    text = (tmp_path / "out" / "train.jsonl").read_text() + (tmp_path / "out" / "val.jsonl").read_text()
    assert "All about mountains" in text and "site footer" not in text  # main text only


def test_crawl_stays_within_page_limit(tmp_path, site):
    config = web_config(tmp_path, [{"path": site.base + "/", "crawl": True, "max_depth": 5, "max_pages": 2}])
    report = prepare_data(config, 0, tmp_path / "out", tmp_path)
    page_requests = [p for p in site.paths() if p != "/robots.txt"]
    assert page_requests == ["/", "/a.html"]
    assert report.per_source[site.base + "/"]["pages_requested"] == 2


def test_rerun_reads_the_cache_and_retries_with_backoff(tmp_path, site):
    sources = [site.base + "/a.html", site.base + "/notes.txt", site.base + "/flaky.txt", site.base + "/gone.html"]
    config = web_config(tmp_path, sources, retries=2)
    first = prepare_data(config, 0, tmp_path / "one", tmp_path)
    assert first.documents_read == 3 and first.skipped[0]["reason"].startswith("HTTP 404")
    assert site.paths().count("/flaky.txt") == 2  # a 503, then a retry that worked
    seen = len(site.requests)
    second = prepare_data(config, 0, tmp_path / "two", tmp_path)
    assert len(site.requests) == seen  # nothing fetched again, not even the 404 or robots.txt
    assert second.web["requests"] == 0 and second.web["cache_hits"] >= 4
    assert (tmp_path / "one" / "train.jsonl").read_text() == (tmp_path / "two" / "train.jsonl").read_text()


def test_rate_limit_spaces_requests(tmp_path, site):
    config = web_config(
        tmp_path, [site.base + "/a.html", site.base + "/b.html", site.base + "/c.html"], rate_limit_s=0.3, cache=False
    )
    started = time.monotonic()
    prepare_data(config, 0, tmp_path / "out", tmp_path)
    assert time.monotonic() - started >= 0.9  # robots.txt + 3 pages: three waits of 0.3 s


def test_unreachable_host_is_a_clear_error(tmp_path):
    with socket.socket() as s:  # a port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = web_config(tmp_path, [f"http://127.0.0.1:{port}/page.html"])
    with pytest.raises(DataError, match="no document could be read.*unreachable"):
        prepare_data(config, 0, tmp_path / "out", tmp_path)


@pytest.mark.parametrize("status", [500, 503])
def test_robots_txt_with_a_server_error_disallows_everything(tmp_path, site, status):
    """RFC 9309 2.3.1.4: an unreachable robots.txt (5xx) means complete disallow: no page is requested."""
    site.robots_status = status
    config = web_config(tmp_path, [site.base + "/a.html", site.base + "/notes.txt"], cache=False)
    with pytest.raises(DataError, match="robots.txt could not be read"):
        prepare_data(config, 0, tmp_path / "out", tmp_path)
    assert set(site.paths()) == {"/robots.txt"}


def test_unreachable_robots_txt_disallows_everything(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = web_config(tmp_path, [f"http://127.0.0.1:{port}/page.html"])
    with pytest.raises(DataError, match="robots.txt could not be read .*unreachable.*nothing there is fetched"):
        prepare_data(config, 0, tmp_path / "out", tmp_path)


@pytest.mark.parametrize("status", [401, 403, 404])
def test_robots_txt_with_a_client_error_allows_everything(tmp_path, site, status):
    """RFC 9309 2.3.1.3: a 4xx robots.txt is "unavailable": the crawler may access any resource."""
    site.robots_status = status
    config = web_config(tmp_path, [site.base + "/private/secret.html", site.base + "/a.html"], cache=False)
    report = prepare_data(config, 0, tmp_path / "out", tmp_path)
    assert report.documents_read == 2 and "/private/secret.html" in site.paths()


def test_redirects_are_checked_against_robots_txt(tmp_path, site):
    config = web_config(tmp_path, [site.base + "/go-private", site.base + "/go-public", site.base + "/a.html"])
    report = prepare_data(config, 0, tmp_path / "out", tmp_path)
    assert "/private/secret.html" not in site.paths()  # the redirect was not followed
    assert "/c.html" in site.paths() and report.documents_read == 2
    reasons = {s["path"].removeprefix(site.base): s["reason"] for s in report.skipped}
    assert reasons["/go-private"] == f"redirected to {site.base}/private/secret.html: disallowed by robots.txt"
