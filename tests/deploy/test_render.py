"""`workbench kubernetes render`: every manifest of the platform from one values file.

No Kubernetes cluster runs here. Every rendered object is validated strictly against the
official schemas of Kubernetes 1.37 (kubernetes-validate: an unknown field is an error, as
the API server makes it with fieldValidation=Strict); the hub pod's start is replayed
without a cluster: its init containers' scripts run against the rendered ConfigMap and
Secret, and JupyterHub's configuration loader reads the rendered configuration over the
project's own hub/jupyterhub_config.py.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib

import pytest
import yaml
from traitlets.config.loader import PyFileConfigLoader

from deploy.bundle import dump
from hub.cli import main as cli
from images.catalog import platform_image_ref
from tests.deploy.bundle_helpers import (
    EXAMPLES,
    HUB_IMAGE,
    REPO,
    bundle,
    find,
    secret_data,
    validate,
)


@pytest.fixture
def values_file(tmp_path):
    """A values file of the user's own (the hub image named, everything else default)."""

    def make(text: str = "", name: str = "values.yaml"):
        path = tmp_path / name
        path.write_text(f"hub:\n  image: {HUB_IMAGE}\n" + text)
        return path

    return make


def test_defaults_make_a_whole_valid_platform(tmp_path):
    objects = bundle(tmp_path)  # deploy/values.yaml as it is
    for obj in objects:
        validate(obj)
    kinds = [(o["kind"], o["metadata"]["name"]) for o in objects]
    assert len(set(kinds)) == len(kinds)
    # what others refer to comes first, so one `kubectl apply` takes it in one pass
    assert kinds[0] == ("Namespace", "workbench")
    assert all(o["metadata"].get("namespace") == "workbench" for o in objects[1:])
    hub = find(objects, "Deployment", "hub")
    assert hub["spec"]["replicas"] == 1 and hub["spec"]["strategy"] == {"type": "Recreate"}
    pod = hub["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "hub"
    assert [c["name"] for c in pod["initContainers"]] == ["settings", "migrate"]
    (container,) = pod["containers"]
    # the platform's hub image (images/catalog-platform.yaml), in the values' registry
    assert container["image"] == platform_image_ref("hub", "localhost/")
    in_registry = bundle(tmp_path, registry={"url": "r.example.com:5000", "path": "ml"})
    image = find(in_registry, "Deployment", "hub")["spec"]["template"]["spec"]["containers"][0]
    assert image["image"] == platform_image_ref("hub", "r.example.com:5000/ml/")
    assert image["image"].startswith("r.example.com:5000/ml/ai-workbench/hub:")
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {
        "http": 8081,
        "api": 8090,
        "ssh": 2222,
    }
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts["/etc/workbench/workbench.toml"]["subPath"] == "workbench.toml"
    assert "/srv/workbench" in mounts and "/srv/workbench/data/jobs" in mounts
    assert container["readinessProbe"]["httpGet"]["path"] == "/hub/health"
    claims = {o["metadata"]["name"]: o for o in objects if o["kind"] == "PersistentVolumeClaim"}
    assert claims["workbench-hub-data"]["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert "storageClassName" not in claims["workbench-hub-data"]["spec"]  # the default class
    assert set(claims) == {
        "workbench-hub-data",
        "workbench-jobs",
        "workbench-models",
        "workbench-datasets",
    }
    # the proxy: configurable-http-proxy with zero-to-jupyterhub's flags, no API access
    proxy = find(objects, "Deployment", "proxy")["spec"]["template"]["spec"]
    assert proxy["automountServiceAccountToken"] is False
    (chp,) = proxy["containers"]
    assert chp["args"][0] == "configurable-http-proxy"
    assert "--api-port=8001" in chp["args"] and "--port=8000" in chp["args"]
    assert "--default-target=http://hub:8081" in chp["args"]
    assert chp["env"][0]["valueFrom"]["secretKeyRef"] == {"name": "hub", "key": "proxy-token"}
    public = find(objects, "Service", "proxy-public")["spec"]
    assert public["type"] == "LoadBalancer" and public["ports"][0]["port"] == 80
    ssh = find(objects, "Service", "workbench-ssh")["spec"]
    assert ssh["type"] == "LoadBalancer" and ssh["ports"][0]["port"] == 22
    assert ssh["ports"][0]["targetPort"] == "ssh" and ssh["externalTrafficPolicy"] == "Local"
    assert find(objects, "Service", "hub")["spec"]["ports"][0]["port"] == 8081
    assert find(objects, "Service", "workbench-api")["spec"]["ports"][0]["port"] == 8090
    assert not [o for o in objects if o["kind"] in ("Ingress", "DaemonSet")]


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.stem for e in EXAMPLES])
def test_each_example_renders_valid_manifests(tmp_path, values_file, example):
    objects = bundle(tmp_path, values_file(), example)
    for obj in objects:
        validate(obj)
    settings = tomllib.loads(find(objects, "ConfigMap", "hub")["data"]["workbench.toml"])
    table = settings["workbench"]
    if example.stem == "gpu-nodes":
        flavors = yaml.safe_load(find(objects, "ConfigMap", "hub")["data"]["flavors.yaml"])
        assert [f["name"] for f in flavors["flavors"]][-1] == "gpu.a100"
        assert table["flavors_path"] == "/etc/workbench/kubernetes/flavors.yaml"
        wiring = json.loads(secret_data(find(objects, "Secret", "hub"))["jupyterhub.json"])
        spawner = wiring["WorkbenchKubeSpawner"]
        assert spawner["gpu_node_label"] == "nvidia.com/gpu.product"
        assert spawner["tolerations"][0]["key"] == "nvidia.com/gpu"
    elif example.stem == "private-registry":
        pull = find(objects, "Secret", "workbench-registry")
        assert pull["type"] == "kubernetes.io/dockerconfigjson"
        auths = json.loads(secret_data(pull)[".dockerconfigjson"])["auths"]
        assert auths["registry.example.com:5000"]["username"] == "workbench"
        # every pod the platform starts uses the namespace's default account: it pulls with it
        account = find(objects, "ServiceAccount", "default")
        assert account["imagePullSecrets"] == [{"name": "workbench-registry"}]
        assert table["image_registry"] == "registry.example.com:5000/team-ml/"
        assert table["registry_url"] == "registry.example.com:5000"
        agent = find(objects, "DaemonSet", "workbench-save-agent")
        assert agent["spec"]["template"]["spec"]["automountServiceAccountToken"] is False
        token = secret_data(find(objects, "Secret", "workbench-save-agent"))["token"]
        assert len(token) >= 32
    elif example.stem == "external-postgres":
        env = find(objects, "Deployment", "hub")["spec"]["template"]["spec"]["initContainers"][0]
        refs = {e["name"]: e.get("valueFrom") for e in env["env"]}
        assert refs["WORKBENCH_SECRET_SETTING_DB_URL"] == {
            "secretKeyRef": {"name": "workbench-db", "key": "url"}
        }
        wiring = json.loads(secret_data(find(objects, "Secret", "hub"))["jupyterhub.json"])
        assert wiring["JupyterHub"]["upgrade_db"] is False
    elif example.stem == "ingress-tls":
        ingress = find(objects, "Ingress", "proxy")
        assert ingress["spec"]["ingressClassName"] == "nginx"
        assert ingress["spec"]["tls"] == [
            {"hosts": ["workbench.example.com"], "secretName": "workbench-tls"}
        ]
        backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
        assert backend == {"name": "proxy-public", "port": {"name": "http"}}
        assert ingress["metadata"]["annotations"]["cert-manager.io/cluster-issuer"]
        assert find(objects, "Service", "proxy-public")["spec"]["type"] == "ClusterIP"
        assert table["bind_url"] == "https://workbench.example.com"
        wiring = json.loads(secret_data(find(objects, "Secret", "hub"))["jupyterhub.json"])
        assert wiring["JupyterHub"]["public_url"] == "https://workbench.example.com/"
        assert table["ssh_public_host"] == "ssh.workbench.example.com"


