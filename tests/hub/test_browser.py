"""The hub's web UI in headless Chromium: sign in, create an instance, open JupyterLab.

Drives the real pages (login, home, spawn form, spawn progress, JupyterLab) as a user does,
against the session hub of conftest.py, as its own user "carol". Screenshots go to
artifacts/screenshots/ (CI keeps artifacts/). Needs Chromium at /usr/bin/chromium (or
$WORKBENCH_CHROMIUM): a missing browser fails these tests, it never skips them.
"""

from __future__ import annotations

import os
import re
import secrets
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect, sync_playwright
from workbench import WorkbenchError

from tests.platform import REPO, engine_names, run_code

pytestmark = [pytest.mark.integration, pytest.mark.browser]

CHROMIUM = Path(os.environ.get("WORKBENCH_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
]
SCREENSHOTS = REPO / "artifacts" / "screenshots"

USER = "carol"
PASSWORD = "pw-" + secrets.token_hex(8)
NAME = "browser-nb"  # created through the UI and opened in JupyterLab
TOO_BIG = "browser-big"  # its spawn form is submitted with storage out of range
BUTTONS = "browser-btn"  # stopped, started and deleted with the home page's buttons
OUR_INSTANCES = (NAME, TOO_BIG, BUTTONS)

# the machine may have 2 cores: be patient with page loads and container starts
PAGE_TIMEOUT_MS = 30_000
LAB_TIMEOUT_MS = 90_000


def shot(page: Page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"browser-{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


@pytest.fixture(scope="module")
def carol(hub):
    """carol, signed up and approved; the instances this module made are deleted after."""
    client = hub.add_user(USER, PASSWORD)
    yield client
    errors = []
    for model in client.instances(USER):
        if model["name"] not in OUR_INSTANCES:
            continue
        try:
            if model["state"] != "stopped":
                client.stop_instance(model["name"], USER)
            client.delete_instance(model["name"], USER)
        except WorkbenchError as e:
            errors.append(f"{model['name']}: {e}")
    assert not errors, f"cleanup failed: {errors}"


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.is_file():
        pytest.fail(
            f"Chromium not found at {CHROMIUM}: install it (apt-get install -y chromium) "
            "or point $WORKBENCH_CHROMIUM at a Chromium binary",
            pytrace=False,
        )
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def page(hub, carol, browser):
    """A browser tab signed in as carol through the real login page."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    context.set_default_navigation_timeout(PAGE_TIMEOUT_MS)
    page = context.new_page()
    page.goto(f"{hub.url}/hub/login")
    page.fill("#username_input", USER)
    page.fill("#password_input", PASSWORD)
    shot(page, "01-login")
    page.click("#login_submit")
    page.wait_for_url("**/hub/home")
    yield page
    context.close()


@contextmanager
def signed_in(browser, hub, user: str, password: str, height: int = 900):
    """A browser tab signed in as user through the real login page, closed after."""
    context = browser.new_context(viewport={"width": 1280, "height": height})
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    context.set_default_navigation_timeout(PAGE_TIMEOUT_MS)
    page = context.new_page()
    page.goto(f"{hub.url}/hub/login")
    page.fill("#username_input", user)
    page.fill("#password_input", password)
    page.click("#login_submit")
    page.wait_for_url("**/hub/home**")
    try:
        yield page
    finally:
        context.close()


def goto_home(page: Page, hub) -> None:
    page.goto(f"{hub.url}/hub/home")
    expect(page.locator("#instances")).to_be_visible()
    expect(page.locator("#new-instance-form")).to_be_visible()


def test_create_instance_and_open_jupyterlab(hub, carol, page):
    goto_home(page, hub)
    shot(page, "02-home")
    page.fill("#new-instance-name", NAME)
    page.click("#new-instance-btn")
    # the home page's current workspace goes along in the fragment
    page.wait_for_url(f"**/hub/spawn/{USER}/{NAME}#workspace=default")

    # the spawn form lists the catalog's images and the flavors this machine can run
    image, flavor = page.locator("#wb-image"), page.locator("#wb-flavor")
    expect(image.locator("option[value='python']")).to_have_count(1)
    expect(flavor.locator("option[value='cpu.tiny']")).to_have_count(1)
    # a catalog image that is not built here is listed as such and cannot be picked
    missing = image.locator("option[value='missing']")
    expect(missing).to_contain_text("(not built)")
    expect(missing).to_be_disabled()
    expect(image.locator("option[value='python']")).not_to_contain_text("not built")
    image.select_option("python")
    flavor.select_option("cpu.tiny")
    page.fill("#wb-storage", "1")
    page.fill("#wb-description", "made in a browser")
    shot(page, "03-spawn-form")
    # the progress page follows its event stream to JupyterLab once the instance is ready:
    # hold the stream until the page has been seen, so a fast start cannot skip past it
    progress = re.compile(rf"/hub/api/users/{USER}/servers/{NAME}/progress")
    held = []

    def hold(route):
        held.append(route)

    page.route(progress, hold)
    # JupyterHub answers the form within a second with the start's progress page, which
    # subscribes to the start's events
    with page.expect_request(progress, timeout=LAB_TIMEOUT_MS):
        page.click("#spawn_form button[type=submit]")
        page.wait_for_url(f"**/hub/spawn-pending/{USER}/{NAME}**", timeout=LAB_TIMEOUT_MS)
    expect(page.locator("#progress-bar")).to_be_attached()
    expect(page.get_by_text("Your server is starting up")).to_be_visible()
    shot(page, "04-spawn-progress")
    assert held, "the progress page did not subscribe to the start's events"
    for route in held:
        route.continue_()
    page.unroute(progress)

    page.wait_for_url(f"**/user/{USER}/{NAME}/lab**", timeout=LAB_TIMEOUT_MS)
    expect(page.locator("#jp-main-dock-panel")).to_be_visible(timeout=LAB_TIMEOUT_MS)
    launcher = page.locator(".jp-Launcher")
    expect(launcher).to_be_visible(timeout=LAB_TIMEOUT_MS)
    kernel_card = launcher.locator(".jp-LauncherCard", has_text="Python 3 (no engine)")
    expect(kernel_card.first).to_be_visible()
    shot(page, "05-jupyterlab")

    goto_home(page, hub)
    row = page.locator(f"tr[data-server-name='{NAME}']")
    expect(row.locator(".instance-image")).to_have_text("python")
    expect(row.locator(".instance-flavor")).to_have_text("cpu.tiny")
    expect(row.locator(".instance-storage")).to_have_text("1 GiB")
    expect(row.locator(".instance-state")).to_have_text("running")
    expect(row.locator(".instance-name")).to_contain_text("made in a browser")
    shot(page, "06-home-running")

    model = carol.instance(NAME, USER)
    assert (model["state"], model["image"], model["flavor"]) == ("running", "python", "cpu.tiny")
    assert model["storage_gib"] == 1, (
        f"the platform API reports storage_gib={model['storage_gib']!r} for an instance made "
        "through the spawn form: the form's options are stored as strings, not validated values"
    )


def test_home_page_explains_an_invalid_instance_name(hub, page):
    goto_home(page, hub)
    url = page.url
    name_input, help_text = page.locator("#new-instance-name"), page.locator("#new-instance-help")
    expect(help_text).not_to_have_class(re.compile("text-danger"))
    name_input.fill("Bad Name")
    page.click("#new-instance-btn")
    if "Invalid name" not in help_text.inner_text() and not name_input.evaluate(
        "e => e.validity.valid"
    ):
        shot(page, "07-home-invalid-name")
        pytest.fail(
            "the browser's own constraint validation (pattern/required on #new-instance-name) "
            "blocks the submit event, so the page's readable error never shows; the user gets "
            f"only the browser's {name_input.evaluate('e => e.validationMessage')!r}",
            pytrace=False,
        )
    expect(help_text).to_contain_text("Invalid name 'Bad Name'")
    expect(help_text).to_contain_text("lower-case letters, digits and '-'")
    expect(help_text).to_have_class(re.compile("text-danger"))
    shot(page, "07-home-invalid-name")
    assert page.url == url


def test_spawn_form_rejects_storage_out_of_range(hub, carol, page):
    posts = []
    # JupyterHub puts ?_xsrf=... in the form's action: compare URLs without the query
    page.on("request", lambda r: posts.append(r.url.split("?")[0]) if r.method == "POST" else None)
    spawn_url = f"{hub.url}/hub/spawn/{USER}/{TOO_BIG}"
    page.goto(spawn_url)
    storage = page.locator("#wb-storage")
    expect(storage).to_be_visible()
    page.fill("#wb-description", "too big")
    storage.fill("999")
    # the browser checks the field's min/max itself and does not send the form ...
    assert storage.evaluate("e => e.validity.rangeOverflow")
    assert "50" in storage.evaluate("e => e.validationMessage")
    page.click("#spawn_form button[type=submit]")
    shot(page, "08-spawn-form-storage-999")

    # ... and the hub refuses it too, when sent anyway: it shows the form again with the reason
    page.locator("#spawn_form").evaluate("f => { f.noValidate = true; }")
    with page.expect_navigation():
        page.click("#spawn_form button[type=submit]")
    error = page.locator(".spawn-error-msg")
    expect(error).to_be_visible()
    expect(error).to_contain_text("between 1 and 50 GiB")
    # the form comes back with what the user typed, not the defaults
    expect(page.locator("#wb-storage")).to_have_value("999")
    expect(page.locator("#wb-description")).to_have_value("too big")
    shot(page, "09-spawn-form-storage-error")
    assert page.url.split("?")[0] == spawn_url
    assert posts == [spawn_url], posts  # only the submission with validation turned off

    # opening the spawn page made a draft of that name: listed as still being created
    drafts = [m for m in carol.instances(USER) if m["name"] == TOO_BIG]
    assert [m["state"] for m in drafts] == ["creating"]
    goto_home(page, hub)
    row = page.locator(f"tr[data-server-name='{TOO_BIG}']")
    expect(row.locator(".instance-state")).to_contain_text("creating")
    expect(row.locator(".start-server")).to_have_text("set up")
    shot(page, "10-home-after-storage-error")


def wait_state(client, name: str, state: str) -> dict:
    """The instance's model once it is in state (within a container start's patience)."""
    deadline = time.monotonic() + LAB_TIMEOUT_MS / 1000
    while (model := client.instance(name, USER))["state"] != state:
        assert time.monotonic() < deadline, model
        time.sleep(0.5)
    return model


def test_home_page_stop_start_and_delete_buttons(hub, engine, carol, page):
    """Stop ends the container; start opens the instance's own form (its options chosen,
    here changed) and starts it with its files; delete, once confirmed, removes it and its
    storage."""
    model = carol.create_instance(BUTTONS, flavor="cpu.tiny", storage_gib=1, user=USER)
    assert run_code(carol, model["url"], "open('mine.txt', 'w').write('kept')")["error"] is None
    goto_home(page, hub)
    row = page.locator(f"tr[data-server-name='{BUTTONS}']")
    expect(row.locator(".instance-state")).to_have_text("running")

    row.locator(".stop-server").click()
    # the page shows start and delete once the hub has stopped it
    expect(row.locator(".start-server")).to_be_visible(timeout=LAB_TIMEOUT_MS)
    expect(row.locator(".delete-server")).to_be_visible()
    shot(page, "11-home-stopped")
    wait_state(carol, BUTTONS, "stopped")  # the hub answers a slow stop before it is over
    assert engine_names(engine.url, "container", f"{hub.prefix}-{USER}--{BUTTONS}") == []

    row.locator(".start-server").click()
    page.wait_for_url(f"**/hub/spawn/{USER}/{BUTTONS}**")
    expect(page.locator("#wb-flavor")).to_have_value("cpu.tiny")
    expect(page.locator("#wb-storage")).to_have_value("1")
    page.locator("#wb-flavor").select_option("cpu.small")
    page.click("#spawn_form button[type=submit]")
    page.wait_for_url(f"**/hub/spawn-pending/{USER}/{BUTTONS}**", timeout=LAB_TIMEOUT_MS)
    model = wait_state(carol, BUTTONS, "running")
    assert model["flavor"] == "cpu.small", model
    out = run_code(carol, model["url"], "print(open('mine.txt').read())")
    assert out["stdout"].strip() == "kept", out

    goto_home(page, hub)
    row.locator(".stop-server").click()
    expect(row.locator(".delete-server")).to_be_visible(timeout=LAB_TIMEOUT_MS)
    wait_state(carol, BUTTONS, "stopped")
    page.once("dialog", lambda dialog: dialog.accept())
    row.locator(".delete-server").click()
    expect(row).to_have_count(0, timeout=LAB_TIMEOUT_MS)
    shot(page, "12-home-deleted")
    assert BUTTONS not in [m["name"] for m in carol.instances(USER)]
    assert engine_names(engine.url, "volume", f"{hub.prefix}-{USER}--{BUTTONS}") == []
