"""What the search tests share: the trial script's source, a search request, waiting."""

from __future__ import annotations

import time
from pathlib import Path

from ..jobs_helpers import archive

HERE = Path(__file__).parent
SEARCH_ENDED = ("completed", "stopped", "failed")
QUADRATIC_SPACE = {
    "x": {"type": "float", "low": -1, "high": 1},
    "lr": {"type": "float", "low": 1e-4, "high": 1, "log": True},
    "opt": {"type": "categorical", "choices": ["sgd", "adam"]},
}


def quadratic_source() -> dict:
    """The quadratic trial script (job_quadratic.py here) as a file job's source."""
    text = (HERE / "job_quadratic.py").read_text()
    return {"kind": "file", "entry": "quadratic.py", "archive": archive({"quadratic.py": text})}


def source_of(code: str, entry: str = "trial.py") -> dict:
    return {"kind": "file", "entry": entry, "archive": archive({entry: code})}


def quadratic_search(job: str, **changes) -> dict:
    """A search request over the quadratic script (python image, short trials)."""
    body = {
        "job": job,
        "source": quadratic_source(),
        "image": "python",
        "flavor": "cpu.tiny",
        "hyperparameters": {"steps": 4, "sleep": 0.2},
        "space": QUADRATIC_SPACE,
        "objective": {"metric": "loss", "direction": "minimize"},
        "trials": 4,
        "parallel": 2,
    }
    body.update(changes)
    return body


def wait_search(client, search_id: int, states=SEARCH_ENDED, timeout: float = 600) -> dict:
    deadline = time.monotonic() + timeout
    model = client.api("GET", f"searches/{search_id}")
    while model["state"] not in states:
        if time.monotonic() > deadline:
            raise AssertionError(f"search {search_id} still {model['state']}: {model}")
        time.sleep(1)
        model = client.api("GET", f"searches/{search_id}")
    return model


def versions_by_trial(client, owner: str, job: str, search_id: int) -> dict[int, dict]:
    """The job's versions made by the search, by trial number (each must be once)."""
    out: dict[int, dict] = {}
    for v in client.api("GET", f"jobs/{owner}/{job}")["versions"]:
        origin = v["spec"].get("origin") or {}
        if origin.get("search") == search_id and "trial" in origin:
            assert origin["trial"] not in out, f"trial {origin['trial']} has two versions"
            out[origin["trial"]] = v
    return out