def test_secrets_are_stable_and_never_in_a_config_map(tmp_path, values_file):
    """Two renders with the same secrets file give the same Secrets (no rotation, no
    restart); the ConfigMaps hold no secret value; a cluster's Secret dump is a secrets file."""
    extra = (
        "registry: {url: r.example.com, username: wb, password: pw-4f1e9}\n"
        "database: {url: 'postgresql://wb:db-9c2a7@db:5432/wb'}\n"
        "saveAgent: {enabled: true, image: r.example.com/agent:1}\n"
        "hub:\n  config: {GenericOAuthenticator: {client_secret: oauth-77e1}}\n"
    )
    values = values_file(extra.replace("hub:\n", "hub:\n  image: " + HUB_IMAGE + "\n"))
    first = bundle(tmp_path, values)
    second = bundle(tmp_path, values)
    secrets = [o for o in first if o["kind"] == "Secret"]
    assert secrets == [o for o in second if o["kind"] == "Secret"]
    hub_pod = find(first, "Deployment", "hub")["spec"]["template"]["metadata"]["annotations"]
    assert (
        hub_pod == find(second, "Deployment", "hub")["spec"]["template"]["metadata"]["annotations"]
    )
    stored = yaml.safe_load((tmp_path / "secrets.yaml").read_text())
    assert set(stored) == {"cookie-secret", "proxy-token", "admin-password", "save-agent-token"}
    assert (tmp_path / "secrets.yaml").stat().st_mode & 0o777 == 0o600
    hub = secret_data(find(first, "Secret", "hub"))
    secret_values = {
        *stored.values(),
        "pw-4f1e9",
        "db-9c2a7",
        "oauth-77e1",
        hub["cookie-secret"],
        hub["proxy-token"],
    }
    for config_map in (o for o in first if o["kind"] == "ConfigMap"):
        text = json.dumps(config_map)
        assert not [s for s in secret_values if s in text]
    # the secrets file lost: the cluster's own Secret (kubectl get secret hub -o yaml) serves
    dump_file = tmp_path / "from-cluster.yaml"
    dump_file.write_text(yaml.safe_dump(find(first, "Secret", "hub")))
    again = bundle(tmp_path, values, secrets="from-cluster.yaml")
    assert secret_data(find(again, "Secret", "hub"))["cookie-secret"] == hub["cookie-secret"]
    # values win over the file: a given cookie secret is used as it is
    given = "ab" * 32
    chosen = bundle(tmp_path, values, hub={"cookieSecret": given, "image": HUB_IMAGE})
    assert secret_data(find(chosen, "Secret", "hub"))["cookie-secret"] == given


