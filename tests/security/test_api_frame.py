"""A page served from the attacker's instance, opened by a signed-in victim in Chromium.

The attacker (mallory) controls the code of their own instance. A file written under
~/.local/share/jupyter/labextensions/ is served by their JupyterLab, without sign-in, as
text/html with no sandbox, at /user/mallory/<instance>/lab/extensions/...: any visitor's
browser runs its script. Mallory sends the victim (victor) a link to such a page, which then
tries every way to act on the platform in victor's name: frame the service's API frame and
read its XSRF token or have it call the API, call the API and JupyterHub's API with victor's
cookies, frame victor's home page and drive its API helper.

The hub here runs with subdomain_host = http://hub.localhost:PORT (Chromium resolves every
*.localhost name to this machine; this test process resolves them through a patched
getaddrinfo): the hub's pages and the platform API on hub.localhost, mallory's instances on
mallory.hub.localhost. A real deployment has a wildcard DNS record instead.
"""

from __future__ import annotations

import json
import socket
from types import SimpleNamespace
from urllib.parse import urlparse

import pytest
import requests
from playwright.sync_api import expect

from tests.hub.test_browser import browser, signed_in  # noqa: F401 - the shared browser fixture
from tests.platform import Hub, remove_engine_objects, run_code

pytestmark = [pytest.mark.integration, pytest.mark.browser]

VICTIM, VICTIM_INSTANCE = "victor", "precious"
ATTACKER, TRAP_INSTANCE = "mallory", "trap"
TRAP_FILE = "labextensions/trap/static/trap.html"

# what the attacker's page tries; it records every result in window.results
TRAP_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>cat pictures</title>
</head><body><p>Loading cat pictures...</p><script>
var HUB = __HUB__, VICTIM = __VICTIM__, INSTANCE = __INSTANCE__;
var API = HUB + "/services/workbench/api";
var results = {tokens: [], messages: [], reads: {}, done: false};
window.results = results;
function note(key, value) { results.reads[key] = String(value).slice(0, 300); }
window.addEventListener("message", function (e) {
  results.messages.push(JSON.stringify({origin: e.origin, data: e.data}).slice(0, 300));
  if (e.data && e.data.xsrf) { results.tokens.push(e.data.xsrf); }
});
function frame(name, src, onload) {
  var f = document.createElement("iframe");
  f.name = name;
  f.src = src;
  f.onload = function () { onload(f); };
  document.body.appendChild(f);
}
var attacks = [
  ["GET", "/users/" + VICTIM + "/keys"],
  ["DELETE", "/users/" + VICTIM + "/instances/" + INSTANCE],
  ["POST", "/users/" + VICTIM + "/instances/" + INSTANCE + "/stop"]
];
// 1. the service's API frame, as the home page frames it: read it, or have it call the API
frame("api-frame", HUB + "/services/workbench/api-frame", function (f) {
  try { note("frame_dom", f.contentDocument.documentElement.outerHTML); }
  catch (err) { note("frame_dom", "blocked: " + err.name); }
  attacks.forEach(function (a, i) {
    f.contentWindow.postMessage({type: "workbench-api", id: i, method: a[0], path: a[1]}, "*");
  });
});
// 2. victor's home page: read it, or drive its API helper
frame("home", HUB + "/hub/home", function (f) {
  try {
    note("home_dom", f.contentDocument.documentElement.outerHTML);
    f.contentWindow.workbenchAPI(attacks[1][0], attacks[1][1]).then(
      function (r) { note("home_api", "called: " + JSON.stringify(r)); },
      function (err) { note("home_api", "refused: " + err.message); });
  } catch (err) { note("home_dom", "blocked: " + err.name); }
});
// 3. the APIs straight, with victor's cookies
function call(key, url, init) {
  init.credentials = "include";
  return fetch(url, init).then(function (r) {
    return r.text().then(function (t) { note(key, r.status + " " + t); });
  }, function (err) { note(key, "error: " + err.message); });
}
Promise.all([
  call("api_keys", API + attacks[0][1], {}),
  call("api_delete", API + attacks[1][1], {method: "DELETE"}),
  call("api_stop_no_cors", API + attacks[2][1], {method: "POST", mode: "no-cors"}),
  call("hub_api_delete", HUB + "/hub/api/users/" + VICTIM + "/servers/" + INSTANCE,
       {method: "DELETE"}),
  call("frame_fetch", HUB + "/services/workbench/api-frame", {}),
  // the same paths on this page's own host
  call("own_host_api", "/services/workbench/api" + attacks[0][1], {}),
  call("own_host_frame", "/services/workbench/api-frame", {})
]).then(function () {
  setTimeout(function () { note("cookies", document.cookie); results.done = true; }, 4000);
});
</script></body></html>
"""


def resolve_localhost_names(getaddrinfo):
    """getaddrinfo that answers every *.localhost name with loopback, as browsers do."""

    def patched(host, *args, **kwargs):
        # httpx (through anyio) asks with the IDNA-encoded name: bytes
        name = host.decode() if isinstance(host, bytes) else host
        if isinstance(name, str) and name.endswith(".localhost"):
            host = "127.0.0.1"
        return getaddrinfo(host, *args, **kwargs)

    return patched


@pytest.fixture(scope="module")
def sub_hub(tmp_path_factory, engine, base_image, test_catalog):
    """A hub of its own with subdomain_host: each user's instances on their own host."""
    h = Hub(
        tmp_path_factory.mktemp("subdomains"),
        extra_settings=f'catalog_path = "{test_catalog}"',
        engine_url=engine.url,
    )
    h.public = f"http://hub.localhost:{h.port}"
    with h.config.open("a") as config:
        config.write(f'subdomain_host = "{h.public}"\n')
    h.url = h.public
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket, "getaddrinfo", resolve_localhost_names(socket.getaddrinfo))
        h.start()
        yield h
        h.stop()
    remove_engine_objects(engine.url, h.prefix)
    print(f"\n--- subdomain hub log tail ---\n{h.log_tail(40)}")


