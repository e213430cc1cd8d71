"""Models: register a job's output, an instance's folder or a serving image; versions; deploy.

    model = await client.models.create("mnist", format="onnx",
                                       source=job_source("train-mnist", 3, "output/model"))
    await model.add_version(format="onnx", source=storage_source("nb1", "models/v2"))
    service = await model.deploy("mnist", flavor="cpu.small", replicas=(1, 2))
    await service.wait_ready()

With the sync client (and `import workbench`) the same calls block.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import Namespace, segment

if TYPE_CHECKING:
    from ..client import AsyncWorkbenchClient
    from .services import Service

FORMATS = ("onnx", "pytorch", "tensorflow", "mindspore", "sklearn", "custom", "image")


def job_source(job, version: int | None = None, path: str = "output") -> dict:
    """A model's files from a finished version of one of your jobs: its output folder, or a
    folder or file in it ("output/model"). `job`: a job's name, or a Job (its version)."""
    name = getattr(job, "name", job)
    if version is None:
        version = getattr(job, "version", None)
    source: dict[str, Any] = {"kind": "job", "job": name, "path": path}
    if version is not None:
        source["version"] = int(version)
    return source


def storage_source(instance: str, path: str) -> dict:
    """A model's files from a folder or file of one of your instances' storage ("models/net",
    relative to its work folder)."""
    return {"kind": "storage", "instance": instance, "path": path}


def image_source(image: str, command: str = "") -> dict:
    """A custom serving container: `image` (a catalog name or saved:<owner>/<name>:<tag>)
    listens on 8080 and speaks the v1/v2 protocol itself; no files."""
    return {"kind": "image", "image": image, "command": command}


def _source(source) -> dict:
    """A source dict as the API takes it (a Job becomes its output folder)."""
    if isinstance(source, dict):
        return dict(source)
    if hasattr(source, "name") and hasattr(source, "version"):  # a Job
        return job_source(source)
    raise TypeError(
        "source must be a dict (job_source(), storage_source(), image_source()) or a Job; "
        f"got {type(source).__name__}."
    )


def version_body(
    *,
    format: str,  # noqa: A002 - the API's word
    source,
    image: str | None = None,
    signature: dict | None = None,
    predictor: str | None = None,
    command: str | None = None,
) -> dict:
    """The fields of a new model version."""
    body: dict[str, Any] = {"format": format, "source": _source(source)}
    for key, value in (
        ("image", image),
        ("signature", signature),
        ("predictor", predictor),
        ("command", command),
    ):
        if value is not None:
            body[key] = value
    return body


def model_path(owner: str, name: str) -> str:
    return f"models/{segment(owner)}/{segment(name)}"


