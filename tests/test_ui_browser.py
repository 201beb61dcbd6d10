"""The web monitor in a real browser: headless Chromium (Debian's, driven by its chromedriver
through Selenium) against a real dispatcher and real workers running real commands. Every step
is what a wrangler or an artist does with the mouse, and every outcome is checked twice: on the
page, and in the farm through the API.

PULI_SAVE_SCREENSHOTS=1 also writes the main pages' screenshots to docs/ (the README shows them).
"""
import os
import shutil
import signal
import tempfile
from pathlib import Path

import pytest

from processes import ROOT, Dispatcher, http, wait_for
from puli.model.status import CommandStatus as CS
from test_worker_support import WorkerProcess, job, reaches, registered, submit, sweep, the_command

CHROMIUM = shutil.which("chromium")
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif((CHROMIUM is None or DRIVER is None) and not os.environ.get("REQUIRE_ALL_TESTS"),
                                reason="chromium and chromium-driver are not installed (scripts/test installs them)")
LIVE = 15.0             # s: a page's live part refreshes every 5 s; allow for a loaded machine


def gated(gate, lines):
    """Shell printing mark-11, mark-22, ... (`lines` of them; the log's header, which quotes the
    command, never holds them), waiting for the file gate.N before line N+1."""
    steps = []
    for number in range(1, lines + 1):
        steps.append(f"echo mark-$(({number}*11))")
        if number < lines:
            steps.append(f"while [ ! -e {gate}.{number} ]; do sleep 0.1; done")
    return "; ".join(steps)


@pytest.fixture(scope="module")
def farm(tmp_path_factory):
    """A dispatcher (auth on, render nodes silent for 3 s go UNKNOWN) and two real workers."""
    base = tmp_path_factory.mktemp("uifarm")
    dispatcher = Dispatcher(base / "dispatcher", extra=("--set", "rn_timeout=3"))
    workers = []
    try:
        dispatcher.start()
        for number in range(2):
            worker = WorkerProcess(dispatcher.url, base / f"worker{number}", token=dispatcher.worker_token(),
                                   extra=("--set", "pools=[render]")).start()
            workers.append(worker)
            wait_for(lambda w=worker: registered(dispatcher, w.name), what="the worker's registration")
        dispatcher.workers = workers
        dispatcher.base = base
        dispatcher.artist = dispatcher.new_token("ann", "artist")
        dispatcher.wrangler = dispatcher.new_token("wendy", "wrangler")
        yield dispatcher
    finally:
        for worker in workers:
            worker.close()
            sweep(worker.data_dir)
        dispatcher.close()


@pytest.fixture
def browser():
    assert CHROMIUM and DRIVER, "REQUIRE_ALL_TESTS=1 (scripts/test) but chromium or chromium-driver is missing"
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    profile = tempfile.mkdtemp(prefix="puli-ui-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1500,950", f"--user-data-dir={profile}", "--lang=en"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(DRIVER))
    driver.implicitly_wait(0)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def sign_in(driver, farm, token, page="/ui/jobs"):
    driver.get(farm.url + page)
    assert "/ui/signin" in driver.current_url            # no session yet: the sign-in form
    driver.find_element("id", "token").send_keys(token)
    driver.find_element("id", "signin").click()
    wait_for(lambda: driver.current_url.startswith(farm.url + page), what=f"the page {page} after signing in")


def text_of(driver, css):
    elements = driver.find_elements("css selector", css)
    return elements[0].text if elements else ""


def shows(driver, css, words, timeout=LIVE):
    """Wait until the element `css` holds `words` (the page's live part may take a refresh)."""
    return wait_for(lambda: words in text_of(driver, css), timeout, interval=0.2,
                    what=f"{words!r} in {css} (it holds {text_of(driver, css)!r})")


def flash(driver, words):
    return shows(driver, "#flash", words)


def click(driver, css):
    driver.find_element("css selector", css).click()


