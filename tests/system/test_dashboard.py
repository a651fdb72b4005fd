"""The dashboard in a real headless browser (Debian's chromium and chromium-driver, through
selenium) against a live farm: redis-server, a gateway under gunicorn, a worker rendering with
Blender. One farm for the module; the tests run in order and each leaves the farm idle.

Screenshots for the docs: FRAMEFARM_SCREENSHOTS=docs/images python -m pytest tests/system/test_dashboard.py
"""
from __future__ import annotations

import http.server
import json
import os
import threading
import urllib.request
from pathlib import Path

import pytest

from dashtools import XSS
from farmtools import framefarm_cli, require, require_module, wait_for
from framefarm.gateway import keys
from framefarm.gateway.localfarm import free_port

@pytest.fixture(scope="module")
def farm(module_cluster, scenes):
    module_cluster.add_gateway(processes=2)
    module_cluster.add_worker()
    module_cluster.wait_registered(1)
    module_cluster.scene = scenes("--animated", "--size", "64")
    return module_cluster


@pytest.fixture(scope="module")
def browser():
    require("chromium")
    require("chromedriver")
    require_module("selenium", "selenium")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = require("chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900",
                "--disable-gpu"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(require("chromedriver")), options=options)
    driver.implicitly_wait(0)
    yield driver
    driver.quit()


def by_css(driver, selector: str):
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, selector)


def sign_in(driver, farm, token: str) -> None:
    driver.delete_all_cookies()
    driver.get(farm.urls[0] + "/signin")
    by_css(driver, "#token")[0].send_keys(token)
    by_css(driver, ".signin button")[0].click()
    try:
        wait_for(lambda: driver.current_url.rstrip("/") == farm.urls[0], 60, "the jobs list after signing in")
    except pytest.fail.Exception:
        pytest.fail(f"signing in led to {driver.current_url}: {driver.page_source[:800]}")


def submit(farm, *args: str, token: str | None = None) -> dict:
    env = farm.client_env() if token is None else {**farm.client_env(), "FRAMEFARM_TOKEN": token}
    res = framefarm_cli("submit", str(farm.scene), *args, "--json", env=env, timeout=120)
    assert res.returncode == 0, res.stderr + farm.logs()
    return json.loads(res.stdout)


def job_status(farm, job_id: str) -> str:
    return farm.redis.client().hget(keys.job(job_id), "status").decode()


