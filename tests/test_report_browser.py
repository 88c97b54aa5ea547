"""`neuron-atlas report` end to end, in a real headless Chromium (Debian's chromium + chromium-driver, installed
by `make browser`): a site generated from a small real run (atlas, topk, nearest and inverse on the tiny
self-loading net) loads with no console error and no failed request, every link and image resolves, the
jump box and the arrow keys reach the right unit, the pages read without JavaScript and from disk; the
facets, caricatures, top-k view toggle and index strips of a tinynet run (tests/report_pages.facets_out) show
loaded images, over HTTP and from file://; and the site generated from and onto the S3 server resolves there
and loads from it. Screenshots of each page are
saved under the folder printed at the start (REPORT_SCREENSHOTS to choose it)."""

from __future__ import annotations

import json
import os
import posixpath
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from urllib.parse import urldefrag, urlsplit

import pytest

from tests.browser import chromium, chromium_paths, problems, screenshot, serve
from tests.helpers import run_cli
from tests.report_pages import FACETS_LAYER, PageLinks, facets_out

pytestmark = pytest.mark.integration

NET = ["--model", "tests.selfloading_net:ONetLike", "--input-size", "48"]
SNAPSHOT = "tests.selfloading_net.ONetLike/built-e89b9771"
CONV4 = f"site/{SNAPSHOT}/conv4"


