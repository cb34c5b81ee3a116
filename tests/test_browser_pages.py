"""The staff pages in headless Chromium: the review queue, search (a call found by its external id and
by a word of its transcript), a call's versions and a dismissed violation, an agent's dispute that QA
overturns, the keys page and the upload page (each file's progress, and the calls' status after a
reload). Every page leaves a screenshot in /tmp/web-NAME.png. Skipped, like tests/test_browser.py,
only without Chromium."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import Select

from qa_service.auth import create_key, issue_key
from qa_service.storage.paging import DEFAULT_PAGE_SIZE
from qa_service.storage.repository import Scope
from tests.test_browser import Site, _share, sign_in, start_chromium, wait


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    driver = start_chromium(tmp_path_factory.mktemp("chromium-profile"))
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def site(tmp_path_factory, redis_url):
    with Site(tmp_path_factory.mktemp("pages-site"), redis_url=redis_url) as s:
        s.admin_key = create_key(s.repo, "admin", "Browser test admin")
        yield s


def shot(browser, name: str, tmp_path: Path) -> None:
    """A full-height screenshot of the page, shared as /tmp/web-NAME.png."""
    height = browser.execute_script("window.scrollTo(0, 0); return document.documentElement.scrollHeight")
    browser.set_window_size(1366, min(max(int(height) + 160, 760), 2600))
    path = tmp_path / f"{name}.png"
    browser.save_screenshot(str(path))
    browser.set_window_size(1366, 1000)
    assert path.stat().st_size > 10_000
    _share(path, name)


def fresh(browser, site, key: str) -> None:
    browser.delete_all_cookies()
    sign_in(browser, site, key)


def test_review_queue(browser, site, tmp_path):
    fresh(browser, site, site.qa_key)
    browser.find_element(By.LINK_TEXT, "Review queue").click()
    wait(browser, ec.presence_of_element_located((By.CSS_SELECTOR, "table.queue")))
    assert browser.find_element(By.TAG_NAME, "h1").text == "Review queue"
    rows = browser.find_elements(By.CSS_SELECTOR, "table.queue tbody tr[data-call]")
    days = [r.find_element(By.TAG_NAME, "td").text for r in rows]
    assert len(rows) >= 3 and days == sorted(days)
    shot(browser, "review-queue", tmp_path)
    Select(browser.find_element(By.NAME, "why")).select_by_value("outdated_policy")
    browser.find_element(By.CSS_SELECTOR, "form.filters button[type=submit]").click()
    wait(browser, ec.url_contains("why=outdated_policy"))
    links = [a.text for a in browser.find_elements(By.CSS_SELECTOR, "table.queue a.call-link")]
    assert sorted(links) == ["ext-a3", "ext-a4"]
    browser.find_element(By.LINK_TEXT, "ext-a3").click()
    wait(browser, ec.presence_of_element_located((By.ID, "transcript")))
    assert site.ids["a3"] in browser.current_url


def test_search_finds_a_call_by_external_id_and_by_a_word_of_its_transcript(browser, site, tmp_path):
    fresh(browser, site, site.key)
    browser.find_element(By.LINK_TEXT, "Search").click()
    box = wait(browser, ec.presence_of_element_located((By.ID, "q")))
    box.send_keys("ext-b1")
    browser.find_element(By.ID, "search-go").click()
    found = wait(browser, ec.presence_of_element_located((By.CSS_SELECTOR, "#by-external-id a.call-link")))
    assert found.text == "ext-b1"
    found.click()
    wait(browser, ec.presence_of_element_located((By.ID, "transcript")))
    assert site.ids["b1"] in browser.current_url

    browser.find_element(By.LINK_TEXT, "Search").click()
    box = wait(browser, ec.presence_of_element_located((By.ID, "q")))
    box.send_keys("permit")
    browser.find_element(By.ID, "search-go").click()
    wait(browser, ec.presence_of_element_located((By.CSS_SELECTOR, "ol.hits li")))
    marks = {m.text for m in browser.find_elements(By.CSS_SELECTOR, "ol.hits mark")}
    assert marks == {"permit"}
    links = browser.find_elements(By.CSS_SELECTOR, "ol.hits a")
    hits = [a.get_attribute("href").rsplit("/", 1)[1] for a in links]
    assert set(hits) == {site.ids[k] for k in ("a1", "a2", "a3", "a4", "b1", "b2")}
    shot(browser, "search", tmp_path)


def test_call_page_versions_and_a_dismissed_violation(browser, site, tmp_path):
    from tests.test_views import RUBRIC_YAML, sha

    call_id = site.ids["a2"]
    site.repo.put_rules("rubric", "intake", "2026.10", sha(RUBRIC_YAML + "\n"), RUBRIC_YAML + "\n")
    first = site.repo.get_scorecard(call_id).data
    site.repo.add_scorecard_versions([(call_id, {
        **first, "rubric": {**first["rubric"], "version": "2026.10", "sha256": "changed"},
        "rescored_from": {"rubric": first["rubric"], "score": first["score"], "passed": first["passed"]}})])
    fresh(browser, site, site.qa_key)
    browser.get(f"{site.url}/calls/{call_id}")
    history = wait(browser, ec.presence_of_element_located((By.ID, "history")))
    lines = [li.text for li in history.find_elements(By.TAG_NAME, "li")]
    assert lines[0].startswith("is 70 FAIL under rubric intake 2026.10")
    assert lines[1].startswith("was 70 FAIL under rubric intake 1") and "first scoring" in lines[1]
    assert browser.find_element(By.ID, "violation-count").text == "1"
    form = browser.find_element(By.CSS_SELECTOR, "#violations details.review-form")
    form.find_element(By.TAG_NAME, "summary").click()
    Select(form.find_element(By.NAME, "action")).select_by_value("dismiss")
    form.find_element(By.NAME, "reason").send_keys("the agent said nobody can guarantee it")
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    dismissed = wait(browser, ec.presence_of_element_located((By.CSS_SELECTOR, "li.dismissed")))
    assert "dismissed · not counted" in dismissed.text
    assert "line-through" in dismissed.find_element(By.CSS_SELECTOR, ".crit-title").value_of_css_property(
        "text-decoration")
    assert browser.find_elements(By.ID, "violation-count") == []
    assert browser.find_element(By.ID, "dismissed-count").text == "1 dismissed, not counted"
    # The verdict shown is the one after review: the auto-fail given back, the call passes.
    box = browser.find_element(By.ID, "shown-verdict")
    assert "pass" in box.get_attribute("class").split() and "automatic: 70 fail" in box.text
    shot(browser, "call-history", tmp_path)


def test_an_agent_disputes_a_violation_and_qa_overturns_it(browser, site, tmp_path):
    """The agent disputes a violation from the call page; QA overturns it from the call page; the
    violation stops counting in the agent's aggregate and both see the outcome and the reason."""
    from qa_service.storage.views import Filters

    call_id = site.ids["a4"]
    agent_key = issue_key(site.repo, "agent", "Ana", Scope(agent="agent-a"))[1]
    counted = site.repo.views.totals(Filters(agent_id="agent-a")).violations["outdated_policy"]
    fresh(browser, site, agent_key)
    browser.get(f"{site.url}/calls/{call_id}")
    form = wait(browser, ec.presence_of_element_located((By.ID, "dispute-form")))
    Select(form.find_element(By.NAME, "pick")).select_by_value("violation:fee-amount")
    form.find_element(By.NAME, "reason").send_keys("I quoted the fee in force on the day")
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    opened = wait(browser, ec.presence_of_element_located((By.CSS_SELECTOR, "#disputes li.dispute.open")))
    assert "I quoted the fee in force on the day" in opened.text
    shot(browser, "dispute-raised", tmp_path)

    fresh(browser, site, site.qa_key)
    browser.find_element(By.LINK_TEXT, "Disputes").click()
    wait(browser, ec.presence_of_element_located((By.LINK_TEXT, "ext-a4"))).click()
    resolve = wait(browser, ec.presence_of_element_located((By.CSS_SELECTOR, "#disputes form.resolve-form")))
    Select(resolve.find_element(By.NAME, "outcome")).select_by_value("overturned")
    resolve.find_element(By.NAME, "reason").send_keys("The pack in force that day had this fee")
    resolve.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    done = wait(browser, ec.presence_of_element_located((By.CSS_SELECTOR, "#disputes li.dispute.overturned")))
    assert "Overturned by Browser test reviewer" in done.text
    assert "The pack in force that day had this fee" in done.text
    shot(browser, "dispute-overturned", tmp_path)
    # The dismissed violation no longer counts in the agent's aggregate; the history is kept.
    assert site.repo.views.totals(Filters(agent_id="agent-a")).violations["outdated_policy"] == counted - 1
    [dispute] = [d for d in site.repo.disputes.for_call(call_id)]
    assert dispute.status == "overturned" and dispute.reason == "I quoted the fee in force on the day"

    fresh(browser, site, agent_key)
    browser.get(f"{site.url}/calls/{call_id}")
    seen = wait(browser, ec.presence_of_element_located((By.CSS_SELECTOR, "#disputes li.dispute.overturned")))
    assert "The pack in force that day had this fee" in seen.text


