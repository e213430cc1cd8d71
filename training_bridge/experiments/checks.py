"""What a search request is checked against besides itself: whether a trial can report its
objective metric, and whether `parallel` trials fit the owner's quota."""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import os
import re
import stat
import tarfile
from pathlib import Path

from sqlalchemy import select

from spawner.options import InvalidOptions
from spawner.quotas import GIB

from .. import store as job_store

# text files larger than this are not read for metric names (data, not code)
MAX_TEXT_BYTES = 2 * 1024**2


def _mentions(text: str, metric: str) -> bool:
    """Whether code names the metric as a quoted string ('loss', "loss", or \\"loss\\" inside
    a notebook's JSON)."""
    quoted = re.escape(metric)
    return bool(re.search(rf"(['\"]){quoted}\1|\\\"{quoted}\\\"", text))


def _archive_mentions(archive: str, metric: str, limit: int) -> bool | None:
    """Whether a text file of a base64 .tar.gz names the metric; None if it cannot be read
    (the job's own checks then say what is wrong with it)."""
    try:
        raw = base64.b64decode(archive, validate=True)
    except (binascii.Error, ValueError, TypeError):
        return None
    if len(raw) > limit:
        return None
    try:
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:*") as tar:
            read = 0
            for member in tar:
                if not member.isfile() or member.size > MAX_TEXT_BYTES:
                    continue
                read += member.size
                if read > limit:
                    break
                f = tar.extractfile(member)
                if f is None:
                    continue
                try:
                    text = f.read().decode()
                except UnicodeDecodeError:
                    continue
                if _mentions(text, metric):
                    return True
    except (tarfile.TarError, EOFError, OSError, ValueError):
        return None
    return False


def _folder_mentions(folder: Path, metric: str) -> bool:
    """Whether a text file below a version's code folder names the metric (links are not
    followed: the folder is what a user sent)."""
    for root, _dirs, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            try:
                info = os.lstat(path)
                if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_TEXT_BYTES:
                    continue
                with open(path, "rb") as f:
                    text = f.read().decode()
            except (OSError, UnicodeDecodeError):
                continue
            if _mentions(text, metric):
                return True
    return False


def _reported_names(session, job_id: int) -> set[str]:
    q = (
        select(job_store.JobMetric.name)
        .join(job_store.JobVersion, job_store.JobVersion.id == job_store.JobMetric.version_id)
        .where(job_store.JobVersion.job_id == job_id)
        .distinct()
    )
    return set(session.scalars(q))


async def objective_problem(
    jobs, job, latest: int | None, previous: dict | None, body: dict, metric: str
) -> str:
    """Why no trial can report `metric` ("" when one can): it must be a metrics rule of the
    job, be named in quotes in a text file of its code, or have been reported by an earlier
    version of the (existing) job. latest, previous: an existing job's latest version and
    its spec."""
    rules = body.get("metrics")
    if rules is None and previous is not None:
        rules = previous.get("metrics")
    if isinstance(rules, list) and any(
        isinstance(r, dict) and r.get("name") == metric for r in rules
    ):
        return ""
    source = body.get("source")
    limit = jobs.config.max_code_mib * 1024**2
    if isinstance(source, dict):
        found = await asyncio.to_thread(_archive_mentions, source.get("archive"), metric, limit)
        if found is None or found:
            return ""
    elif latest is not None and job is not None:
        folder = jobs.folders.version(job.owner, job.name, latest) / "code"
        if await asyncio.to_thread(_folder_mentions, folder, metric):
            return ""
    if job is not None:
        if metric in await jobs.db.run(lambda s: _reported_names(s, job.id)):
            return ""
    return (
        f"objective metric {metric!r} is reported by no trial: report it with "
        f"workbench.training.report_metric({metric!r}, value, step) or add a metrics rule."
    )


async def quota_problems(quotas, policy, owner: str, flavor_name, nodes, parallel: int) -> list:
    """Why `parallel` trials of `nodes` nodes of a flavor cannot run at once within the
    owner's quota (vcpus, memory_gib, gpus, running_jobs; 0 is no limit)."""
    if quotas is None or policy is None or not isinstance(flavor_name, str):
        return []
    try:
        flavor = policy.flavor(flavor_name)
    except InvalidOptions:
        return []  # the job's own checks name the flavor
    if isinstance(nodes, bool) or not isinstance(nodes, int) or not 1 <= nodes <= 64:
        nodes = 1  # the job's own checks say what is wrong with it
    limits = await quotas.limits(owner)
    need = {
        "running_jobs": (1, "running jobs"),
        "vcpus": (flavor.cpu * nodes, "vCPUs"),
        "memory_gib": (flavor.memory * nodes / GIB, "GiB of memory"),
        "gpus": (flavor.gpu * nodes, "GPUs"),
    }
    problems = []
    for key, (one, unit) in need.items():
        limit = limits.get(key) or 0
        if not limit or not one or one * parallel <= limit + 1e-9:
            continue
        fits = int((limit + 1e-9) // one)
        if fits < 1:
            problems.append(
                f"one trial needs {one:g} {unit} ({nodes} node(s) of flavor {flavor.name}) but "
                f"your quota is {limit:g}: pick a smaller flavor or fewer nodes."
            )
        else:
            problems.append(
                f"parallel {parallel} needs {one * parallel:g} {unit} at once but your quota "
                f"is {limit:g}: use parallel {fits} or less."
            )
    return problems
