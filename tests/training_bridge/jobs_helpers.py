"""What the job tests share: code archives, waiting for a version, reading logs."""

from __future__ import annotations

import base64
import io
import tarfile
import time
from pathlib import Path

# the scripts jobs run in the tests: job_<name>.py beside this module
SCRIPTS = Path(__file__).parent
FINISHED = ("succeeded", "failed", "stopped")


def archive(files: dict[str, str | bytes]) -> str:
    """A base64 .tar.gz holding files {name: content}."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, content in files.items():
            data = content.encode() if isinstance(content, str) else content
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return base64.b64encode(buf.getvalue()).decode()


def script_source(name: str, entry: str | None = None) -> dict:
    """A file job's source from one of the test scripts (job_<name> here), as <name>."""
    entry = entry or name
    return {
        "kind": "file",
        "entry": entry,
        "archive": archive({entry: (SCRIPTS / f"job_{name}").read_text()}),
    }


def submit(client, name: str, source: dict, **fields) -> dict:
    body = {"name": name, "source": source, "image": "python", "flavor": "cpu.tiny", **fields}
    return client.api("POST", "jobs", body)


def version(client, owner: str, name: str, v: int = 1) -> dict:
    return client.api("GET", f"jobs/{owner}/{name}/versions/{v}")


def wait_for(client, owner, name, v=1, states=FINISHED, timeout=180) -> dict:
    deadline = time.monotonic() + timeout
    model = version(client, owner, name, v)
    while model["state"] not in states:
        if time.monotonic() > deadline:
            raise AssertionError(f"job {name} v{v} still {model['state']}: {model}")
        time.sleep(0.5)
        model = version(client, owner, name, v)
    return model


def logs(client, owner, name, v=1, node=0) -> str:
    url = f"{client.api_url}/jobs/{owner}/{name}/versions/{v}/logs?node={node}"
    r = client.session.get(url, timeout=30)
    r.raise_for_status()
    return r.text