def scrape(farm) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(farm.urls[0] + "/metrics", timeout=10) as resp:  # loopback: allowed
        text = resp.read().decode()
    return {s.name + json.dumps(s.labels, sort_keys=True): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def screenshot(driver, name: str) -> None:
    folder = os.environ.get("FRAMEFARM_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(Path(folder) / name))


def text(driver, selector: str) -> str:
    """The text of the first match, read again if a live update replaced it meanwhile."""
    from selenium.common.exceptions import StaleElementReferenceException

    for _ in range(20):
        try:
            found = by_css(driver, selector)
            return found[0].text if found else ""
        except StaleElementReferenceException:
            continue
    raise AssertionError(f"{selector} kept changing")


def click(driver, selector: str) -> None:
    """Press a button that posts a form; the page that answers has replaced this one."""
    old = by_css(driver, "body")[0]
    by_css(driver, selector)[0].click()
    wait_for(lambda: _stale(old), 60, f"the page after pressing {selector}")


def _stale(element) -> bool:
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException

    try:
        element.is_enabled()
        return False
    except StaleElementReferenceException:
        return True
    except WebDriverException as e:
        # Asked while the new page replaces the old, chromedriver can report the old node as
        # "Node with given id does not belong to the document" instead of stale (seen in CI).
        if "does not belong to the document" in (e.msg or ""):
            return True
        raise


def test_a_job_goes_from_queued_to_done_with_thumbnails_appearing_without_a_reload(farm, browser):
    sign_in(browser, farm, farm.tokens.client)
    before = scrape(farm)
    browser.execute_script("window.stillThisPage = true")  # gone if the page were reloaded
    job = submit(farm, "--frames", "1-6", "--chunk", "2", "--name", "shot 010")
    during = scrape(farm)
    wait_for(lambda: "shot 010" in text(browser, f'tr.job[data-id="{job["id"]}"]'), 60,
             "the new job in the list, live")
    assert browser.execute_script("return window.stillThisPage") is True

    by_css(browser, f'tr.job[data-id="{job["id"]}"] a.name')[0].click()
    wait_for(lambda: by_css(browser, ".job-page"), 60, "the job's page")
    browser.execute_script("window.stillThisPage = true")
    wait_for(lambda: browser.execute_script(
        "return [...document.querySelectorAll('img.thumb')].filter(i => i.naturalWidth > 0).length") == 6,
        180, "six thumbnails, appearing as parts land")
    wait_for(lambda: by_css(browser, "#download"), 120, "the download link once the job is done")
    assert browser.execute_script("return window.stillThisPage") is True, "no reload: the page followed the job"
    assert text(browser, "#job-status") == "done"
    assert browser.execute_script("return document.getElementById('last-frame').naturalWidth") > 0
    if farm.redis.client().hget(keys.job(job["id"]), "stat_frames"):  # the worker measured its frames
        assert len(by_css(browser, "#strip span")) == 6, "a render-time mark per frame"
    screenshot(browser, "dashboard-job.png")

    after = scrape(farm)
    assert sum(during.get(f'framefarm_jobs{{"status": "{s}"}}', 0) for s in ("queued", "running")) >= 1
    assert after["framefarm_frames_rendered_total{}"] - before.get("framefarm_frames_rendered_total{}", 0) == 6
    if farm.redis.client().hget(keys.job(job["id"]), "stat_frames"):
        assert after["framefarm_frame_render_seconds_count{}"] - before.get("framefarm_frame_render_seconds_count{}",
                                                                             0) == 6
    assert after["framefarm_assembly_seconds_count{}"] >= 1
    assert after['framefarm_jobs{"status": "done"}'] >= 1
    assert after["framefarm_queued_work_seconds{}"] == 0
    browser.get(farm.urls[0])
    wait_for(lambda: by_css(browser, "tr.job"), 60, "the jobs list")
    screenshot(browser, "dashboard-jobs.png")


@pytest.fixture
def undrained(farm):
    """The module's worker undrained after the test, whatever happened (else every later test's
    job would wait for it and fail too)."""
    yield
    for wid in farm.redis.client().zrange(keys.WORKERS, 0, -1):
        _api(farm, "POST", f"/v1/workers/{wid.decode()}/undrain", {}, token=farm.tokens.admin)


def test_an_admin_drains_a_worker_pauses_resumes_cancels_and_retries(farm, browser, undrained):
    sign_in(browser, farm, farm.tokens.admin)
    browser.get(farm.urls[0] + "/workers")
    wid = by_css(browser, "tr.worker")[0].get_attribute("data-id")
    click(browser, f'tr.worker[data-id="{wid}"] button.drain')
    assert "drained" in text(browser, f'tr.worker[data-id="{wid}"] td.state')
    screenshot(browser, "dashboard-workers.png")

    failing = submit(farm, "--frames", "1-4", "--chunk", "2", "--name", "to retry")
    other = submit(farm, "--frames", "1-2", "--name", "to pause and cancel")
    # A stand-in worker (the real one is drained) takes the first part and fails it for good.
    fake = _api(farm, "POST", "/v1/workers", {"name": "flaky", "blender_version": "3.4.1"})["id"]
    part = _api(farm, "POST", f"/v1/workers/{fake}/claim", {"wait": 0})["part"]
    assert part["job"] == failing["id"]
    _api(farm, "POST", f"/v1/parts/{part['id']}/failure", {"message": "out of memory", "deterministic": True},
         {"X-Lease-Token": part["token"], "X-Worker-Id": fake})
    _api(farm, "DELETE", f"/v1/workers/{fake}")
    assert job_status(farm, failing["id"]) == "failed"

    browser.get(farm.urls[0] + f"/jobs/{other['id']}")
    click(browser, "#action-pause")
    assert "(paused)" in text(browser, "#job-status")
    assert farm.redis.client().hget(keys.job(other["id"]), "paused") == b"1"
    click(browser, "#action-resume")
    assert "(paused)" not in text(browser, "#job-status")
    click(browser, "#action-cancel")
    assert text(browser, "#job-status") == "cancelled"

    browser.get(farm.urls[0] + f"/jobs/{failing['id']}")
    assert "out of memory" in text(browser, "#job-error")
    click(browser, "#action-retry")
    browser.get(farm.urls[0] + "/workers")
    click(browser, f'tr.worker[data-id="{wid}"] button.drain')  # undrain
    assert text(browser, f'tr.worker[data-id="{wid}"] td.state').split()[0] in ("idle", "rendering")
    browser.get(farm.urls[0] + f"/jobs/{failing['id']}")
    wait_for(lambda: by_css(browser, "#download"), 180, "the retried job done, on its page")
    assert job_status(farm, other["id"]) == "cancelled"


def _api(farm, method: str, path: str, body: dict | None = None, headers: dict | None = None,
         token: str | None = None) -> dict:
    """The API as a worker speaks it (a stand-in for a worker that fails), or with `token`."""
    req = urllib.request.Request(farm.urls[0] + path, method=method,
                                 data=None if body is None else json.dumps(body).encode(),
                                 headers={"Authorization": f"Bearer {token or farm.tokens.worker}",
                                          "Content-Type": "application/json", **(headers or {})})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read() or b"{}")


def test_a_job_named_like_markup_renders_as_text(farm, browser):
    from selenium.common.exceptions import NoAlertPresentException

    job = submit(farm, "--frames", "1", "--name", XSS)
    sign_in(browser, farm, farm.tokens.client)
    for page in (farm.urls[0], farm.urls[0] + f"/jobs/{job['id']}"):
        browser.get(page)
        wait_for(lambda: XSS in browser.execute_script(
            "return [...document.querySelectorAll('.name, .job-name')].map(e => e.textContent)"), 60,
            "the name, as text")
        assert not by_css(browser, "img[src='x']"), "the name became markup"
        with pytest.raises(NoAlertPresentException):
            browser.switch_to.alert.text
    wait_for(lambda: job_status(farm, job["id"]) == "done", 120, "the job to finish (the farm idle again)")


def test_a_client_sees_neither_another_clients_job_nor_an_admin_page(farm, browser):
    theirs = submit(farm, "--frames", "1", "--name", "someone else's", token=farm.tokens.client2)
    sign_in(browser, farm, farm.tokens.client)
    assert "someone else's" not in text(browser, "main")
    for path in (f"/jobs/{theirs['id']}", f"/jobs/{theirs['id']}/previews/1.jpg?part=0", "/workers"):
        browser.get(farm.urls[0] + path)
        assert "someone else's" not in browser.page_source
        assert not by_css(browser, "tr.worker") and "not found" in browser.page_source.lower(), path
    wait_for(lambda: job_status(farm, theirs["id"]) == "done", 120, "the job to finish (the farm idle again)")


def test_a_cross_site_post_is_refused(farm, browser, tmp_path):
    victim = submit(farm, "--frames", "1-8", "--chunk", "1", "--name", "victim")
    _api_client(farm, "POST", f"/v1/jobs/{victim['id']}/pause")  # kept queued while the attack runs
    sign_in(browser, farm, farm.tokens.client)
    # Another origin (same host, another port: the browser sends the session cookie along).
    (tmp_path / "attack.html").write_text(
        f'<form id="f" method="post" action="{farm.urls[0]}/jobs/{victim["id"]}/cancel"></form>'
        '<script>document.getElementById("f").submit()</script>')
    port = free_port()
    handler = lambda *a, **kw: http.server.SimpleHTTPRequestHandler(*a, directory=str(tmp_path), **kw)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        browser.get(f"http://127.0.0.1:{port}/attack.html")
        wait_for(lambda: browser.current_url.startswith(farm.urls[0]), 60, "the forged form to post")
        assert "another site" in browser.page_source
    finally:
        server.shutdown()
    assert job_status(farm, victim["id"]) in ("queued", "running"), "the forged form cancelled nothing"
    _api_client(farm, "POST", f"/v1/jobs/{victim['id']}/cancel")  # the farm idle again


def _api_client(farm, method: str, path: str) -> dict:
    req = urllib.request.Request(farm.urls[0] + path, method=method,
                                 headers={"Authorization": f"Bearer {farm.tokens.client}"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())
