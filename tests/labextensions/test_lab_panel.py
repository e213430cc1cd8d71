"""The workbench panel in JupyterLab, in headless Chromium, against the session hub.

A real instance of user "lara" (SSH on) runs the base image with the panel's extension
installed: open JupyterLab, open the panel, see the instance's image and flavor and live CPU
and memory use, switch the flavor (the instance restarts; the page follows and reloads), read
the SSH details, save the instance as an image from the panel's form and follow the save to
its end, then stop the instance from the panel. Screenshots go to
artifacts/screenshots/lab-*.png. Needs Chromium at /usr/bin/chromium (or $WORKBENCH_CHROMIUM):
a missing browser fails, it never skips.
"""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import Page, expect

from tests.hub.test_browser import (
    CHROMIUM_ARGS,
    LAB_TIMEOUT_MS,
    SCREENSHOTS,
    browser,
)
from tests.labextensions.lab import lab_page

pytestmark = [pytest.mark.integration, pytest.mark.browser]

USER = "lara"
NAME = "panel-nb"
IMAGE, TAG = "panel-img", "v1"
SAVE_TIMEOUT_MS = 120_000
RESTART_TIMEOUT_MS = 180_000

__all__ = ["browser", "CHROMIUM_ARGS"]


def shot(page: Page, name: str):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"lab-{name}.png"))


@pytest.fixture(scope="module")
def erin(hub):
    """lara with a running instance on cpu.tiny, SSH on; stopped and deleted after, with the
    image saved from it."""
    client = hub.add_user(USER)
    body = {
        "name": NAME,
        "image": "python",
        "flavor": "cpu.tiny",
        "storage_gib": 1,
        "ssh": {"enabled": True, "allowlist": []},
    }
    client.api("POST", f"users/{USER}/instances", body)
    yield client
    if client.instance(NAME, USER)["state"] != "stopped":
        client.stop_instance(NAME, USER)
    client.delete_instance(NAME, USER)
    if any(i.get("image_name") == IMAGE for i in client.images()):
        client.delete_image(IMAGE, TAG, USER)


@pytest.fixture(scope="module")
def page(hub, erin, browser):
    with lab_page(browser, hub, USER, height=900) as page:
        yield page


def open_panel(page: Page):
    """Open the panel from its sidebar tab (after a reload the layout may restore it)."""
    panel = page.locator("#jp-workbench-panel")
    if not panel.is_visible():
        page.locator("li.lm-TabBar-tab[data-id='jp-workbench-panel']").click()
    expect(panel).to_be_visible()
    return panel