@pytest.fixture(scope="module")
def victor(sub_hub):
    client = sub_hub.add_user(VICTIM)
    client.create_instance(VICTIM_INSTANCE, image="python", flavor="cpu.small")
    client.add_key("laptop", generated_public_key())
    return client


@pytest.fixture(scope="module")
def trap_url(sub_hub):
    """Mallory's page: written from a kernel of her running instance, served by it."""
    mallory = sub_hub.add_user(ATTACKER)
    mallory.create_instance(TRAP_INSTANCE, image="python", flavor="cpu.small")
    own_host = f"http://{ATTACKER}.hub.localhost:{sub_hub.port}"
    page = (
        TRAP_PAGE.replace("__HUB__", json.dumps(sub_hub.public))
        .replace("__VICTIM__", json.dumps(VICTIM))
        .replace("__INSTANCE__", json.dumps(VICTIM_INSTANCE))
    )
    code = (
        "import os, pathlib\n"
        f"p = pathlib.Path(os.path.expanduser('~/.local/share/jupyter/{TRAP_FILE}'))\n"
        "p.parent.mkdir(parents=True, exist_ok=True)\n"
        f"p.write_text({page!r})\n"
        "print('written')\n"
    )
    server = SimpleNamespace(url=own_host, token=mallory.token)
    out = run_code(server, f"/user/{ATTACKER}/{TRAP_INSTANCE}/", code)
    assert "written" in out["stdout"], out
    url = f"{own_host}/user/{ATTACKER}/{TRAP_INSTANCE}/lab/extensions/trap/static/trap.html"
    # served to anyone, without sign-in, as a page whose script runs
    r = requests.get(url, timeout=30)
    assert r.status_code == 200 and "text/html" in r.headers["Content-Type"], r.headers
    assert "sandbox" not in r.headers.get("Content-Security-Policy", "")
    return url


def generated_public_key() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key = ed25519.Ed25519PrivateKey.generate().public_key()
    return key.public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    ).decode()


