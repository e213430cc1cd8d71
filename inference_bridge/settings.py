"""The [workbench.inference] settings table: limits and timings of models and services."""

from __future__ import annotations

from traitlets import Dict, Enum, Float, Integer, Unicode
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
    port = Integer(
        0,
        help="""A port of its own where the platform's API service also answers the calling
        path of services (the same /services/workbench/inference/... paths), on the address of
        the hub's bind_url, without the hub's proxy in front: less latency and more requests
        per second for programs that call services often (services show it as direct_url).
        0: services are called through the hub's public URL only. Default 0.""",
    ).tag(config=True)
    pids_limit = Integer(
        4096,
        help="""Most processes and threads one replica may run (0: the engine's default).
        Default 4096.""",
    ).tag(config=True)
    kubernetes_deployment_mode = Enum(
        ("Serverless", "RawDeployment"),
        "Serverless",
        help="""KServe's deployment mode of services (kubernetes backend): "Serverless"
        (Knative: canaries' traffic split, scaling on requests in flight, scale to zero) or
        "RawDeployment" (Deployments and HPAs: no canary, no scale to zero). KServe cannot
        change the mode of a deployed service: stop and start it after a change. Default
        "Serverless".""",
    ).tag(config=True)
    kubernetes_models_pvc = Unicode(
        "workbench-models",
        help="""PersistentVolumeClaim (in the services' namespace) holding the model store,
        the platform's <data_dir>/models folder (kubernetes backend): services mount a
        version's <owner>/<model>/<version> folder of it read-only. Default
        "workbench-models".""",
    ).tag(config=True)
    kubernetes_router_namespace = Unicode(
        "",
        help="""Namespace of the pod the platform API (the services' router) runs in, the hub's
        (kubernetes backend): each service's NetworkPolicy lets only it, and Knative's
        gateway, reach the service's pods. Default: kubernetes_namespace.""",
    ).tag(config=True)
    kubernetes_router_pods = Dict(
        value_trait=Unicode(),
        help="""Labels of the router's pods (the hub's) in kubernetes_router_namespace, as an
        inline table (kubernetes backend). Default: none set, which means the hub's label
        component: "hub".""",
    ).tag(config=True)
