"""A real headless Chromium for tests and benchmarks: Debian's `chromium` driven by Selenium through
`chromium-driver` (`make browser` installs both), plus a loopback web server that records every request.

    with serve(folder) as server, chromium() as driver:
        driver.get(server.url("site/index.html"))
        assert not problems(driver, server)

`problems` lists console errors and failed requests (Chromium's network log and the server's own 4xx/5xx
answers). `python -m tests.browser SITE_ROOT SERVE_ROOT OUT_DIR` saves screenshots of a site's index, first
layer page and first unit page (the README's pictures).
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import os
import shutil
import sys
import threading
from pathlib import Path

__all__ = ["chromium_paths", "serve", "chromium", "problems", "screenshot", "Server"]

BINARIES = ("/usr/bin/chromium", "/usr/bin/chromedriver")


def chromium_paths() -> tuple[str, str] | None:
    """(browser, driver) when Debian's chromium and chromium-driver are installed, else None."""
    found = [p if os.access(p, os.X_OK) else shutil.which(os.path.basename(p)) for p in BINARIES]
    return (found[0], found[1]) if all(found) else None


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass

    def log_request(self, code="-", size="-"):
        self.server.requests.append((self.path, int(code) if str(code).isdigit() else 0))


class Server:
    def __init__(self, httpd):
        self.httpd = httpd
        self.requests: list[tuple[str, int]] = httpd.requests

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{path.lstrip('/')}"

    def failures(self) -> list[str]:
        return [f"{code} {path}" for path, code in self.requests if code >= 400]


@contextlib.contextmanager
def serve(root: str | Path):
    """A threaded static web server for `root` on 127.0.0.1 (a free port), recording (path, status)."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Handler, directory=str(root)))
    httpd.requests = []
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield Server(httpd)
    finally:
        httpd.shutdown()
        httpd.server_close()


@contextlib.contextmanager
def chromium(width: int = 1280, height: int = 900, javascript: bool = True):
    """A headless Chromium session with console and network logging (`javascript=False`: scripts off)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    paths = chromium_paths()
    if paths is None:
        raise RuntimeError("chromium and chromedriver are not installed; run 'make browser'")
    options = webdriver.ChromeOptions()
    options.binary_location = paths[0]
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={width},{height}", "--hide-scrollbars", "--no-first-run"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    if not javascript:
        options.add_experimental_option("prefs", {"profile.managed_default_content_settings.javascript": 2})
    driver = webdriver.Chrome(service=Service(paths[1]), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def problems(driver, server: Server | None = None) -> list[str]:
    """Console errors and failed requests since the last call (the logs are drained)."""
    out = [f"console: {e['message']}" for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
    for entry in driver.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        params = msg.get("params", {})
        if msg.get("method") == "Network.loadingFailed" and not params.get("canceled"):
            out.append(f"request failed: {params.get('errorText')} ({params.get('type')})")
        elif msg.get("method") == "Network.responseReceived" and params["response"]["status"] >= 400:
            out.append(f"HTTP {params['response']['status']}: {params['response']['url']}")
    if server is not None:
        out += [f"server answered {f}" for f in server.failures()]
        server.requests.clear()
    return out


def screenshot(driver, path: str | Path, full_page: bool = False, max_height: int = 4000) -> Path:
    """Save a PNG of the viewport (or of the whole page, up to `max_height` px tall) to `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if full_page:
        height = min(max_height, driver.execute_script("return document.documentElement.scrollHeight"))
        size = driver.get_window_size()
        driver.set_window_size(size["width"], height)
        driver.save_screenshot(str(path))
        driver.set_window_size(size["width"], size["height"])
    else:
        driver.save_screenshot(str(path))
    return path


def _images_loaded(driver, timeout_s: float = 10.0) -> None:
    """Wait until every image of the page in the viewport has finished loading (tiles decode after the load
    event), at most `timeout_s`."""
    import time

    end = time.monotonic() + timeout_s
    script = ("return Array.from(document.images).every(i => i.complete && "
              "(i.naturalWidth > 0 || i.getBoundingClientRect().top > window.innerHeight))")
    while time.monotonic() < end and not driver.execute_script(script):
        time.sleep(0.1)


def _first(pattern: str, root: Path) -> str:
    return sorted(str(p.relative_to(root)) for p in root.glob(pattern))[0]


def main(argv: list[str] | None = None) -> int:
    """Screenshots of a site: index, the first layer page and its first unit page."""
    site, root, out = (Path(a).resolve() for a in (argv or sys.argv[1:]))
    prefix = str(site.relative_to(root))
    layer = _first("*/*/*/index.html", site)
    unit = sorted((site / layer).parent.glob("unit-*.html"), key=lambda p: int(p.stem.split("-")[1]))[0]
    pages = {"index": "index.html", "layer": layer, "unit": str(unit.relative_to(site))}
    with serve(root) as server, chromium() as driver:
        for name, page in pages.items():
            driver.get(server.url(f"{prefix}/{page}"))
            _images_loaded(driver)
            # the unit page down to its top real images and their statistics
            shot = screenshot(driver, out / f"report-{name}.png", full_page=name == "unit", max_height=1500)
            print(shot, problems(driver, server) or "no problems")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
