"""Switching workspaces on the home page and creating an instance in one, in headless
Chromium, against the session hub of conftest.py. Screenshots go to artifacts/screenshots/.
A missing Chromium fails these tests, it never skips them."""

from __future__ import annotations

import secrets

import pytest
from playwright.sync_api import expect

from tests.hub.test_browser import browser, shot, signed_in  # noqa: F401 - the browser fixture

pytestmark = [pytest.mark.integration, pytest.mark.browser]

USER = "wanda"
PASSWORD = "pw-" + secrets.token_hex(8)


@pytest.fixture(scope="module")
def wanda(hub):
    client = hub.add_user(USER, PASSWORD)
    hub.client().api(
        "POST", "workspaces", {"name": "vision", "description": "CV team", "members": [USER]}
    )
    client.create_instance("plain", start=False)
    yield client
    for instance in client.instances():
        if instance["state"] == "running":
            client.stop_instance(instance["name"])
        client.delete_instance(instance["name"])


@pytest.fixture(scope="module")
def page(hub, wanda, browser):  # noqa: F811 - browser is the shared fixture
    with signed_in(browser, hub, USER, PASSWORD, height=1000) as page:
        yield page


def test_switch_workspace_and_create_an_instance_in_it(hub, wanda, page):
    page.goto(f"{hub.url}/hub/home")
    select = page.locator("#workspace-select")
    expect(select.locator("option")).to_have_count(2)
    expect(page.locator('tr.instance-row[data-server-name="plain"]')).to_be_visible()
    select.select_option("vision")
    expect(page.locator('tr.instance-row[data-server-name="plain"]')).to_be_hidden()
    assert "workspace=vision" in page.url
    shot(page, "workspaces-01-vision")
    # create: the spawn page's form has the workspace chosen on the home page
    page.fill("#new-instance-name", "detector")
    page.click("#new-instance-btn")
    page.wait_for_url("**/hub/spawn/wanda/detector#workspace=vision")
    expect(page.locator("#wb-workspace")).to_have_value("vision")
    page.select_option("#wb-flavor", "cpu.tiny")
    shot(page, "workspaces-02-form")
    page.click("input[type=submit], button[type=submit]")
    page.wait_for_url("**/user/wanda/detector/**", timeout=120_000)
    assert wanda.instance("detector")["workspace"] == "vision"
    # back home: the choice is remembered, the new instance shows in its workspace only
    page.goto(f"{hub.url}/hub/home")
    expect(page.locator("#workspace-select")).to_have_value("vision")
    expect(page.locator('tr.instance-row[data-server-name="detector"]')).to_be_visible()
    expect(page.locator('tr.instance-row[data-server-name="plain"]')).to_be_hidden()
    shot(page, "workspaces-03-home")
    # a restart shows the workspace as fixed
    wanda.stop_instance("detector")
    page.goto(f"{hub.url}/hub/spawn/wanda/detector")
    expect(page.locator("#wb-workspace-fixed")).to_have_text("Workspace: vision")


def test_users_without_the_audit_scope_see_no_audit_link(hub, wanda, page):
    page.goto(f"{hub.url}/hub/home")
    expect(page.locator("#audit-link")).to_have_count(0)
    expect(page.locator("#usage-link")).to_be_visible()
