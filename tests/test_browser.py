"""The pages in a real browser: headless Debian Chromium driven by Selenium, against uvicorn on a
free port and a SQLite database seeded through the repository.

Sign in with a real key, open the agent list, an agent, one of its calls, click a criterion and
check that its evidence lines (and only those) are highlighted; review from the call page, sign
out, and see a form posted by a sandboxed frame on a sibling site refused. Skipped only when
Chromium or its driver is not installed (Debian: apt-get install chromium chromium-driver).
"""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import pytest

from qa_service.app import create_app
from qa_service.auth import create_key
from qa_service.settings import Settings
from tests.conftest import free_port
from tests.test_views import EVIDENCE_SEGMENT, seed_calls, silent_wav

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
if not (Path(CHROMIUM).is_file() and Path(CHROMEDRIVER).is_file()):
    pytest.skip("Chromium or chromedriver is not installed (Debian: apt-get install chromium "
                "chromium-driver)", allow_module_level=True)

from selenium import webdriver  # noqa: E402
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException  # noqa: E402
from selenium.webdriver.chrome.options import Options  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as ec  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROME_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", "--window-size=1366,1000")


def _share(shot: Path, name: str) -> None:
    """Copy a screenshot to /tmp/web-NAME.png for a person to look at (overwritten on each run)."""
    try:
        shutil.copyfile(shot, Path("/tmp") / f"web-{name}.png")
    except OSError:
        pass  # a /tmp that is not writable does not make the page wrong


class Site:
    """uvicorn serving the app in a thread of this process."""

    def __init__(self, folder: Path, redis_url: str = "redis://127.0.0.1:1/0"):
        import uvicorn

        self.settings = Settings(database_url=f"sqlite:///{folder / 'qa.db'}", storage_dir=folder / "storage",
                                 model_cache_dir=folder / "models", redis_url=redis_url)
        self.app = create_app(self.settings)
        self.repo = self.app.state.repo
        self.ids = seed_calls(self.repo, self.settings.storage_dir)
        # One call keeps a redacted recording, so its page shows a player.
        (self.settings.storage_dir / self.ids["a2"] / "redacted.wav").write_bytes(silent_wav())
        self.key = create_key(self.repo, "supervisor", "Browser test supervisor")
        self.qa_key = create_key(self.repo, "qa", "Browser test reviewer")
        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.port,
                                                    log_level="warning", access_log=False))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Site:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"uvicorn did not start on port {self.port}")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.repo.dispose()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    with Site(tmp_path_factory.mktemp("site")) as s:
        yield s


def start_chromium(profile: Path) -> webdriver.Chrome:
    """Headless Chromium with its own profile folder, driven by the Debian chromedriver."""
    options = Options()
    options.binary_location = CHROMIUM
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    # An explicit driver path means Selenium Manager is never asked to find or download anything.
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(20)
    return driver


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    driver = start_chromium(tmp_path_factory.mktemp("chromium-profile"))
    yield driver
    driver.quit()


def wait(driver, condition, timeout: float = 10):
    # A form post reloads the page: an element found just before the reload goes stale, and the
    # condition is asked again on the new page rather than failing the test.
    stale = (StaleElementReferenceException,)
    return WebDriverWait(driver, timeout, ignored_exceptions=stale).until(condition)


def sign_in(browser, site, key: str | None = None) -> None:
    browser.get(site.url + "/")
    box = wait(browser, ec.presence_of_element_located((By.ID, "api_key")))
    box.send_keys(key or site.key)
    browser.find_element(By.ID, "sign-in").click()
    wait(browser, ec.url_contains("/agents"))


def test_sign_in_agent_to_call_and_highlight_evidence(browser, site, tmp_path):
    browser.delete_all_cookies()
    browser.get(site.url + "/calls")
    # Not signed in: sent to the sign-in form, which remembers where we were going.
    wait(browser, ec.presence_of_element_located((By.ID, "api_key")))
    assert "next=%2Fcalls" in browser.current_url

    sign_in(browser, site)
    cookie = browser.get_cookie("qa_session")
    assert cookie is not None and cookie["httpOnly"] is True and cookie["sameSite"] == "Lax"
    assert site.key not in cookie["value"]

    # Agent list -> agent page
    links = {a.text: a for a in browser.find_elements(By.CSS_SELECTOR, "a.agent-link")}
    assert set(links) == {"agent-a", "agent-b"}
    links["agent-a"].click()
    wait(browser, ec.presence_of_element_located((By.CSS_SELECTOR, "svg.trend")))
    assert len(browser.find_elements(By.CSS_SELECTOR, "svg.trend circle.dot")) >= 2  # two weeks + legend
    browser.save_screenshot(str(tmp_path / "agent.png"))
    _share(tmp_path / "agent.png", "agent")

    # Agent page -> call a2 (its calls are listed by external id)
    browser.find_element(By.LINK_TEXT, "ext-a2").click()
    wait(browser, ec.presence_of_element_located((By.ID, "transcript")))
    assert browser.find_elements(By.CSS_SELECTOR, ".seg.hl") == []
    assert browser.find_element(By.ID, "player").tag_name == "audio"

    # Click a criterion: exactly its evidence lines light up, without leaving the page.
    page_id = browser.execute_script("return window.performance.timeOrigin")
    browser.find_element(By.ID, "crit-identity").click()
    wanted = f"seg-{EVIDENCE_SEGMENT['identity']}"
    try:
        wait(browser, lambda d: d.find_element(By.ID, wanted).get_attribute("class").split().count("hl") == 1)
    except TimeoutException:
        pytest.fail(f"evidence line {wanted} was not highlighted")
    highlighted = [el.get_attribute("id") for el in browser.find_elements(By.CSS_SELECTOR, ".seg.hl")]
    assert highlighted == [wanted]
    assert "active" in browser.find_element(By.ID, "crit-identity").get_attribute("class")
    assert browser.execute_script("return window.performance.timeOrigin") == page_id  # handled by script
    assert "c=identity" in browser.current_url

    # Another criterion moves the highlight.
    browser.find_element(By.ID, "crit-greeting").click()
    wait(browser, lambda d: [e.get_attribute("id") for e in d.find_elements(By.CSS_SELECTOR, ".seg.hl")]
         == [f"seg-{EVIDENCE_SEGMENT['greeting']}"])

    browser.find_element(By.ID, "crit-identity").click()
    shot = tmp_path / "call.png"
    browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000
    _share(shot, "call")