def held(farm, name, token=None, **tags):
    """A job in a pool no render node serves: it waits, READY, as long as the test likes."""
    graph = dict(job(name, "true"), poolName="hold", user="bob")     # an artist's token makes it theirs
    graph["tasks"][0]["tags"] = tags
    status, body = http("POST", farm.url + "/graphs/", graph, token=token or farm.token)
    assert status == 201, body
    return body["id"]


def node(farm, ident):
    return farm.get(f"/nodes/{ident}")[1]


def screenshot(driver, name):
    if os.environ.get("PULI_SAVE_SCREENSHOTS"):
        docs = Path(ROOT) / "docs"
        docs.mkdir(exist_ok=True)
        driver.save_screenshot(str(docs / name))


def test_a_wrangler_signs_in_finds_a_job_by_filter_and_pauses_and_resumes_it(farm, browser):
    wanted = held(farm, "ui_comp_v012", prod="wolf", shot="sh010")
    other = held(farm, "ui_light_v003", prod="wolf", shot="sh020")
    sign_in(browser, farm, farm.wrangler)
    assert text_of(browser, "#me").startswith("wendy")
    browser.find_element("name", "constraint_name").send_keys("*comp*")
    browser.find_element("name", "constraint_shot").send_keys("sh010")
    click(browser, "#filter")
    shows(browser, "#jobs tbody", "ui_comp_v012")
    rows = browser.find_elements("css selector", "#jobs tbody tr[data-id]")
    assert [r.get_attribute("data-id") for r in rows] == [str(wanted)]
    assert "ui_light_v003" not in text_of(browser, "#jobs")

    click(browser, f'input[name=job][value="{wanted}"]')
    click(browser, '#job-actions button[data-action="pause"]')
    flash(browser, "pause: 1 done")
    assert node(farm, wanted)["paused"] is True and node(farm, other)["paused"] is False
    shows(browser, f'#jobs tr[data-id="{wanted}"]', "paused")

    click(browser, f'input[name=job][value="{wanted}"]')        # the refresh kept it selected: off
    click(browser, f'input[name=job][value="{wanted}"]')        # and on again
    click(browser, '#job-actions button[data-action="resume"]')
    flash(browser, "resume: 1 done")
    assert node(farm, wanted)["paused"] is False
    wait_for(lambda: "paused" not in text_of(browser, f'#jobs tr[data-id="{wanted}"]'), LIVE,
             what="the paused tag to go")


def test_a_wrangler_cancels_a_running_command_and_sees_it_canceled(farm, browser):
    gate = farm.base / "cancel-gate"
    job_id = submit(farm, dict(job("ui_cancel_me", gated(gate, 2), frames=(1, 1)), poolName="render"))
    cmd = the_command(farm, job_id)
    reaches(farm, cmd, CS.RUNNING)
    sign_in(browser, farm, farm.wrangler, f"/ui/jobs/{job_id}")
    shows(browser, f'#commands tr[data-id="{cmd}"]', "RUNNING")
    screenshot(browser, "ui-job.png")
    click(browser, f'#commands tr[data-id="{cmd}"] button[data-action="command-cancel"]')
    alert = wait_for(lambda: _alert(browser), what="the confirmation")
    assert f"Cancel command {cmd}?" in alert.text
    alert.accept()
    flash(browser, "cancel: 1 done")
    shows(browser, f'#commands tr[data-id="{cmd}"]', "CANCELED")
    assert farm.get(f"/commands/{cmd}")[1]["status"] == CS.CANCELED


def _alert(driver):
    from selenium.common.exceptions import NoAlertPresentException
    try:
        return driver.switch_to.alert
    except NoAlertPresentException:
        return None