def test_the_hub_pod_starts_on_the_rendered_configuration(tmp_path, values_file, monkeypatch):
    """The init containers' scripts, then JupyterHub's loader, over the rendered objects:
    the settings file gets the secret settings, the platform database is migrated, and the
    hub's configuration wires the proxy pod, the platform API's Service and KubeSpawner."""
    values = values_file(
        "registry: {url: r.example.com, username: wb, password: 'p\"w\\\\1'}\n"
        "workbench: {idle_stop_default_minutes: 90, jobs: {max_nodes: 3}}\n"
    )
    objects = bundle(tmp_path, values, namespace="team-a")
    config_map = find(objects, "ConfigMap", "hub")["data"]
    secret = secret_data(find(objects, "Secret", "hub"))
    cluster, secrets_dir, run = tmp_path / "cm", tmp_path / "secrets", tmp_path / "run"
    for folder in (cluster, secrets_dir, run):
        folder.mkdir()
    data = tmp_path / "data"
    for name, text in config_map.items():
        # the data folder under tmp instead of the volume's
        (cluster / name).write_text(text.replace("/srv/workbench/data", str(data)))
    for name in ("jupyterhub.json",):
        (secrets_dir / name).write_text(secret[name])
    deployment = find(objects, "Deployment", "hub")["spec"]["template"]["spec"]
    init_env = {e["name"]: e for e in deployment["initContainers"][0]["env"]}
    ref = init_env["WORKBENCH_SECRET_SETTING_REGISTRY_PASSWORD"]["valueFrom"]["secretKeyRef"]
    env = {
        **os.environ,
        "WORKBENCH_SETTINGS_TEMPLATE": str(cluster / "workbench.toml"),
        "WORKBENCH_CONFIG": str(run / "workbench.toml"),
        "WORKBENCH_DATA_DIR": str(data),
        "WORKBENCH_SECRET_SETTING_REGISTRY_PASSWORD": secret[ref["key"]],
    }
    for script in ("prepare_settings.py", "migrate.py"):
        done = subprocess.run(
            [sys.executable, str(cluster / script)], env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
    assert data.stat().st_mode & 0o777 == 0o700
    settings = tomllib.loads((run / "workbench.toml").read_text())["workbench"]
    assert settings["registry_password"] == 'p"w\\\\1'  # YAML single quotes keep both
    assert settings["kubernetes_namespace"] == "team-a"
    assert settings["jobs"] == {"max_nodes": 3}
    assert (data / "workbench.sqlite").exists()

    hub = next(c for c in deployment["containers"] if c["name"] == "hub")
    for item in hub["env"]:
        if "value" in item and item["name"] != "WORKBENCH_CONFIG":
            monkeypatch.setenv(item["name"], item["value"])
    monkeypatch.setenv("WORKBENCH_CONFIG", str(run / "workbench.toml"))
    # the hub image's own configuration file (images/hub/), which loads the platform's
    image_config = REPO / "images" / "hub" / "jupyterhub_config.py"
    monkeypatch.setenv("WORKBENCH_IMAGE_CONFIG", str(image_config))
    monkeypatch.setenv("WORKBENCH_SECRETS_DIR", str(secrets_dir))
    # args: the image's entrypoint (tini) stays; the command is the image's CMD with our file
    assert "command" not in hub
    assert hub["args"] == ["jupyterhub", "-f", "/etc/workbench/kubernetes/jupyterhub_config.py"]
    c = PyFileConfigLoader("jupyterhub_config.py", path=str(cluster)).load_config()
    assert c.JupyterHub.spawner_class == "spawner.kubernetes.WorkbenchKubeSpawner"
    api = next(s for s in c.JupyterHub.services if s["name"] == "workbench")
    assert api["url"] == "http://workbench-api:8090"  # the proxy's route, from another pod
    assert c.JupyterHub.hub_connect_url == "http://hub:8081"
    assert c.JupyterHub.cleanup_servers is False  # instances outlive a hub upgrade
    assert c.ConfigurableHTTPProxy.should_start is False
    assert c.ConfigurableHTTPProxy.api_url == "http://proxy-api:8001"
    spawner = c.WorkbenchKubeSpawner
    assert spawner.namespace == "team-a"
    assert spawner.workbench_api_url == "http://workbench-api:8090/services/workbench/api"
    assert spawner.image_pull_secrets == ["workbench-registry"]
    assert spawner.idle_stop_default_minutes == 90
    # KubeSpawner's paths that would need more RBAC stay off (tests/deploy/test_rbac.py)
    assert not spawner.get("internal_ssl") and not spawner.get("services_enabled")
    assert not spawner.get("enable_user_namespaces")


def test_cli_prints_a_yaml_stream_and_keeps_its_secrets(tmp_path, values_file, capsys):
    values = values_file()
    # the command's module, as the `workbench` script runs it
    command = [sys.executable, "-m", "hub.cli", "kubernetes", "render", "-f", str(values)]
    done = subprocess.run(
        [*command, "--namespace", "ml-platform"], cwd=REPO, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    objects = list(yaml.safe_load_all(done.stdout))
    assert objects
    assert {o["metadata"].get("namespace", "ml-platform") for o in objects} == {"ml-platform"}
    assert dump(objects) == done.stdout
    # the secrets file beside the values file, announced on stderr (stdout stays clean)
    assert (tmp_path / "workbench-secrets.yaml").exists()
    assert "workbench-secrets.yaml" in done.stderr
    # again (in this process): the same stream, nothing generated, nothing said
    cli(["kubernetes", "render", "-f", str(values), "--namespace", "ml-platform"])
    out, err = capsys.readouterr()
    assert out == done.stdout and err == ""

    bad = values_file("proxy:\n  service: {type: Ingress}\n", name="bad.yaml")
    refused = subprocess.run([*command[:-1], str(bad)], cwd=REPO, capture_output=True, text=True)
    assert refused.returncode == 2 and refused.stdout == ""
    assert "proxy.service.type" in refused.stderr and "LoadBalancer" in refused.stderr


BAD_VALUES = {
    "unknown key, nearest named": ("hub:\n  storge: {size: 5Gi}\n", ["hub.storge", "hub.storage"]),
    "unknown top key": ("proxxy: {}\n", ["proxxy", "proxy"]),
    "Service type": ("ssh:\n  service: {type: External}\n", ["ssh.service.type", "NodePort"]),
    "non-DNS namespace": ("namespace: My_Platform\n", ["namespace", "DNS label"]),
    "non-DNS storage class": ("stores: {storageClass: Fast_SSD}\n", ["stores.storageClass"]),
    "image without a tag": (
        "saveAgent: {enabled: true, image: r.example.com/agent}\nregistry: {url: r.example.com}\n",
        ["saveAgent.image", "tag"],
    ),
    "negative size": ("hub:\n  storage: {size: -10Gi}\n", ["hub.storage.size", "negative"]),
    "zero size": ("stores: {jobsSize: 0Gi}\n", ["stores.jobsSize", "more than 0"]),
    "wrong type": ("createNamespace: 'yes'\n", ["createNamespace", "boolean"]),
    "save agent without image": (
        "saveAgent: {enabled: true}\nregistry: {url: r.example.com}\n",
        ["saveAgent.image", "nerdctl", "501"],
    ),
    "ingress without hosts": ("proxy:\n  ingress: {enabled: true}\n", ["proxy.ingress.hosts"]),
    "node port out of range": (
        "proxy:\n  service: {type: NodePort, nodePort: 80}\n",
        ["proxy.service.nodePort", "30000"],
    ),
    "annotation not a string": (
        "proxy:\n  ingress: {annotations: {example.com/read-timeout: 3600}}\n",
        ["proxy.ingress.annotations.example.com/read-timeout", "quote"],
    ),
    "setting typo": ("workbench: {idle_stop_default_minute: 5}\n", ["idle_stop_default_minutes"]),
    "setting of the wrong type": ("workbench: {quota_gpus: many}\n", ["workbench.quota_gpus"]),
    "feature setting typo": ("workbench: {jobs: {max_node: 2}}\n", ["workbench.jobs.max_node"]),
    "setting the bundle sets": ("workbench: {db_url: 'sqlite://'}\n", ["database.url"]),
    "settings that contradict": (
        "workbench: {storage_min_gib: 50, storage_default_gib: 10}\n",
        ["storage_min_gib <= storage_default_gib"],
    ),
    "bad flavor": ("flavors: [{name: Big, cpu: 1, memory: 1Gi}]\n", ["flavors", "Big"]),
}


@pytest.mark.parametrize("text,words", BAD_VALUES.values(), ids=BAD_VALUES.keys())
def test_bad_values_exit_2_with_the_key_and_print_nothing(
    tmp_path, values_file, capsys, text, words
):
    path = values_file(text, name="bad.yaml")
    with pytest.raises(SystemExit) as e:
        cli(["kubernetes", "render", "-f", str(path), "--secrets", str(tmp_path / "s.yaml")])
    assert e.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("error: ")
    for word in words:
        assert word in err, err
    assert not (tmp_path / "s.yaml").exists()  # nothing generated for a refused render


def test_unreadable_values_file_exits_2(tmp_path, capsys):
    broken = tmp_path / "broken.yaml"
    broken.write_text("hub: [unclosed\n")
    for path in (broken, tmp_path / "missing.yaml"):
        with pytest.raises(SystemExit) as e:
            cli(["kubernetes", "render", "-f", str(path)])
        assert e.value.code == 2
        out, err = capsys.readouterr()
        assert out == "" and str(path) in err


def test_every_key_of_the_values_file_is_documented():
    """Each key of deploy/values.yaml has its comment right above it (the resources' own
    keys are a pod spec's, documented with `resources`)."""
    lines = (REPO / "deploy" / "values.yaml").read_text().splitlines()
    undocumented = []
    for i, line in enumerate(lines):
        key = re.match(r"^(\s*)([A-Za-z]\w*):", line)
        if not key or key.group(2) in ("requests", "limits", "cpu", "memory"):
            continue
        above = next(text for text in reversed(lines[:i]) if text.strip())
        if not above.strip().startswith("#"):
            undocumented.append(f"line {i + 1}: {line.strip()}")
    assert not undocumented, undocumented