def test_panel_shows_the_instance_and_switches_flavor_then_stops(hub, erin, page):
    page.goto(f"{hub.url}/user/{USER}/{NAME}/lab")
    expect(page.locator("#jp-main-dock-panel")).to_be_visible(timeout=LAB_TIMEOUT_MS)
    launcher = page.locator(".jp-Launcher")
    expect(launcher.locator(".jp-LauncherCard", has_text="Workbench Instance")).to_be_visible(
        timeout=LAB_TIMEOUT_MS
    )
    shot(page, "01-launcher")
    launcher.locator(".jp-LauncherCard", has_text="Workbench Instance").click()
    panel = open_panel(page)

    # the instance as the platform knows it
    expect(panel.locator(".jp-Workbench-name")).to_have_text(NAME)
    expect(panel.locator("[data-field='image']")).to_have_text("python")
    expect(panel.locator("[data-field='flavor']")).to_have_attribute("data-flavor", "cpu.tiny")
    expect(panel.locator("[data-field='state']")).to_have_text("running")
    expect(panel.locator("[data-field='storage']")).to_contain_text("used of")
    # live usage from the container's cgroup: cpu.tiny's limits
    flavor = next(f for f in erin.flavors() if f["name"] == "cpu.tiny")
    cpu = panel.locator("[data-meter='cpu'] [data-text]")
    expect(cpu).to_contain_text(f"of {flavor['cpu']:g} vCPU")
    expect(panel.locator("[data-meter='memory'] [data-text]")).to_contain_text(
        re.compile(r"\d+ MiB of ")
    )
    status = page.locator("#jp-workbench-status")
    expect(status).to_contain_text(re.compile(r"CPU \d+% of"))
    expect(panel.locator("button[data-action='save']")).to_be_enabled()
    shot(page, "02-panel")

    # switch the flavor: pick, confirm, follow the restart, see the new flavor after reload
    panel.locator("button[data-action='flavor']").click()
    dialog = page.locator(".jp-Dialog")
    picker = dialog.locator("select.jp-Workbench-flavorSelect")
    expect(picker.locator("option[value='cpu.tiny']")).to_be_disabled()
    picker.select_option("cpu.small")
    shot(page, "03-switch-dialog")
    dialog.get_by_role("button", name="Switch and restart").click()
    overlay = page.locator("#jp-workbench-overlay")
    try:
        expect(overlay).to_be_visible(timeout=30_000)
    except AssertionError:
        shot(page, "04-no-overlay")
        raise
    expect(overlay).to_contain_text("Switching panel-nb to cpu.small")
    shot(page, "04-restarting")
    # the page reloads itself once the instance answers with the new flavor
    expect(page.locator("#jp-main-dock-panel")).to_be_visible(timeout=RESTART_TIMEOUT_MS)
    page.wait_for_function(
        "() => !document.getElementById('jp-workbench-overlay')"
        " && !!document.querySelector('.jp-LabShell')",
        timeout=RESTART_TIMEOUT_MS,
    )
    panel = open_panel(page)
    expect(panel.locator("[data-field='flavor']")).to_have_attribute(
        "data-flavor", "cpu.small", timeout=LAB_TIMEOUT_MS
    )
    small = next(f for f in erin.flavors() if f["name"] == "cpu.small")
    expect(panel.locator("[data-meter='cpu'] [data-text]")).to_contain_text(
        f"of {small['cpu']:g} vCPU", timeout=LAB_TIMEOUT_MS
    )
    shot(page, "05-after-switch")
    model = erin.instance(NAME, USER)
    assert (model["flavor"], model["state"]) == ("cpu.small", "running")

    # SSH details: the platform's command, which logs in as <user>.<instance>
    panel.locator("button[data-action='ssh']").click()
    dialog = page.locator(".jp-Dialog")
    expect(dialog).to_contain_text("SSH access")
    command = dialog.locator(".jp-Workbench-copyBlock pre").first
    expect(command).to_contain_text(re.compile(rf"^ssh .*{USER}\.{NAME}@"))
    expect(command).to_have_text(erin.instance_ssh(NAME, USER)["command"])
    expect(dialog.locator(".jp-Workbench-copyBlock pre").nth(1)).to_contain_text(
        f"User {USER}.{NAME}"
    )
    shot(page, "06-ssh")
    dialog.get_by_role("button", name="Close").click()
    expect(dialog).to_be_hidden()

    # save as image from the panel's form; the progress box follows the save to its end
    panel.locator("button[data-action='save']").click()
    dialog = page.locator(".jp-Dialog")
    expect(dialog.locator("input[name='name']")).to_have_value(NAME)
    dialog.locator("input[name='name']").fill(IMAGE)
    dialog.locator("input[name='tag']").fill(TAG)
    dialog.locator("input[name='description']").fill("saved from the panel")
    shot(page, "07-save-form")
    dialog.get_by_role("button", name="Save", exact=True).click()
    progress = panel.locator(".jp-Workbench-save")
    expect(progress).to_be_visible()
    expect(progress).to_have_attribute("data-state", "done", timeout=SAVE_TIMEOUT_MS)
    saved = [i for i in erin.images() if i.get("image_name") == IMAGE]
    assert [(i["tag"], i["state"], i["source_instance"]) for i in saved] == [
        (TAG, "ready", NAME)
    ], saved
    expect(progress.locator(".jp-Workbench-saveText")).to_have_text(f"Saved as {saved[0]['name']}")
    expect(page.locator(".jp-Notification-Toast-success")).to_contain_text(saved[0]["name"])
    shot(page, "08-saved")

    # stop from the panel: confirm, then the page shows it stopped
    panel.locator("button[data-action='stop']").click()
    page.locator(".jp-Dialog").get_by_role("button", name="Stop").click()
    overlay = page.locator("#jp-workbench-overlay")
    expect(overlay).to_be_visible()
    expect(overlay).to_have_attribute("data-state", "stopped", timeout=RESTART_TIMEOUT_MS)
    expect(overlay).to_contain_text(f"{NAME} is stopped")
    expect(overlay.get_by_role("button", name="Open the hub home")).to_be_visible()
    shot(page, "09-stopped")
    # the server is gone; the hub finishes recording the stop a moment later
    deadline = time.monotonic() + 60
    while erin.instance(NAME, USER)["state"] == "stopping" and time.monotonic() < deadline:
        time.sleep(0.5)
    assert erin.instance(NAME, USER)["state"] == "stopped"