def test_hub_gets_subdomain_host_and_the_api_stays_on_the_hub_host(sub_hub, victor):
    """With subdomain_host set, JupyterHub serves each user's instance on that user's own
    host, the platform API answers on the hub's host, and the instance is not served on the
    hub's host (a request there only redirects to the instance's host)."""
    assert victor.flavors(), "the platform API answers at the hub's public URL"
    own = f"http://{VICTIM}.hub.localhost:{sub_hub.port}/user/{VICTIM}/{VICTIM_INSTANCE}"
    headers = {"Authorization": f"token {victor.token}"}
    r = requests.get(f"{own}/api/status", headers=headers, timeout=30)
    assert r.status_code == 200, r.text[:300]
    assert "last_activity" in r.json()
    on_hub = f"{sub_hub.public}/user/{VICTIM}/{VICTIM_INSTANCE}/api/status"
    r = requests.get(on_hub, headers=headers, timeout=30)
    hosts = [urlparse(step.url).hostname for step in [*r.history, r]]
    assert r.status_code != 200 or hosts[-1] == f"{VICTIM}.hub.localhost", hosts


def test_hostile_page_cannot_act_in_the_victims_name(sub_hub, victor, trap_url, browser):  # noqa: F811
    """Victor, signed in, opens mallory's link. Her page frames the service's API frame (to read
    its XSRF token or have it call the API), frames victor's home page (to drive its API
    helper), and calls the platform API and JupyterHub's API with victor's cookies, to list
    his SSH keys, stop and delete his instance. Every attempt fails: her page is on her own
    origin, so the browser lets it read none of these answers, the API frame answers only the
    hub's pages, and a cookie without the XSRF token moves nothing. Victor's instance keeps
    running and his keys were not read. The home page's own API frame still works."""
    with signed_in(browser, sub_hub, VICTIM, sub_hub.passwords[VICTIM]) as page:
        page.goto(trap_url)
        page.wait_for_function("window.results && window.results.done", timeout=60_000)
        results = page.evaluate("window.results")
        print("what the hostile page got:", json.dumps(results, indent=1))
        reads = results["reads"]
        assert not results["tokens"], results
        assert not results["messages"], f"the API frame answered mallory's page: {results}"
        for key in ("frame_dom", "home_dom"):
            assert reads.get(key, "blocked (never loaded)").startswith("blocked"), reads
        assert "home_api" not in reads, reads
        for key in ("api_keys", "api_delete", "hub_api_delete", "frame_fetch"):
            # cross-origin without CORS: the browser hands the page no answer
            assert reads[key].startswith("error"), (key, reads[key])
        assert reads["api_stop_no_cors"].startswith("0"), reads  # opaque, and refused
        for key in ("own_host_api", "own_host_frame"):
            # her own host does not serve the platform API or the API frame
            assert "laptop" not in reads[key] and "workbench-api" not in reads[key], reads
        assert "jupyterhub-hub-login" not in reads["cookies"]

        # nothing happened to victor's instance or keys
        model = victor.instance(VICTIM_INSTANCE)
        assert model["state"] == "running", model
        assert [k["name"] for k in victor.keys()] == ["laptop"]

        # the hub's own page still calls the API through the API frame
        page.goto(f"{sub_hub.public}/hub/home")
        expect(page.locator("#saved-images-loading")).to_have_count(0)
        expect(page.locator("#saved-images-error")).to_have_count(0)
        expect(page.locator("#saved-images")).to_contain_text("None yet")
        keys = page.evaluate(f"window.workbenchAPI('GET', '/users/{VICTIM}/keys')")
        assert [k["name"] for k in keys] == ["laptop"]


def test_api_frame_is_only_a_frame(sub_hub, victor):
    """An attacker who got a request past the browser's origin checks (a script on the hub's
    origin, in a one-origin deployment) fetches the API frame page to read the token from it:
    the API frame answers only a frame load."""
    s = requests.Session()
    s.headers["Authorization"] = f"token {victor.token}"
    r = s.get(
        f"{sub_hub.public}/services/workbench/api-frame",
        headers={"Sec-Fetch-Dest": "empty", "Sec-Fetch-Mode": "cors"},
        allow_redirects=False,
        timeout=30,
    )
    assert r.status_code in (302, 403), r.text[:300]
    assert "xsrf" not in r.text