def test_keys_page(browser, site, tmp_path):
    fresh(browser, site, site.admin_key)
    browser.find_element(By.LINK_TEXT, "Keys").click()
    wait(browser, ec.presence_of_element_located((By.ID, "make-key")))
    browser.find_element(By.ID, "new-name").send_keys("Bravo team lead")
    Select(browser.find_element(By.ID, "new-role")).select_by_value("supervisor")
    browser.find_element(By.ID, "new-teams").send_keys("bravo")
    browser.find_element(By.ID, "make-key").click()
    secret = wait(browser, ec.presence_of_element_located((By.ID, "secret"))).get_attribute("value")
    made = next(k for k in site.repo.list_keys() if k.name == "Bravo team lead")
    assert secret.startswith(made.prefix or "") and not made.revoked
    shot(browser, "keys", tmp_path)
    row = browser.find_element(By.ID, f"key-{made.id}")
    row.find_element(By.CSS_SELECTOR, "button.danger").click()
    wait(browser, lambda d: "revoked" in d.find_element(By.ID, f"key-{made.id}").get_attribute("class"))
    assert next(k for k in site.repo.list_keys() if k.id == made.id).revoked
    # Agents' keys run to thousands: the page shows the newest, its Next page link the older ones.
    for n in range(DEFAULT_PAGE_SIZE):
        issue_key(site.repo, "agent", f"Agent {n}", Scope(agent=f"agent-{n}"))
    browser.get(site.url + "/keys")
    oldest = min(site.repo.list_keys(), key=lambda k: (k.created_at, k.id))
    assert browser.find_elements(By.ID, f"key-{oldest.id}") == []
    assert browser.find_elements(By.ID, f"key-{made.id}") == []
    browser.find_element(By.PARTIAL_LINK_TEXT, "Next page").click()
    wait(browser, ec.presence_of_element_located((By.ID, f"key-{oldest.id}")))
    assert browser.find_elements(By.ID, f"key-{made.id}") and "cursor=" in browser.current_url
    shot(browser, "keys-page-2", tmp_path)
    # Not for a supervisor.
    fresh(browser, site, site.key)
    browser.get(site.url + "/keys")
    assert browser.find_element(By.TAG_NAME, "h1").text == "Admins only"
    assert browser.find_elements(By.LINK_TEXT, "Keys") == []


