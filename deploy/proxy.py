"""The proxy: configurable-http-proxy's Deployment, its API and public Services, the Ingress."""

from __future__ import annotations

from .common import (
    HUB,
    HUB_UID,
    PROXY,
    PROXY_API,
    PROXY_PORT,
    PROXY_PUBLIC,
    checksum,
    container_security_context,
    deployment,
    metadata,
    place_on_hub_nodes,
    selector,
)


def make_deployment(values: dict, namespace: str, image: str, settings, secret: dict) -> dict:
    """configurable-http-proxy from the hub image, with zero-to-jupyterhub's flags: the public
    port 8000, the API on proxy_api_port, the hub as default and error target. It keeps its
    routes while the hub restarts, so users' open connections survive a hub upgrade."""
    proxy = values["proxy"]
    hub_url = f"http://{HUB}:{settings.hub_port}"
    container = {
        "name": "chp",
        "image": image,
        "imagePullPolicy": values["hub"]["imagePullPolicy"],
        "args": [
            "configurable-http-proxy",
            "--ip=",
            "--api-ip=",
            f"--api-port={settings.proxy_api_port}",
            f"--default-target={hub_url}",
            f"--error-target={hub_url}/hub/error",
            f"--port={PROXY_PORT}",
        ],
        "env": [
            {
                "name": "CONFIGPROXY_AUTH_TOKEN",
                "valueFrom": {"secretKeyRef": {"name": HUB, "key": "proxy-token"}},
            }
        ],
        "ports": [
            {"name": "http", "containerPort": PROXY_PORT, "protocol": "TCP"},
            {"name": "api", "containerPort": settings.proxy_api_port, "protocol": "TCP"},
        ],
        "resources": proxy["resources"],
        "readinessProbe": {
            "httpGet": {"path": "/_chp_healthz", "port": "http"},
            "periodSeconds": 2,
            "failureThreshold": 1000,
        },
        "livenessProbe": {
            "httpGet": {"path": "/_chp_healthz", "port": "http"},
            "initialDelaySeconds": 60,
            "periodSeconds": 10,
            "failureThreshold": 30,
        },
        "securityContext": container_security_context(),
    }
    pod_spec = {
        # the proxy never calls the Kubernetes API
        "automountServiceAccountToken": False,
        "securityContext": {
            "runAsUser": HUB_UID,
            "runAsNonRoot": True,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
    }
    place_on_hub_nodes(pod_spec, values)
    token = secret["data"]["proxy-token"]
    annotations = {"checksum/proxy-token": checksum({"token": token}), **proxy["podAnnotations"]}
    return deployment(PROXY, namespace, pod_spec, annotations)


def make_public_service(service: dict, namespace: str, name: str, component: str, ports) -> dict:
    """A Service users reach (LoadBalancer, NodePort or ClusterIP) as the values describe it."""
    spec = {"type": service["type"], "selector": selector(component), "ports": []}
    for port_name, port, target in ports:
        entry = {"name": port_name, "port": port, "targetPort": target, "protocol": "TCP"}
        if service["nodePort"] and service["type"] != "ClusterIP":
            entry["nodePort"] = service["nodePort"]
        spec["ports"].append(entry)
    if service["type"] == "LoadBalancer" and service["loadBalancerSourceRanges"]:
        spec["loadBalancerSourceRanges"] = list(service["loadBalancerSourceRanges"])
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(name, namespace, component, annotations=service["annotations"]),
        "spec": spec,
    }


def make_services(values: dict, namespace: str, settings) -> list[dict]:
    """proxy-api (the hub's calls only) and proxy-public (users)."""
    api = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(PROXY_API, namespace, PROXY),
        "spec": {
            "type": "ClusterIP",
            "selector": selector(PROXY),
            "ports": [
                {
                    "name": "api",
                    "port": settings.proxy_api_port,
                    "targetPort": "api",
                    "protocol": "TCP",
                }
            ],
        },
    }
    service = values["proxy"]["service"]
    public = make_public_service(
        service, namespace, PROXY_PUBLIC, PROXY, [("http", service["port"], "http")]
    )
    return [api, public]


def make_ingress(values: dict, namespace: str) -> list[dict]:
    """The Ingress to proxy-public, with TLS where a Secret is named (none when disabled)."""
    ingress = values["proxy"]["ingress"]
    if not ingress["enabled"]:
        return []
    backend = {"service": {"name": PROXY_PUBLIC, "port": {"name": "http"}}}
    spec = {
        "rules": [
            {
                "host": host,
                "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": backend}]},
            }
            for host in ingress["hosts"]
        ]
    }
    if ingress["ingressClassName"]:
        spec["ingressClassName"] = ingress["ingressClassName"]
    if ingress["tls"]["secretName"]:
        secret_name = ingress["tls"]["secretName"]
        spec["tls"] = [{"hosts": list(ingress["hosts"]), "secretName": secret_name}]
    return [
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": metadata(PROXY, namespace, PROXY, annotations=ingress["annotations"]),
            "spec": spec,
        }
    ]
