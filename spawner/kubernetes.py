"""The cluster spawner: instances as Kubernetes pods with their flavor's resources and own PVC."""

from __future__ import annotations

import asyncio
import copy

from kubernetes_asyncio.config import ConfigException
from kubespawner import KubeSpawner
from tornado import web
from traitlets import Float, TraitError, Unicode, default, validate

from .base import InstanceSpawnerMixin
from .flavors import format_bytes
from .kube_manifests import (
    RUN_AS_GID,
    RUN_AS_UID,
    RUNTIME_DIR,
    make_container_security_context,
    make_kube_overrides,
    make_platform_api_url,
)
from .metering import MeteringMixin

# traits each start sets; the dicts among them are merged over what the admin configured
_MERGED_DICTS = (
    "extra_labels",
    "storage_extra_labels",
    "node_selector",
    "extra_resource_limits",
    "extra_resource_guarantees",
)
_MERGED_VOLUMES = ("volumes", "volume_mounts")


def _merge_volumes(configured, ours: dict):
    """What the admin configured (a list or a dict) plus ours (a dict keyed by volume)."""
    if isinstance(configured, dict):
        return {**configured, **ours}
    names = {v["name"] for v in ours.values()}
    paths = {v.get("mountPath") for v in ours.values()} - {None}
    kept = [
        v
        for v in configured or []
        if v.get("name") not in names and (not paths or v.get("mountPath") not in paths)
    ]
    return kept + list(ours.values())


NO_CLUSTER = (
    "No Kubernetes cluster to start instances in ({error}). The hub starts them from a pod "
    "of the cluster (its service account) or with a kubeconfig ($KUBECONFIG): ask the "
    "platform's administrator to deploy it so."
)


class _ClusterOptionalKubeSpawner(KubeSpawner):
    """KubeSpawner that can be made where no cluster is configured (no service account, no
    kubeconfig): the hub, its pages and the platform API keep working, and starting an
    instance fails with what to do (KubeSpawner loads the cluster's configuration in
    __init__, which would fail every page that makes a spawner)."""

    cluster_error = ""

    def __init__(self, *args, **kwargs):
        try:
            super().__init__(*args, **kwargs)
        except (ConfigException, OSError) as e:
            self.cluster_error = str(e)
            self.api = None

    async def poll(self):
        if self.cluster_error:
            return 0  # nothing runs where there is no cluster
        return await super().poll()

    async def stop(self, now=False):
        if self.cluster_error:
            return
        return await super().stop(now=now)

    async def delete_forever(self):
        if self.cluster_error:
            return  # no PVC was made
        return await super().delete_forever()