class Model:
    """A registered model as last seen: .owner, .name, .data (its JSON), .versions.

    add_version() registers a new version, deploy() makes an online service of a version,
    delete() removes the model (refused while a service uses one of its versions).
    """

    def __init__(self, client: AsyncWorkbenchClient, data: dict):
        self._client = client
        self.data = data
        self.owner: str = data["owner"]
        self.name: str = data["name"]

    def __repr__(self) -> str:
        return f"<Model {self.owner}/{self.name} latest version {self.latest}>"

    @property
    def _path(self) -> str:
        return model_path(self.owner, self.name)

    @property
    def latest(self) -> int | None:
        """The newest version's number (as last seen)."""
        latest = self.data.get("latest")
        if latest is None and self.versions:
            latest = max(v["version"] for v in self.versions)
        return latest

    @property
    def versions(self) -> list[dict]:
        """Every version's JSON (files, signature, state, lineage), the first first."""
        return sorted(self.data.get("versions") or [], key=lambda v: v["version"])

    @property
    def description(self) -> str:
        return self.data.get("description") or ""

    async def refresh(self) -> Model:
        """Read the model (with its versions) again; returns the model itself."""
        self.data = await self._client.api("GET", self._path)
        return self

    async def version(self, version: int | None = None) -> dict:
        """One version's JSON (default: the latest)."""
        version = version or self.latest
        return await self._client.api("GET", f"{self._path}/versions/{int(version)}")

    async def add_version(
        self,
        *,
        format: str,  # noqa: A002 - the API's word
        source,
        image: str | None = None,
        signature: dict | None = None,
        predictor: str | None = None,
        command: str | None = None,
    ) -> dict:
        """Register a new version (arguments as Models.create); its JSON."""
        body = version_body(
            format=format,
            source=source,
            image=image,
            signature=signature,
            predictor=predictor,
            command=command,
        )
        answer = await self._client.api("POST", f"{self._path}/versions", body)
        if isinstance(answer, dict) and "versions" in answer:  # the model's JSON
            self.data = answer
            return self.versions[-1]
        await self.refresh()
        return answer

    async def update(self, *, description: str) -> Model:
        """Change the description."""
        self.data = await self._client.api("PATCH", self._path, {"description": description})
        return self

    async def delete_version(self, version: int) -> None:
        """Delete one version and its files (refused while a service uses it)."""
        await self._client.api("DELETE", f"{self._path}/versions/{int(version)}")

    async def delete(self) -> None:
        """Delete the model with every version (refused while a service uses one)."""
        await self._client.api("DELETE", self._path)

    async def deploy(
        self,
        service_name: str,
        *,
        version: int | None = None,
        flavor: str | None = None,
        replicas: int | tuple[int, int] = 1,
        target_in_flight: int | None = None,
        public: bool = False,
        description: str = "",
        workspace: str | None = None,
        scale_to_zero_seconds: float | None = None,
        wait: bool | float = False,
    ) -> Service:
        """Deploy a version (default: the latest) as a new online service; the Service.

        replicas: a number, or (min, max) to scale between by the requests in flight per
        replica (target_in_flight); min 0 scales to zero. public: callable by the members
        of the service's workspace. wait: wait until it is running (True, or seconds).
        """
        from .services import Services, predictor

        version = version or self.latest
        if version is None:
            await self.refresh()
            version = self.latest
        spec = predictor(
            self.name,
            version,
            flavor=flavor,
            replicas=replicas,
            target_in_flight=target_in_flight,
        )
        service = await Services(self._client).create(
            service_name,
            predictors=[spec],
            public=public,
            description=description,
            workspace=workspace,
            scale_to_zero_seconds=scale_to_zero_seconds,
        )
        if wait:
            await service.wait_ready(None if wait is True else float(wait))
        return service


class Models(Namespace):
    """Registered models: the user's own and those of their workspaces (by owner)."""

    async def create(
        self,
        name: str,
        *,
        format: str,  # noqa: A002 - the API's word
        source,
        image: str | None = None,
        signature: dict | None = None,
        predictor: str | None = None,
        command: str | None = None,
        description: str = "",
        workspace: str | None = None,
    ) -> Model:
        """Register a model with its version 1; the Model.

        format: onnx, pytorch, tensorflow, mindspore, sklearn, custom or image. source:
        job_source("train", 3, "output/model"), storage_source("nb1", "models/net") (files
        are copied, with their SHA-256s) or image_source("saved:me/server:v1") (a serving
        container of your own), or a Job (its output folder). image: the image serving it
        (default: the format's). signature: {"inputs": [{"name", "datatype", "shape"}],
        "outputs": [...]}. predictor: "predictor.py:Model" for custom code.
        """
        body = version_body(
            format=format,
            source=source,
            image=image,
            signature=signature,
            predictor=predictor,
            command=command,
        )
        body = {"name": name, "description": description, **body}
        if workspace is not None:
            body["workspace"] = workspace
        answer = await self._client.api("POST", "models", body)
        model = Model(self._client, answer)
        if "versions" not in answer:
            await model.refresh()
        return model

    async def list(self, workspace: str | None = None) -> list[dict]:
        """The models the user sees (own, and their workspaces'), each with its latest
        version's number; only those of `workspace` if given."""
        params = {"workspace": workspace} if workspace else None
        return await self._client.api("GET", "models", params=params)

    async def get(self, name: str, owner: str | None = None) -> Model:
        """A model with its versions; owner default: the user."""
        owner = await self._client.user_name(owner)
        return Model(self._client, await self._client.api("GET", model_path(owner, name)))

    async def delete(self, name: str, owner: str | None = None, version: int | None = None):
        """Delete a model with all its versions, or only `version`."""
        path = model_path(await self._client.user_name(owner), name)
        if version is not None:
            path = f"{path}/versions/{int(version)}"
        await self._client.api("DELETE", path)