TRANSCRIPT = "Agent: Thanks for calling, this call is recorded.\nCustomer: I need a permit renewal.\n"


def test_upload_many_files_with_progress_that_survives_a_reload(browser, site, tmp_path):
    files = []
    for name in ("CRM-501.txt", "CRM-502.txt", "CRM-503.txt"):
        path = tmp_path / name
        path.write_text(TRANSCRIPT)
        files.append(str(path))
    fresh(browser, site, site.qa_key)
    browser.find_element(By.LINK_TEXT, "Upload").click()
    wait(browser, ec.presence_of_element_located((By.ID, "files"))).send_keys("\n".join(files))
    browser.find_element(By.ID, "agent_id").send_keys("agent-u")
    browser.execute_script("document.getElementById('call_date').value = '2026-11-02'")
    Select(browser.find_element(By.ID, "rubric_id")).select_by_value("intake")
    browser.find_element(By.ID, "ids_from_names").click()
    browser.find_element(By.ID, "send").click()
    wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#sending li.ok")) == 3, timeout=20)
    bars = browser.find_elements(By.CSS_SELECTOR, "#sending progress")
    assert len(bars) == 3 and all(int(p.get_attribute("value")) == 100 for p in bars)
    wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#upload-rows tr[data-call]")) == 3)
    shot(browser, "upload", tmp_path)

    # A worker picks one up and scores it: the page, reloaded, shows each call's status from the server
    # and follows them without another reload.
    calls = {f"CRM-50{n}": site.repo.find_call(f"CRM-50{n}") for n in (1, 2, 3)}
    browser.refresh()
    rows = wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#upload-rows tr[data-status=queued]"))
    assert len(rows) == 3
    from tests.test_views import SEED, make_scorecard

    call = calls["CRM-501"]
    site.repo.start_call(call.id)
    site.repo.finish_call(call.id, make_scorecard(SEED[0], "CRM-501"))
    site.repo.start_call(calls["CRM-502"].id)
    site.repo.fail_call(calls["CRM-502"].id, "the transcript names no agent turn")
    wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, f'tr[data-call="{call.id}"]')
         .get_attribute("data-status") == "done", timeout=15)
    failed = browser.find_element(By.CSS_SELECTOR, f'tr[data-call="{calls["CRM-502"].id}"]')
    assert failed.get_attribute("data-status") == "failed" and "names no agent turn" in failed.text
    time.sleep(0.2)
    shot(browser, "upload-status", tmp_path)
    # A file whose sending a reload cut off is named after the reload (the browser kept its name).
    browser.execute_script("localStorage.setItem('qa-upload-sending', JSON.stringify(['CRM-504.wav']))")
    browser.refresh()
    cut = wait(browser, ec.presence_of_element_located((By.CSS_SELECTOR, "#sending li.refused")))
    assert "CRM-504.wav" in cut.text and "send it again" in cut.text
    browser.refresh()
    assert browser.find_elements(By.CSS_SELECTOR, "#sending li") == []  # said once