class WorkbenchKubeSpawner(InstanceSpawnerMixin, MeteringMixin, _ClusterOptionalKubeSpawner):
    """Run each instance as a pod with its flavor's resources and its own PersistentVolumeClaim."""

    gpu_node_label = Unicode(
        "nvidia.com/gpu.product",
        help="""Node label whose value must equal a GPU flavor's gpu_type for its pod to be
        scheduled there (a nodeSelector); empty: GPU pods only ask for nvidia.com/gpu.
        Default "nvidia.com/gpu.product", set by NVIDIA GPU feature discovery (GPU
        Operator), with values such as "Tesla-T4", as the shipped flavors name them.
        On GKE, name GKE's accelerators (nvidia-tesla-t4) in your flavors file and use:

        c.WorkbenchKubeSpawner.gpu_node_label = "cloud.google.com/gke-accelerator"
        """,
    ).tag(config=True)
    cpu_guarantee_fraction = Float(
        1.0,
        help="""Share of a flavor's vCPUs the pod requests (reserves on its node); the limit
        is always the flavor's vCPUs. Default 1.0: requests equal limits and the pod gets
        the Guaranteed QoS class. Lower it to pack more idle notebooks on a node (pods
        become Burstable). Between 0 (exclusive) and 1.

        c.WorkbenchKubeSpawner.cpu_guarantee_fraction = 0.5
        """,
    ).tag(config=True)

    workbench_api_url = Unicode(
        "http://{hub_host}:8090/services/workbench/api",
        help="""URL of the platform API as instance pods reach it inside the cluster, given to
        each instance as $WORKBENCH_API_URL: `import workbench` in its kernels, the JupyterLab
        panel and the activity reports call it with the instance's own token. "{hub_host}"
        becomes the host of the hub's API URL as pods see it ($JUPYTERHUB_API_URL, from
        c.JupyterHub.hub_connect_url or hub_connect_ip; "hub", the hub's Service, under
        zero-to-jupyterhub). The platform API service runs in the hub's pod on its
        service_port (default 8090), listening on all interfaces: expose that port on the
        hub's Service (zero-to-jupyterhub: hub.service.extraPorts) and admit it in the hub's
        NetworkPolicy. An entry of the same name in c.Spawner.environment wins; empty: not
        set. Default "http://{hub_host}:8090/services/workbench/api".

        c.WorkbenchKubeSpawner.workbench_api_url = (
            "http://workbench-api.jhub.svc.cluster.local:8090/services/workbench/api"
        )
        """,
    ).tag(config=True)

    @validate("cpu_guarantee_fraction")
    def _valid_fraction(self, proposal):
        if not 0 < proposal.value <= 1:
            raise TraitError(f"cpu_guarantee_fraction must be in (0, 1], not {proposal.value}")
        return proposal.value

    @validate("pvc_name_template")
    def _valid_pvc_name_template(self, proposal):
        # each instance owns its storage, and deleting an instance deletes its PVC;
        # KubeSpawner only deletes PVCs whose template holds {user_server}
        if "{user_server}" not in proposal.value:
            raise TraitError(
                f"pvc_name_template {proposal.value!r} must contain {{user_server}} "
                "(user and instance name) so that each instance has its own PVC."
            )
        return proposal.value

    @default("pod_name_template")
    def _default_pod_name_template(self):
        return "workbench-{user_server}"

    @default("pvc_name_template")
    def _default_pvc_name_template(self):
        # {user_server} is {username}--{servername}: one claim per instance
        return "workbench-{user_server}-work"

    @default("storage_pvc_ensure")
    def _default_storage_pvc_ensure(self):
        return True

    @default("delete_pvc")
    def _default_delete_pvc(self):
        # deleting an instance deletes its storage, as the Docker spawner does
        return True

    @default("uid")
    def _default_uid(self):
        return RUN_AS_UID

    @default("gid")
    def _default_gid(self):
        return RUN_AS_GID

    @default("fs_gid")
    def _default_fs_gid(self):
        # new volumes are group-owned by the users group, writable by jovyan
        return RUN_AS_GID

    @default("allow_privilege_escalation")
    def _default_allow_privilege_escalation(self):
        return False

    @default("container_security_context")
    def _default_container_security_context(self):
        return make_container_security_context()

    def get_env(self):
        env = super().get_env()
        env.update(self.instance_environment)
        # on the pod's memory-backed runtime volume: never in the work volume or a save
        env["JUPYTER_RUNTIME_DIR"] = RUNTIME_DIR
        if self.workbench_api_url and "WORKBENCH_API_URL" not in env:
            env["WORKBENCH_API_URL"] = make_platform_api_url(
                self.workbench_api_url, env.get("JUPYTERHUB_API_URL", "")
            )
        return env

    async def _apply_spec(self):
        """Validate the options and set this start's image, resources and storage traits."""
        resolved = await self.resolved_options()
        spec, image, flavor = resolved.spec, resolved.image, resolved.flavor
        self._progress(10, f"Image {image.name} ({image.ref})")
        overrides = make_kube_overrides(
            owner=self.user.name,
            instance=self.name,
            spec=spec,
            image=image,
            flavor=flavor,
            work_dir=self.work_dir,
            pvc_name=self.pvc_name,
            gpu_node_label=self.gpu_node_label,
            cpu_guarantee_fraction=self.cpu_guarantee_fraction,
        )
        if not hasattr(self, "_workbench_configured"):
            # what the admin configured, kept under what each start sets
            self._workbench_configured = {
                name: copy.deepcopy(getattr(self, name)) for name in _MERGED_DICTS + _MERGED_VOLUMES
            }
        for name, value in overrides.items():
            if name in _MERGED_DICTS:
                value = {**self._workbench_configured[name], **value}
            elif name in _MERGED_VOLUMES:
                value = _merge_volumes(self._workbench_configured[name], value)
            setattr(self, name, value)
        gpus = f", {flavor.gpu} x GPU {flavor.gpu_type}".rstrip() if flavor.gpu else ""
        self._progress(
            20, f"Flavor {flavor.name}: {flavor.cpu:g} vCPU, {format_bytes(flavor.memory)}{gpus}"
        )
        if self.storage_pvc_ensure and self._pvc_exists:
            self._progress(
                25,
                f"Using storage {self.pvc_name} mounted at {self.work_dir} "
                "(its size stays as first created)",
            )
        elif self.storage_pvc_ensure:
            self._progress(
                25,
                f"Storage {self.pvc_name}: {spec.storage_gib} GiB at {self.work_dir} "
                "(created if missing)",
            )
        return spec, image, flavor

    async def _relay_pod_events(self, start_future: asyncio.Future):
        """Copy the pod's Kubernetes events (scheduling, image pulls) into the spawn progress.

        Only events of the pod this start created (matched by its uid) are shown, until
        the start finishes; the progress bar approaches 90% with each event.
        """
        seen: set[str] = set()
        percent = 30.0
        ref_key = f"{self.namespace}/{self.pod_name}"
        while True:
            finished = start_future.done()
            try:
                reflector = self.pod_reflector
                pod = reflector.pods.get(ref_key) if reflector else None
                pod_uid = ((pod or {}).get("metadata") or {}).get("uid")
                for event in self.events if pod_uid else []:
                    uid = event["metadata"]["uid"]
                    if uid in seen or (event.get("involvedObject") or {}).get("uid") != pod_uid:
                        continue
                    seen.add(uid)
                    percent += (90 - percent) / 3
                    self._progress(int(percent), f"[{event.get('type')}] {event.get('message')}")
            except Exception as e:  # progress is a courtesy: never let it break the start
                self.log.warning("%s: cannot read pod events: %s", self._log_name, e)
                return
            if finished:
                return
            await asyncio.wait([start_future], timeout=1)

    async def start(self):
        """Check the options, set the pod's image, resources and PVC, start it; report progress."""
        self._progress_reset()
        try:
            if self.cluster_error:
                raise web.HTTPError(503, NO_CLUSTER.format(error=self.cluster_error))
            await self._apply_spec()
            self._progress(30, f"Starting pod {self.pod_name} in namespace {self.namespace}")
            start_future = asyncio.ensure_future(super().start())
            relay = None
            if self.events_enabled:
                relay = asyncio.ensure_future(self._relay_pod_events(start_future))
            try:
                url = await start_future
            finally:
                if relay is not None:
                    # it returns right after the start does; never let it outlive it
                    await asyncio.wait([relay], timeout=5)
                    relay.cancel()
            self._progress(100, f"Pod {self.pod_name} is running; connecting to JupyterLab")
            return url
        except BaseException as e:
            if not isinstance(e, asyncio.CancelledError):
                self._progress(100, f"Start failed: {getattr(e, 'log_message', None) or e}")
            raise
        finally:
            self.forget_resolution()
            self._progress_done()
