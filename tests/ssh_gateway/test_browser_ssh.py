"""SSH in the web UI, in headless Chromium: the spawn form's SSH fields, the home page's link
to an instance's ssh command and config block, and the keys page (add, list, delete).
Needs Chromium at /usr/bin/chromium (or $WORKBENCH_CHROMIUM): a missing browser fails."""

from __future__ import annotations

import re
import secrets
import subprocess
import time

import pytest
from playwright.sync_api import expect

from tests.hub.test_browser import (  # noqa: F401 - browser is the shared fixture
    LAB_TIMEOUT_MS,
    PAGE_TIMEOUT_MS,
    browser,
    shot,
    signed_in,
)

pytestmark = [pytest.mark.integration, pytest.mark.browser]

USER = "sasha"
PASSWORD = "pw-" + secrets.token_hex(8)
NAME = "sshform"


@pytest.fixture(scope="module")
def dora(hub):
    client = hub.add_user(USER, PASSWORD)
    yield client
    for model in client.instances(USER):
        if model["state"] != "stopped":
            client.stop_instance(model["name"])
        client.delete_instance(model["name"])


@pytest.fixture(scope="module")
def page(hub, dora, browser):  # noqa: F811 - browser is the shared fixture
    with signed_in(browser, hub, USER, PASSWORD) as page:
        yield page


def test_keys_page_add_list_delete(hub, dora, page, tmp_path):
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "k")], check=True
    )
    public_key = (tmp_path / "k.pub").read_text().strip()
    page.goto(f"{hub.url}/services/workbench/keys")
    expect(page.locator("h1")).to_have_text(f"SSH keys of {USER}")
    rows = page.locator("#keys tbody tr")
    expect(rows).to_have_count(0)
    # a malformed key is refused with the API's message, nothing is added
    page.fill("#add-key input[name=name]", "laptop")
    page.fill("#add-key textarea[name=public_key]", "ssh-ed25519 not-a-key")
    page.click("#add-key button[type=submit]")
    expect(page.locator("#message")).to_contain_text("public key")
    expect(rows).to_have_count(0)
    page.fill("#add-key textarea[name=public_key]", public_key)
    page.click("#add-key button[type=submit]")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("laptop")
    expect(rows.first).to_contain_text("ed25519")
    expect(rows.first).to_contain_text("never")
    assert [k["name"] for k in dora.keys()] == ["laptop"]
    shot(page, "ssh-keys-added")
    page.once("dialog", lambda dialog: dialog.accept())
    rows.first.locator("button", has_text="delete").click()
    expect(rows).to_have_count(0)
    assert dora.keys() == []


def test_spawn_form_ssh_fields_and_home_link(hub, dora, page):
    page.goto(f"{hub.url}/hub/spawn/{USER}/{NAME}")
    expect(page.locator("#wb-ssh-enabled")).not_to_be_checked()
    # an allowlist entry that is no address: the form comes back with the reason
    page.check("#wb-ssh-enabled")
    page.fill("#wb-ssh-allowlist", "not-an-address")
    page.fill("#wb-storage", "1")
    page.click("#spawn_form button[type=submit]")
    expect(page.locator("body")).to_contain_text("is not an IP address or CIDR")
    # nothing started: the instance is still a draft
    assert [m["state"] for m in dora.instances()] == ["creating"]
    page.goto(f"{hub.url}/hub/spawn/{USER}/{NAME}")
    page.check("#wb-ssh-enabled")
    page.fill("#wb-ssh-allowlist", "127.0.0.0/8, 10.1.0.0/16")
    page.fill("#wb-storage", "1")
    shot(page, "ssh-spawn-form")
    page.click("#spawn_form button[type=submit]")
    page.wait_for_url(
        re.compile(rf"/(hub/spawn-pending|user)/{USER}/{NAME}"), timeout=LAB_TIMEOUT_MS
    )
    deadline = time.monotonic() + 60
    while dora.instance(NAME)["state"] != "running":
        assert time.monotonic() < deadline, dora.instance(NAME)
        time.sleep(1)
    assert dora.instance(NAME)["ssh"] == {
        "enabled": True,
        "allowlist": ["127.0.0.0/8", "10.1.0.0/16"],
    }
    # the home page links to the instance's ssh command and config block
    page.goto(f"{hub.url}/hub/home")
    page.click(f"#ssh-{NAME}")
    page.wait_for_url(f"**/services/workbench/keys?instance={NAME}**")
    section = page.locator(f"#ssh-{NAME}")
    expect(section.locator(".ssh-command")).to_have_text(
        f"ssh -p {hub.ssh_port} {USER}.{NAME}@127.0.0.1"
    )
    expect(section.locator(".ssh-config")).to_contain_text(f"Host workbench-{NAME}")
    expect(section.locator("h3")).to_contain_text("127.0.0.0/8, 10.1.0.0/16")
    shot(page, "ssh-access")
