"""Web pages as a data source: polite fetching, robots.txt, a local cache, and a bounded crawl.

Every request names llmtui in its User-Agent, waits at most `timeout_s`, is retried with exponential
backoff after a timeout, a connection error, HTTP 429 or 5xx, and stops reading at `max_bytes`. Requests to
one host are spaced by `rate_limit_s`. robots.txt is read once per host and obeyed as RFC 9309 says: a 4xx
answer allows everything, a 5xx answer or an unreachable server disallows everything, and every redirect's
target is checked again before it is followed. Pages (and permanent
failures such as 404) are kept in a cache folder, so running a recipe again does not fetch again.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
import urllib.robotparser
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

from llmtui.config.recipe import SourceConfig, WebConfig
from llmtui.data.readers import FileProblem

_RETRY_STATUSES = {408, 425, 429, 500, 502, 503, 504}
_CACHED_FAILURES = {404, 410}  # permanent: worth remembering
_READ_BLOCK = 1 << 16


class FetchError(Exception):
    """A page could not be used; the message is the reason shown in the report."""

    status: int | None = None  # the HTTP status, when the server answered


class _CheckedRedirects(urllib.request.HTTPRedirectHandler):
    """Follows a redirect only where robots.txt of the target allows it (robots.txt itself excepted)."""

    def __init__(self, fetcher: Fetcher):
        self.fetcher = fetcher

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if urllib.parse.urlsplit(newurl).path != "/robots.txt":
            refusal = self.fetcher.refusal(newurl)
            if refusal:
                raise FetchError(f"redirected to {newurl}: {refusal}")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


@dataclass
class Page:
    url: str
    status: int
    content_type: str
    charset: str | None
    body: bytes
    from_cache: bool = False


def default_cache_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "llmtui" / "web"


class Fetcher:
    """Fetches URLs politely; counts network requests and cache hits."""

    def __init__(self, config: WebConfig, sleep: Callable[[float], None] = time.sleep):
        self.config = config
        self.cache_dir = Path(config.cache_dir).expanduser() if config.cache_dir else default_cache_dir()
        self.sleep = sleep
        self.requests = 0
        self.cache_hits = 0
        self._last_request: dict[str, float] = {}
        self._robots: dict[str, urllib.robotparser.RobotFileParser] = {}
        self._robots_unavailable: dict[str, str] = {}  # origin → why its robots.txt could not be read
        self._opener = urllib.request.build_opener(_CheckedRedirects(self))

    # robots.txt ---------------------------------------------------------------------------------
    def allowed(self, url: str) -> bool:
        return self.refusal(url) is None

    def refusal(self, url: str) -> str | None:
        """Why robots.txt forbids `url` (None when it may be fetched)."""
        parts = urllib.parse.urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        parser = self._robots.get(origin)
        if parser is None:
            parser = urllib.robotparser.RobotFileParser(origin + "/robots.txt")
            try:
                page = self.fetch(origin + "/robots.txt")
                parser.parse(page.body.decode("utf-8", errors="replace").splitlines())
            except FetchError as exc:
                status = getattr(exc, "status", None)
                if status is not None and 400 <= status < 500:  # RFC 9309 2.3.1.3: unavailable, crawl freely
                    parser.allow_all = True  # type: ignore[attr-defined]  # read by can_fetch; not in typeshed
                else:  # 2.3.1.4: unreachable (5xx, network): assume complete disallow
                    parser.disallow_all = True  # type: ignore[attr-defined]  # read by can_fetch; not in typeshed
                    self._robots_unavailable[origin] = str(exc)
            self._robots[origin] = parser
        if parser.can_fetch(self.config.user_agent, url):
            return None
        problem = self._robots_unavailable.get(origin)
        return (
            f"robots.txt could not be read ({problem}), so nothing there is fetched"
            if problem
            else "disallowed by robots.txt"
        )

    # Fetching -----------------------------------------------------------------------------------
    def fetch(self, url: str) -> Page:
        cached = self._from_cache(url)
        if cached is not None:
            self.cache_hits += 1
            if cached.status != 200:
                error = FetchError(f"HTTP {cached.status} (cached)")
                error.status = cached.status
                raise error
            return cached
        attempt = 0
        while True:
            try:
                page = self._request(url)
                self._to_cache(url, page)
                return page
            except _Retryable as exc:
                if attempt >= self.config.retries:
                    raise FetchError(f"{exc} (after {attempt + 1} tries)") from None
                self.sleep(self.config.backoff_s * 2**attempt)
                attempt += 1
            except FetchError as exc:
                status = getattr(exc, "status", None)
                if status in _CACHED_FAILURES:
                    self._to_cache(url, Page(url, status, "", None, b""))
                raise

    def _wait_turn(self, host: str) -> None:
        last = self._last_request.get(host)
        if last is not None:
            wait = self.config.rate_limit_s - (time.monotonic() - last)
            if wait > 0:
                self.sleep(wait)
        self._last_request[host] = time.monotonic()

    def _request(self, url: str) -> Page:
        cfg = self.config
        self._wait_turn(urllib.parse.urlsplit(url).netloc)
        self.requests += 1
        request = urllib.request.Request(
            url,
            headers={
                "User-Agent": cfg.user_agent,
                "Accept": "text/html,application/xhtml+xml,text/plain;q=0.9,*/*;q=0.5",
            },
        )
        started = time.monotonic()
        try:
            with self._opener.open(request, timeout=cfg.timeout_s) as response:
                length = response.headers.get("Content-Length")
                if length and length.isdigit() and int(length) > cfg.max_bytes:
                    raise FetchError(f"too large ({int(length):,} bytes, over web.max_bytes={cfg.max_bytes:,})")
                body = bytearray()
                while block := response.read(_READ_BLOCK):
                    body += block
                    if len(body) > cfg.max_bytes:
                        raise FetchError(f"too large (over web.max_bytes={cfg.max_bytes:,} bytes)")
                    if time.monotonic() - started > cfg.timeout_s:
                        raise _Retryable(f"timed out after {cfg.timeout_s:g} s")
                content_type = response.headers.get_content_type()
                charset = response.headers.get_content_charset()
                return Page(response.geturl(), response.status, content_type, charset, bytes(body))
        except urllib.error.HTTPError as exc:
            if exc.code in _RETRY_STATUSES:
                raise _Retryable(f"HTTP {exc.code}") from None
            error = FetchError(f"HTTP {exc.code} {exc.reason}".strip())
            error.status = exc.code
            raise error from None
        except TimeoutError:
            raise _Retryable(f"timed out after {cfg.timeout_s:g} s") from None
        except urllib.error.URLError as exc:
            reason = exc.reason
            if isinstance(reason, (socket.timeout, TimeoutError)):
                raise _Retryable(f"timed out after {cfg.timeout_s:g} s") from None
            raise _Retryable(f"unreachable: {getattr(reason, 'strerror', None) or reason}") from None
        except OSError as exc:
            raise _Retryable(f"unreachable: {exc.strerror or exc}") from None

    # Cache --------------------------------------------------------------------------------------
    def _cache_paths(self, url: str) -> tuple[Path, Path]:
        key = hashlib.sha256(url.encode("utf-8")).hexdigest()
        folder = self.cache_dir / key[:2]
        return folder / f"{key}.json", folder / f"{key}.body"

    def _from_cache(self, url: str) -> Page | None:
        if not self.config.cache:
            return None
        meta_path, body_path = self._cache_paths(url)
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            body = body_path.read_bytes() if meta["status"] == 200 else b""
        except (OSError, ValueError, KeyError):
            return None
        return Page(meta["url"], meta["status"], meta["content_type"], meta.get("charset"), body, from_cache=True)

    def _to_cache(self, url: str, page: Page) -> None:
        if not self.config.cache:
            return
        meta_path, body_path = self._cache_paths(url)
        try:
            meta_path.parent.mkdir(parents=True, exist_ok=True)
            if page.status == 200:
                tmp = body_path.with_suffix(".tmp")
                tmp.write_bytes(page.body)
                os.replace(tmp, body_path)
            meta = {
                "url": page.url,
                "status": page.status,
                "content_type": page.content_type,
                "charset": page.charset,
                "fetched": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }
            tmp = meta_path.with_suffix(".jsontmp")
            tmp.write_text(json.dumps(meta), encoding="utf-8")
            os.replace(tmp, meta_path)
        except OSError:
            pass  # a cache that cannot be written only costs a refetch


class _Retryable(Exception):
    pass


class _LinkParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            href = dict(attrs).get("href")
            if href:
                self.links.append(href)


def page_links(html: str, base_url: str) -> list[str]:
    """Absolute http(s) links of a page, fragments removed, in page order, without repeats."""
    parser = _LinkParser()
    try:
        parser.feed(html)
    except Exception:  # a broken page still gives the links found before the break
        pass
    links = []
    for href in parser.links:
        absolute, _ = urllib.parse.urldefrag(urllib.parse.urljoin(base_url, href.strip()))
        if urllib.parse.urlsplit(absolute).scheme in ("http", "https") and absolute not in links:
            links.append(absolute)
    return links


def page_text(page: Page) -> str:
    """The text of a fetched page: main text of HTML, or the body of a plain-text file."""
    from llmtui.data.readers import decode, html_main_text

    try:
        body, _ = decode(page.body, page.charset or "auto")
    except (FileProblem, LookupError):  # a wrong or unknown charset in the header
        body, _ = decode(page.body, "auto")
    if page.content_type in ("text/html", "application/xhtml+xml"):
        return html_main_text(body, url=page.url)
    return body


def iter_url(
    source: SourceConfig, fetcher: Fetcher, skip: Callable[[str, str], None], stats: dict
) -> Iterator[tuple[str, str]]:
    """(url, text) of a URL source: the page alone, or a breadth-first crawl inside the source's limits."""
    start, _ = urllib.parse.urldefrag(source.path)
    host = urllib.parse.urlsplit(start).netloc
    queue: deque[tuple[str, int]] = deque([(start, 0)])
    seen = {start}
    limit = source.max_pages if source.crawl else 1
    stats.setdefault("pages_requested", 0)
    while queue and stats["pages_requested"] < limit:
        url, depth = queue.popleft()
        refusal = fetcher.refusal(url)
        if refusal:
            skip(url, refusal)
            continue
        stats["pages_requested"] += 1
        try:
            page = fetcher.fetch(url)
        except FetchError as exc:
            skip(url, str(exc))
            continue
        if page.url != url and fetcher.refusal(page.url):  # a cached page that came through a redirect
            skip(url, f"redirected to {page.url}: {fetcher.refusal(page.url)}")
            continue
        kind = page.content_type
        if not (kind.startswith("text/") or kind == "application/xhtml+xml"):
            skip(url, f"unsupported content type {kind}")
            continue
        if b"\x00" in page.body[:8192]:
            skip(url, "binary content")
            continue
        try:
            text = page_text(page)
        except FileProblem as exc:
            skip(url, str(exc))
            continue
        if text.strip():
            yield url, text
        else:
            skip(url, "no main text found" if "html" in kind else "empty page")
        if source.crawl and depth < source.max_depth and "html" in kind:
            html = page.body.decode(page.charset or "utf-8", errors="replace")
            for link in page_links(html, page.url):
                if link in seen or (source.same_domain and urllib.parse.urlsplit(link).netloc != host):
                    continue
                seen.add(link)
                queue.append((link, depth + 1))