@pytest.fixture(scope="module", autouse=True)
def need_chromium():
    if chromium_paths() is None:
        message = "chromium and chromium-driver are not installed: run 'make browser'"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """A small real run: 4 units x 2 seeds in two layers, their top-3 real images, nearest neighbours in two
    spaces and an inverse set of conv4 unit 1; then the site."""
    root = tmp_path_factory.mktemp("report-run")
    out = str(root / "out")
    run_cli("atlas", *NET, "--layers", "conv4,dense5", "--units", "0:4", "--seeds", "2", "--steps", "3",
            "--batch-size", "4", "--out", out, cwd=root)
    run_cli("topk", *NET, "--layers", "conv4,dense5", "--units", "0:4", "--images", "offline-photos", "--k", "3",
            "--out", out, cwd=root)
    run_cli("nearest", "--atlas", out, *NET, "--images", "offline-photos", "--spaces", "pixel,conv4", cwd=root)
    run_cli("inverse", *NET, "--generator", "tiny", "--generator-weights", "random", "--code-bound", "3",
            "--constraint", "conv4:1:-3:-1", "--k", "2", "--n", "4", "--out", out, cwd=root)
    report = run_cli("report", out, cwd=root)
    assert "written" in report.stdout and "http.server" in report.stdout
    return root


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    folder = Path(os.environ.get("REPORT_SCREENSHOTS") or tmp_path_factory.mktemp("report-screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _settle(driver) -> None:
    """Open every <details>, scroll to the bottom (lazy images load) and wait until every image has loaded or
    failed."""
    driver.execute_script("document.querySelectorAll('details').forEach(d => d.open = true);"
                          "window.scrollTo(0, document.documentElement.scrollHeight)")
    deadline = time.time() + 10
    while time.time() < deadline and not driver.execute_script(
            "return Array.from(document.images).every(i => i.complete)"):
        time.sleep(0.1)
    driver.execute_script("window.scrollTo(0, 0)")


def _targets(driver) -> list[str]:
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('a[href], link[href], img[src], script[src], source[src]'))"
        ".map(e => e.href || e.src)")


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(urldefrag(url)[0], timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


PAGES = {"index": "site/index.html", "layer": f"{CONV4}/index.html", "unit": f"{CONV4}/unit-1.html"}


def test_pages_load_without_errors_and_every_link_resolves(small_run, shots, capsys):
    with capsys.disabled():
        print(f"\nreport screenshots: {shots}")
    with serve(small_run / "out") as server, chromium() as driver:
        for name, page in PAGES.items():
            driver.get(server.url(page))
            _settle(driver)
            assert problems(driver, server) == [], name
            broken = driver.execute_script(
                "return Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src)")
            assert broken == [], name
            targets = _targets(driver)
            assert targets and all(t.startswith(server.url("")) or t.startswith("data:") for t in targets)
            assert [t for t in targets if not t.startswith("data:") and _status(t) != 200] == [], name
            assert screenshot(driver, shots / f"report-{name}.png", full_page=True).stat().st_size > 10_000
        text = driver.find_element("tag name", "main").text
        for section in ("Preferred inputs", "Top real images", "Nearest real images", "Inverse sets"):
            assert section in text
        alts = driver.execute_script("return Array.from(document.images).map(i => i.alt)")
        assert all(alts) and any("unit 1, seed 0" in a and "activation" in a for a in alts)


def test_jump_box_and_arrow_keys_reach_the_right_unit(small_run):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    with serve(small_run / "out") as server, chromium() as driver:
        driver.get(server.url(PAGES["layer"]))
        box = driver.find_element(By.ID, "jump-unit")
        assert box.is_displayed()
        box.send_keys("3", Keys.ENTER)
        WebDriverWait(driver, 10).until(lambda d: d.current_url.endswith("/conv4/unit-3.html"))
        assert driver.find_element(By.TAG_NAME, "h1").text.startswith("Unit 3")
        driver.find_element(By.TAG_NAME, "body").send_keys(Keys.ARROW_LEFT)
        WebDriverWait(driver, 10).until(lambda d: d.current_url.endswith("/conv4/unit-2.html"))
        driver.find_element(By.TAG_NAME, "body").send_keys("/")
        assert driver.switch_to.active_element.get_attribute("id") == "jump-unit"
        driver.switch_to.active_element.send_keys("99", Keys.ENTER)
        status = driver.find_element(By.CSS_SELECTOR, ".jump-status")
        WebDriverWait(driver, 5).until(lambda d: "not in this layer" in status.text)
        assert driver.current_url.endswith("/conv4/unit-2.html")
        driver.get(server.url(PAGES["layer"]))
        first = driver.find_element(By.CSS_SELECTOR, "#grid .tile")
        first.send_keys(Keys.ARROW_RIGHT)
        assert driver.switch_to.active_element.get_attribute("href").endswith("unit-1.html")
        driver.switch_to.active_element.send_keys(Keys.ENTER)
        WebDriverWait(driver, 10).until(lambda d: d.current_url.endswith("/conv4/unit-1.html"))
        assert problems(driver, server) == []


def test_pages_read_without_javascript_and_from_disk(small_run):
    from selenium.webdriver.common.by import By

    with chromium(javascript=False) as driver:
        driver.get((small_run / "out" / PAGES["unit"]).as_uri())
        assert driver.find_element(By.TAG_NAME, "h1").text.startswith("Unit 1")
        assert not driver.find_element(By.CSS_SELECTOR, "form.jump").is_displayed()
        _settle(driver)
        assert driver.execute_script("return Array.from(document.images).every(i => i.naturalWidth > 0)")
        driver.find_element(By.CSS_SELECTOR, "a[rel=next]").click()
        assert driver.current_url.endswith("/conv4/unit-2.html")
        driver.find_element(By.LINK_TEXT, "conv4").click()
        assert len(driver.find_elements(By.CSS_SELECTOR, "#grid .tile")) == 4
        assert problems(driver) == []


def _resolve(page_key: str, url: str) -> str | None:
    parts = urlsplit(url)
    if parts.scheme or not parts.path:
        return None
    return posixpath.normpath(posixpath.join(posixpath.dirname(page_key), urllib.parse.unquote(parts.path)))


def _unresolved(s3, bucket_prefix: str) -> list[str]:
    """Links of every page under `bucket_prefix` (a site on the S3 server) that name no object."""
    s3.fs.invalidate_cache()
    keys = set(s3.fs.find(bucket_prefix.split("/")[0]))
    bad = []
    for page in (k for k in keys if k.startswith(bucket_prefix) and k.endswith(".html")):
        parser = PageLinks()
        parser.feed(s3.fs.cat_file(page).decode())
        for _, url in parser.links:
            target = _resolve(page, url)
            if target is not None and target not in keys:
                bad.append(f"{page}: {url}")
    return bad


def test_report_from_and_onto_s3(small_run):
    from tests.s3server import s3_stack

    with s3_stack() as s3:
        for bucket in ("na-report", "na-report-www"):
            s3.client.create_bucket(Bucket=bucket)
        out = small_run / "out"
        for path in out.rglob("*"):
            if path.is_file() and "site" not in path.relative_to(out).parts:
                s3.fs.pipe_file(f"na-report/out/{path.relative_to(out)}", path.read_bytes())
        first = run_cli("report", "s3://na-report/out", cwd=small_run, env=s3.env)
        assert "0 unchanged" in first.stdout
        head = s3.client.head_object(Bucket="na-report", Key="out/site/index.html")
        assert head["ContentType"].startswith("text/html")
        assert _unresolved(s3, "na-report/out/site") == []
        again = run_cli("report", "s3://na-report/out", cwd=small_run, env=s3.env)
        assert "(0 written," in again.stdout and " 0 thumbnails made" in again.stdout
        # a site in another bucket carries copies of what it shows, and needs nothing else
        run_cli("report", "s3://na-report/out", "--site", "s3://na-report-www/atlas", cwd=small_run, env=s3.env)
        assert _unresolved(s3, "na-report-www/atlas") == []
        for bucket in ("na-report", "na-report-www"):  # public reads, as a static site needs (README)
            statement = {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
                         "Resource": f"arn:aws:s3:::{bucket}/*"}
            s3.client.put_bucket_policy(Bucket=bucket, Policy=json.dumps({"Version": "2012-10-17",
                                                                          "Statement": [statement]}))
        with chromium() as driver:
            for site in ("na-report/out/site", "na-report-www/atlas"):
                for page in ("index.html", f"{SNAPSHOT}/conv4/index.html", f"{SNAPSHOT}/conv4/unit-1.html"):
                    driver.get(f"{s3.server.url}/{site}/{page}")
                    _settle(driver)
                    assert problems(driver) == [], f"{site}/{page}"
                    assert driver.execute_script("return Array.from(document.images).every(i => i.naturalWidth > 0)")


@pytest.fixture(scope="module")
def facets_run(tmp_path_factory):
    """OUT with facets, caricatures and top-k maps and attributions (tinynet, in process), and its site."""
    from pipelines.report.build import ReportSpec, build_site

    out = facets_out(tmp_path_factory.mktemp("report-facets"))
    build_site(ReportSpec(out=str(out)), log=lambda m: None)
    unit = next((out / "site").glob(f"*/*/{FACETS_LAYER}/unit-0.html"))
    return out, str(unit.relative_to(out))


_LOADED = "return Array.from(document.querySelectorAll(arguments[0])).map(i => i.complete && i.naturalWidth > 0)"


def _switch_views(driver) -> None:
    """Each view of the first top-k run in turn, then back to crops: every image shows that view's PNG."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    toggle = driver.find_element(By.CSS_SELECTOR, "fieldset.views")
    assert toggle.is_displayed()
    figures = toggle.get_attribute("data-for")
    views = [r.get_attribute("value") for r in toggle.find_elements(By.CSS_SELECTOR, "input[type=radio]")]
    assert views == ["crop", "map", "attribution"]
    folders = {"crop": "/topk/images/", "map": "/topk/maps/", "attribution": "/topk/attributions/"}
    for view in [*views[1:], "crop"]:
        toggle.find_element(By.CSS_SELECTOR, f"input[value={view}]").click()
        imgs = f"#{figures} img"
        WebDriverWait(driver, 5).until(lambda d: all(d.execute_script(_LOADED, imgs)))
        shown = driver.execute_script(
            "return Array.from(document.querySelectorAll(arguments[0])).map(i => [i.src, i.parentElement.href])",
            imgs)
        assert shown and all(folders[view] in src and src == href and src.endswith(".png") for src, href in shown)


def test_facets_caricatures_view_toggle_and_index_strips_show_their_images(facets_run, shots):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    out, unit_page = facets_run
    with serve(out) as server, chromium() as driver:
        driver.get(server.url(unit_page))
        _settle(driver)
        for section, images in (("facets", 4), ("caricatures", 4)):  # 2 seeds a column; 2 photo-caricature pairs
            assert driver.find_element(By.ID, section).is_displayed()
            assert driver.execute_script(_LOADED, f"#{section} img") == [True] * images, section
        photos = driver.find_elements(By.CSS_SELECTOR, "#caricatures img.photo")
        assert [p.get_attribute("src").rsplit("/", 2)[1] for p in photos] == ["inits", "inits"]
        _switch_views(driver)
        screenshot(driver, shots / "report-facets-unit.png", full_page=True)
        assert problems(driver, server) == []
        driver.get(server.url("site/index.html"))
        _settle(driver)
        strip = driver.execute_script(_LOADED, "ul.tiles img")
        assert strip and all(strip)
        screenshot(driver, shots / "report-facets-index.png", full_page=True)
        first = driver.find_element(By.CSS_SELECTOR, "ul.tiles a.tile")
        target = first.get_attribute("href")
        first.click()
        WebDriverWait(driver, 10).until(lambda d: d.current_url == target)
        assert problems(driver, server) == []
        # offline, from file://: the toggle works there too
        driver.get((out / unit_page).as_uri())
        _settle(driver)
        _switch_views(driver)
        assert problems(driver) == []
