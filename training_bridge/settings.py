"""The [workbench.jobs] settings table: limits and timings of training jobs."""

from __future__ import annotations

from traitlets import Bool, Float, Integer
from traitlets.config import Configurable


class JobSettings(Configurable):
    """Limits and timings of training jobs (the [workbench.jobs] table of the settings)."""

    max_nodes = Integer(
        8,
        help="""Most nodes one job may ask for. Default 8.""",
    ).tag(config=True)
    max_code_mib = Integer(
        64,
        help="""Largest code snapshot a job may submit, MiB (data goes in inputs, not code).
        Default 64.""",
    ).tag(config=True)
    poll_seconds = Float(
        1.0,
        help="""Seconds between the scheduler's looks at queued and running jobs (it also wakes
        at every submission and stop). Default 1.""",
    ).tag(config=True)
    tensorboard_poll_seconds = Float(
        5.0,
        help="""Seconds between reads of a running job's TensorBoard event files for its
        metrics. Default 5.""",
    ).tag(config=True)
    stop_timeout_seconds = Float(
        10.0,
        help="""Seconds a stopping node gets after SIGTERM before it is killed. Default 10.""",
    ).tag(config=True)
    log_max_mib = Integer(
        256,
        help="""Most of one node's log the platform keeps, MiB; later lines are dropped (with
        a line saying so) so that a job printing without end cannot fill the disk.
        Default 256.""",
    ).tag(config=True)
    keep_containers = Bool(
        False,
        help="""Keep the containers of finished jobs (for debugging with `podman logs`); their
        logs are kept in the platform either way. Default False.""",
    ).tag(config=True)
    isolate_jobs = Bool(
        True,
        help="""Give each job a network of its own, isolated from instances and other jobs
        (its nodes reach each other and the outside). Default True.""",
    ).tag(config=True)
    pids_limit = Integer(
        4096,
        help="""Most processes and threads one node may run (0: the engine's default).
        Default 4096.""",
    ).tag(config=True)
