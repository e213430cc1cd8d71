"""Saving a running instance as an image from the home page, in headless Chromium.

The home page calls the platform API from the browser: a hidden frame loads the service's
API frame page (OAuth sign-in to the service, XSRF token), then fetch POSTs the save and polls
its progress. Against the session hub of conftest.py, as its own user "dora". Screenshots go
to artifacts/screenshots/. A missing Chromium fails these tests, it never skips them.
"""

from __future__ import annotations

import secrets

import pytest
from playwright.sync_api import expect
from workbench import WorkbenchError

from tests.hub.test_browser import PAGE_TIMEOUT_MS, browser, shot, signed_in  # noqa: F401 - the browser fixture

pytestmark = [pytest.mark.integration, pytest.mark.browser]

USER = "dora"
PASSWORD = "pw-" + secrets.token_hex(8)
INSTANCE = "save-src"
SAVE_TIMEOUT_MS = 120_000


@pytest.fixture(scope="module")
def dora(hub):
    """dora with a running instance; it and her saved images are deleted after."""
    client = hub.add_user(USER, PASSWORD)
    client.create_instance(INSTANCE, image="python", flavor="cpu.small")
    yield client
    errors = []
    for image in client.images():
        if image.get("kind") == "saved" and image.get("owner") == USER:
            try:
                client.delete_image(image["image_name"], image["tag"])
            except WorkbenchError as e:
                errors.append(f"{image['name']}: {e}")
    try:
        client.stop_instance(INSTANCE)
        client.delete_instance(INSTANCE)
    except WorkbenchError as e:
        errors.append(f"{INSTANCE}: {e}")
    assert not errors, f"cleanup failed: {errors}"


@pytest.fixture(scope="module")
def page(hub, dora, browser):  # noqa: F811 - browser is the shared fixture
    with signed_in(browser, hub, USER, PASSWORD, height=1000) as page:
        yield page


def open_save_form(page, hub, dora):
    if dora.instance(INSTANCE)["state"] != "running":  # a test before may have stopped it
        dora.start_instance(INSTANCE)
    page.goto(f"{hub.url}/hub/home")
    # the API frame has signed in to the service: the saved images list is filled
    expect(page.locator("#saved-images-loading")).to_have_count(0)
    expect(page.locator("#saved-images-error")).to_have_count(0)
    page.click(f"#save-{INSTANCE}")
    expect(page.locator("#save-image-panel")).to_be_visible()
    expect(page.locator("#save-image-instance")).to_have_text(INSTANCE)


def test_save_from_home_page_shows_progress_and_lists_the_image(hub, dora, page):
    open_save_form(page, hub, dora)
    expect(page.locator("#saved-images")).to_contain_text("None yet")
    page.fill("#save-image-name", "home-env")
    page.fill("#save-image-tag", "v1")
    page.fill("#save-image-description", "saved from the home page")
    shot(page, "save-01-form")
    page.click("#save-image-submit")
    expect(page.locator("#save-image-status")).to_be_visible()
    result = page.locator("#save-image-result")
    expect(result).to_be_visible(timeout=SAVE_TIMEOUT_MS)
    shot(page, "save-02-done")
    expect(result).to_have_class("alert mt-2 mb-0 alert-success")
    expect(result).to_contain_text("Saved as saved:dora/home-env:v1")
    expect(page.locator("#save-image-bar")).to_have_text("100%")
    expect(page.locator("#save-image-submit")).to_have_text("Save")
    expect(page.locator("#save-image-submit")).to_be_enabled()
    item = page.locator('#saved-images li[data-image="saved:dora/home-env:v1"]')
    expect(item).to_contain_text("ready")
    expect(item).to_contain_text("saved from the home page")
    # the API agrees, and a reload lists it too
    assert any(i["name"] == "saved:dora/home-env:v1" for i in dora.images())
    page.reload()
    expect(page.locator('#saved-images li[data-image="saved:dora/home-env:v1"]')).to_be_visible()


def test_refused_save_shows_the_message_and_no_spinner(hub, dora, page):
    open_save_form(page, hub, dora)
    # checked in the page: nothing is sent
    page.fill("#save-image-name", "Bad Name")
    page.click("#save-image-submit")
    expect(page.locator("#save-image-result")).to_contain_text("Invalid image name 'Bad Name'")
    # refused by the API (an existing name:tag): its message, the button back to "Save"
    dora.save_instance(INSTANCE, "taken-env", "v1")
    assert dora.wait_saved(INSTANCE)["state"] == "done"
    page.fill("#save-image-name", "taken-env")
    page.fill("#save-image-tag", "v1")
    page.click("#save-image-submit")
    result = page.locator("#save-image-result")
    expect(result).to_contain_text("You already have an image taken-env:v1")
    expect(result).to_have_class("alert mt-2 mb-0 alert-danger")
    expect(page.locator("#save-image-status")).to_be_hidden()
    expect(page.locator("#save-image-submit")).to_have_text("Save")
    expect(page.locator("#save-image-submit")).to_be_enabled()
    shot(page, "save-03-refused")
    # an instance that stopped since the page loaded: 409 with how to start it
    dora.stop_instance(INSTANCE)
    page.fill("#save-image-tag", "v2")
    page.click("#save-image-submit")
    expect(result).to_contain_text("is not running")
    expect(page.locator("#save-image-submit")).to_be_enabled()
    assert not any(i["name"] == "saved:dora/taken-env:v2" for i in dora.images())
    dora.delete_image("taken-env", "v1")  # the save test expects none yet, whatever the order