def test_a_log_is_followed_while_its_command_prints(farm, browser):
    gate = farm.base / "log-gate"
    job_id = submit(farm, dict(job("ui_log", gated(gate, 3), frames=(1, 1)),
                               poolName="render"))
    cmd = the_command(farm, job_id)
    reaches(farm, cmd, CS.RUNNING)
    sign_in(browser, farm, farm.wrangler, f"/ui/commands/{cmd}/log")
    shows(browser, "#log", "mark-11")
    assert "mark-22" not in text_of(browser, "#log")
    (gate.parent / f"{gate.name}.1").touch()
    shows(browser, "#log", "mark-22")                      # followed: no reload
    screenshot(browser, "ui-log.png")
    (gate.parent / f"{gate.name}.2").touch()
    shows(browser, "#log", "mark-33")
    shows(browser, "#log-status", "DONE")
    log = text_of(browser, "#log")
    assert log.count("mark-11") == 1 and log.count("mark-33") == 1
    assert "bytes" in text_of(browser, "#log-size")
    link = browser.find_element("id", "log-download").get_attribute("href")
    assert link.endswith(f"/commands/{cmd}/log")


def test_a_render_node_goes_unknown_when_its_worker_is_killed(farm, browser):
    victim = farm.workers[1]
    sign_in(browser, farm, farm.token, "/ui/rendernodes")
    row = f'#rendernodes tr[data-name="{victim.name}"]'
    wait_for(lambda: "UNKNOWN" not in text_of(browser, row) and text_of(browser, row), LIVE, what="the node up")
    screenshot(browser, "ui-rendernodes.png")
    os.killpg(victim.proc.pid, signal.SIGKILL)
    victim.proc.wait(10)
    shows(browser, row, "UNKNOWN", timeout=LIVE + 10)
    assert farm.get(f"/rendernodes/{victim.name}")[1]["statusName"] == "UNKNOWN"


def test_an_artist_is_not_offered_another_users_job_and_the_server_refuses_it_anyway(farm, browser):
    theirs = held(farm, "ui_not_anns", prod="wolf")
    own = held(farm, "ui_anns_own", token=farm.artist, prod="wolf")
    sign_in(browser, farm, farm.artist)
    shows(browser, "#jobs", "ui_anns_own")
    screenshot(browser, "ui-jobs.png")
    assert not browser.find_elements("css selector", f'input[name=job][value="{theirs}"]')
    assert browser.find_elements("css selector", f'input[name=job][value="{own}"]')
    browser.get(f"{farm.url}/ui/jobs/{theirs}")
    shows(browser, "#tree", "ui_not_anns")
    assert not browser.find_elements("css selector", "button[data-action]")      # nothing offered
    # What a crafted request from the signed-in page gets: the API's refusal, and no change.
    status = browser.execute_async_script("""
        const done = arguments[arguments.length - 1];
        fetch(`/nodes/${arguments[0]}/cancel`, {method: "PUT", headers: {"Content-Type": "application/json",
              "X-CSRF-Token": document.querySelector('meta[name="csrf-token"]').content}, body: "{}"})
          .then(r => r.json().then(b => done([r.status, b.description])));""", theirs)
    assert status[0] == 403 and "ann" in status[1], status
    assert node(farm, theirs)["statusName"] != "CANCELED"

    browser.get(f"{farm.url}/ui/jobs?constraint_user=ann")
    click(browser, f'input[name=job][value="{own}"]')
    click(browser, '#job-actions button[data-action="cancel"]')
    wait_for(lambda: _alert(browser), what="the confirmation").accept()
    flash(browser, "cancel: 1 done")
    assert node(farm, own)["statusName"] == "CANCELED"


def test_a_bad_token_and_a_bad_filter_say_what_is_wrong_in_the_page(farm, browser):
    browser.get(farm.url + "/ui/signin")
    browser.find_element("id", "token").send_keys("puli_not-a-real-token")
    click(browser, "#signin")
    shows(browser, "#error", "does not sign in")
    sign_in(browser, farm, farm.token)
    browser.get(farm.url + "/ui/jobs?constraint_status=42")
    shows(browser, "#error", "42")
    browser.get(farm.url + "/ui/jobs/99999999")
    shows(browser, "#error", "no job 99999999")
    assert "Traceback" not in browser.page_source