def test_link_without_script_marks_evidence_on_the_server(browser, site):
    browser.delete_all_cookies()
    sign_in(browser, site)
    browser.get(f"{site.url}/calls/{site.ids['a4']}?c=next_steps")
    marked = [el.get_attribute("id") for el in browser.find_elements(By.CSS_SELECTOR, ".seg.hl")]
    assert marked == [f"seg-{EVIDENCE_SEGMENT['next_steps']}"]
    assert browser.find_elements(By.ID, "no-audio")  # a4 keeps no recording


def test_sign_out_ends_the_session(browser, site):
    browser.delete_all_cookies()
    sign_in(browser, site)
    captured = browser.get_cookie("qa_session")
    browser.find_element(By.ID, "sign-out").click()
    wait(browser, ec.presence_of_element_located((By.ID, "api_key")))
    browser.get(site.url + "/agents")
    wait(browser, ec.presence_of_element_located((By.ID, "api_key")))
    assert browser.get_cookie("qa_session") is None
    # The cookie as it was before signing out opens nothing either.
    browser.add_cookie({"name": "qa_session", "value": captured["value"], "path": "/"})
    browser.get(site.url + "/agents")
    wait(browser, ec.presence_of_element_located((By.ID, "api_key")))


def _reviews(site, call_id: str) -> list:

    return site.repo.reviews.for_call(call_id)


def test_review_from_the_call_page(browser, site):
    browser.delete_all_cookies()
    sign_in(browser, site, site.qa_key)
    call_id = site.ids["a3"]
    browser.get(f"{site.url}/calls/{call_id}")
    form = wait(browser, ec.presence_of_element_located((By.CSS_SELECTOR, "#violations details.review-form")))
    form.find_element(By.TAG_NAME, "summary").click()
    form.find_element(By.NAME, "reason").send_keys("said in jest, corrected at once")
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait(browser, ec.presence_of_element_located((By.CSS_SELECTOR, "p.review-note")))
    [review] = _reviews(site, call_id)
    assert review.reason == "said in jest, corrected at once"
    assert review.reviewer_name == "Browser test reviewer"


def test_a_sibling_site_cannot_post_a_review(browser, site):
    """A page on another port of the same host is the same site, so the browser sends the session
    cookie (SameSite=Lax) with a form it posts; sent on through a redirect, the post says
    `Origin: null`. Chromium does both."""
    import http.server

    import sqlalchemy as sa

    from qa_service.storage import tables as t

    call_id = site.ids["a4"]
    violation = site.repo.get_scorecard(call_id).data["violations"][0]["id"]
    page = ("<form method='post' action='/bounce'><input name='target' value='violation'>"
            f"<input name='id' value='{violation}'><input name='action' value='dismiss'>"
            "<input name='reason' value='planted'></form>"
            "<script>document.forms[0].submit()</script>").encode()

    class Sibling(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(page)

        def do_POST(self) -> None:  # 307 keeps the method and the body
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(307)
            self.send_header("Location", f"{site.url}/calls/{call_id}/reviews")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    sibling = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Sibling)
    threading.Thread(target=sibling.serve_forever, daemon=True).start()
    browser.delete_all_cookies()
    sign_in(browser, site, site.qa_key)
    with site.repo.engine.connect() as conn:
        before = conn.execute(sa.select(sa.func.max(t.audit_log.c.id))).scalar() or 0
    audit = sa.select(t.audit_log.c.key_name, t.audit_log.c.details).where(
        t.audit_log.c.target_id == call_id, t.audit_log.c.id > before).order_by(t.audit_log.c.id)
    try:
        browser.get(f"http://127.0.0.1:{sibling.server_port}/")

        def posted(_driver: object) -> list:
            with site.repo.engine.connect() as conn:
                return conn.execute(audit).all()

        who, details = wait(browser, posted)[0]  # the post; a page it led to would come after
    finally:
        sibling.shutdown()
        sibling.server_close()
    assert who == "Browser test reviewer"  # the post did carry the reviewer's session
    assert details.startswith("status=403")
    assert _reviews(site, call_id) == []
