"""The [workbench.inference] settings table: limits and timings of models and services."""

from __future__ import annotations

from traitlets import Float, Integer
from traitlets.config import Configurable


class InferenceSettings(Configurable):
    """Limits and timings of models and online services (the [workbench.inference] table)."""

    max_model_mib = Integer(
        4096,
        help="""Largest model (all its files together) a user may register, MiB. Default 4096.""",
    ).tag(config=True)
    max_replicas = Integer(
        8,
        help="""Most replicas one predictor of a service may scale to. Default 8.""",
    ).tag(config=True)
    ready_timeout_seconds = Float(
        300.0,
        help="""Seconds a new replica gets to answer /v2/health/ready before it counts as
        failed (large models load slowly). Default 300.""",
    ).tag(config=True)
    poll_seconds = Float(
        1.0,
        help="""Seconds between the service manager's looks at replicas: health, crashes,
        scaling. Default 1.""",
    ).tag(config=True)
    scale_down_seconds = Float(
        60.0,
        help="""Seconds a predictor's load must stay below its target before a replica is
        removed. Default 60.""",
    ).tag(config=True)
    cold_start_timeout_seconds = Float(
        120.0,
        help="""Seconds a request waits for a predictor scaled to zero to start a replica
        before it is answered 503. Default 120.""",
    ).tag(config=True)
    request_timeout_seconds = Float(
        60.0,
        help="""Seconds the router waits for a replica's answer to one request. Default 60.""",
    ).tag(config=True)
    pids_limit = Integer(
        4096,
        help="""Most processes and threads one replica may run (0: the engine's default).
        Default 4096.""",
    ).tag(config=True)
