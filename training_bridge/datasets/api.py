"""HTTP handlers of datasets: datasets, labels, samples (uploads, annotations, content),
imports and statistics."""

from __future__ import annotations

import asyncio
from urllib.parse import quote

from tornado import web
from tornado.iostream import StreamClosedError

from hub.service.api import APIError, APIHandler, OwnedCollection, needs_scope, parse_json_body

from .datasets import DatasetService

DATASET = r"/datasets/(?P<owner>[^/]+)/(?P<name>[^/]+)"
SAMPLE = DATASET + r"/samples/(?P<sample>[0-9]{1,18})"
CHUNK = 1024 * 1024
# the most a JSON body (bulk annotations) may be
JSON_LIMIT = 32 * 1024**2
# background removals of staging folders (kept referenced until they end)
_cleanups: set[asyncio.Future] = set()


def _flag(handler: APIHandler, name: str) -> bool:
    value = handler.get_query_argument(name, "0")
    if value not in ("0", "1", "true", "false", ""):
        raise APIError(400, f"{name} must be 1 or 0.")
    return value in ("1", "true")


class DatasetsAPIHandler(APIHandler):
    """Base of the dataset handlers: the service; audited as resource "dataset"."""

    @property
    def service(self) -> DatasetService:
        return self.settings["dataset_service"]

    def audit_resource_id(self):
        kwargs = self.path_kwargs
        parts = [kwargs.get(k) for k in ("owner", "name", "label", "sample")]
        return "/".join(p for p in parts if p)

    def location(self, owner: str, name: str, *parts) -> str:
        path = [
            quote(owner, safe=""),
            quote(name, safe=""),
            *(quote(str(p), safe="") for p in parts),
        ]
        return f"{self.settings['api_prefix']}/datasets/" + "/".join(path)


@web.stream_request_body
class BodyHandler(DatasetsAPIHandler):
    """A handler whose POST body may be large (a file, an archive): it is written to a
    staging folder as it comes, once the caller is known to be allowed; JSON bodies are
    read into memory."""

    def _streams_to_file(self) -> bool:
        content_type = self.request.headers.get("Content-Type", "")
        return self.request.method == "POST" and "json" not in content_type.lower()

    async def prepare(self):
        self._chunks: list[bytes] = []
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._file = None
        self.staging = None
        connection = self.request.connection
        if not self._streams_to_file():
            if connection is not None:
                connection.set_max_body_size(JSON_LIMIT)
            return
        # the caller is checked before the body is taken in
        user = self.current_user
        if user is None:
            self.get_login_url()
        self.require_scope("datasets:write")
        kwargs = self.path_kwargs
        try:
            await self.service.dataset(user, kwargs["owner"], kwargs["name"], change=True)
        except APIError as e:
            self.denied = e.code in (403, 404)
            raise
        limit = self.service.max_upload_bytes
        length = self.request.headers.get("Content-Length", "")
        if length.isascii() and length.isdigit() and int(length) > limit:
            raise APIError(
                413,
                f"The body has {int(length) / 1024**2:.0f} MiB, more than the "
                f"{limit // 1024**2} MiB one upload may: send the files in several archives.",
            )
        if connection is not None:
            connection.set_max_body_size(limit)
        self.staging = await asyncio.to_thread(self.service.staging)
        self._file = await asyncio.to_thread(open, self.staging / "body", "wb")

    async def data_received(self, chunk: bytes):
        if self._finished:  # refused before the body came: it is dropped
            return
        if self._file is None:
            self._chunks.append(chunk)
            return
        self._pending.append(chunk)
        self._pending_size += len(chunk)
        if self._pending_size >= CHUNK:
            await self._write_pending()

    async def _write_pending(self):
        data = b"".join(self._pending)
        self._pending, self._pending_size = [], 0
        if data:
            await asyncio.to_thread(self._file.write, data)

    async def body_file(self):
        """The path of the whole body, written to the staging folder."""
        await self._write_pending()
        await asyncio.to_thread(self._file.close)
        return self.staging / "body"

    def get_json_body(self) -> dict:
        return parse_json_body(b"".join(self._chunks))

    def _cleanup(self):
        staging, self.staging = getattr(self, "staging", None), None
        f, self._file = getattr(self, "_file", None), None
        if staging is None:
            return

        def remove():
            if f is not None:
                f.close()
            self.service.discard(staging)

        future = asyncio.ensure_future(asyncio.to_thread(remove))
        _cleanups.add(future)
        future.add_done_callback(_cleanups.discard)

    def on_finish(self):
        self._cleanup()

    def on_connection_close(self):
        super().on_connection_close()
        self._cleanup()


class DatasetsHandler(OwnedCollection, DatasetsAPIHandler):
    """GET /datasets lists the visible datasets; POST /datasets makes one."""

    audit_events = {"POST": ("createDataset", "dataset")}

    @web.authenticated
    @needs_scope("datasets:read")
    async def get(self):
        workspace, all_users = self.listing_query()
        self.write_json(await self.service.list(self.current_user, workspace, all_users))

    @web.authenticated
    async def post(self):
        body = self.get_json_body()
        self.audit_details = {"name": str(body.get("name", ""))[:64]}
        self.require_scope("datasets:write")
        ds = await self.service.create(self.current_user, body)
        self.audit_details["type"] = ds["type"]
        self.set_header("Location", self.location(ds["owner"], ds["name"]))
        self.write_json(ds, status=201)


class DatasetHandler(DatasetsAPIHandler):
    """GET a dataset with its statistics and versions; PATCH it; DELETE it with all it holds."""

    audit_events = {"PATCH": ("updateDataset", "dataset"), "DELETE": ("deleteDataset", "dataset")}

    @web.authenticated
    @needs_scope("datasets:read")
    async def get(self, owner, name):
        self.write_json(await self.service.get(self.current_user, owner, name))

    @web.authenticated
    @needs_scope("datasets:write")
    async def patch(self, owner, name):
        body = self.get_json_body()
        self.audit_details = {"changed": sorted(map(str, body))[:8]}
        self.write_json(await self.service.update(self.current_user, owner, name, body))

    @web.authenticated
    @needs_scope("datasets:write")
    async def delete(self, owner, name):
        await self.service.delete(self.current_user, owner, name)
        self.no_content()


class LabelsHandler(DatasetsAPIHandler):
    """POST a label to the dataset's label set: the label set."""

    audit_events = {"POST": ("createLabel", "dataset")}

    @web.authenticated
    @needs_scope("datasets:write")
    async def post(self, owner, name):
        body = self.get_json_body()
        self.audit_details = {"label": str(body.get("name", ""))[:64]}
        labels = await self.service.add_label(self.current_user, owner, name, body)
        self.set_header("Location", self.location(owner, name, "labels", body.get("name", "")))
        self.write_json(labels, status=201)


class LabelHandler(DatasetsAPIHandler):
    """PATCH a label (a new name is written into the annotations); DELETE it (?force=1:
    with the annotations that use it)."""

    audit_events = {"PATCH": ("updateLabel", "dataset"), "DELETE": ("deleteLabel", "dataset")}

    @web.authenticated
    @needs_scope("datasets:write")
    async def patch(self, owner, name, label):
        body = self.get_json_body()
        self.audit_details = {"changed": {k: str(v)[:64] for k, v in list(body.items())[:3]}}
        labels = await self.service.update_label(self.current_user, owner, name, label, body)
        self.write_json(labels)

    @web.authenticated
    @needs_scope("datasets:write")
    async def delete(self, owner, name, label):
        force = _flag(self, "force")
        self.audit_details = {"force": force}
        labels = await self.service.delete_label(self.current_user, owner, name, label, force)
        self.write_json(labels)


class SamplesHandler(BodyHandler):
    """GET a page of samples (filters, keyset paging by id); POST a file (?key=) or an
    archive of files; PATCH many samples' annotations."""

    audit_events = {"POST": ("uploadSamples", "dataset"), "PATCH": ("updateSamples", "dataset")}

    @web.authenticated
    @needs_scope("datasets:read")
    async def get(self, owner, name):
        names = ("status", "review", "label", "assignee", "task", "annotated_by", "after", "limit")
        query = {n: self.get_query_argument(n, "") for n in names}
        query["with_total"] = "1" if _flag(self, "with_total") else ""
        self.write_json(await self.service.samples(self.current_user, owner, name, query))

    @web.authenticated
    @needs_scope("datasets:write")
    async def post(self, owner, name):
        if self._file is None:
            raise APIError(
                400,
                "Send the file itself (?key=<path>) or a zip or tar archive as the body, not JSON.",
            )
        key = self.get_query_argument("key", "") or None
        content_type = self.request.headers.get("Content-Type", "")
        path = await self.body_file()
        result = await self.service.upload(self.current_user, owner, name, path, content_type, key)
        self.audit_details = {k: result[k] for k in ("added", "replaced", "unchanged")}
        self.write_json(result)

    @web.authenticated
    @needs_scope("datasets:label")
    async def patch(self, owner, name):
        body = self.get_json_body()
        answer = await self.service.annotate_many(self.current_user, owner, name, body)
        self.audit_details = {"samples": [s["id"] for s in answer["samples"]][:100]}
        self.write_json(answer)


class SampleHandler(DatasetsAPIHandler):
    """GET one sample."""

    @web.authenticated
    @needs_scope("datasets:read")
    async def get(self, owner, name, sample):
        self.write_json(await self.service.sample(self.current_user, owner, name, int(sample)))


class ContentHandler(DatasetsAPIHandler):
    """GET a sample's file (immutable: its ETag is its SHA-256)."""

    def set_default_headers(self):
        pass

    @web.authenticated
    @needs_scope("datasets:read")
    async def get(self, owner, name, sample):
        row, f = await self.service.content(self.current_user, owner, name, int(sample))
        try:
            etag = f'"{row.sha256}"'
            self.set_header("ETag", etag)
            self.set_header("Cache-Control", "private, max-age=31536000, immutable")
            if etag in self.request.headers.get("If-None-Match", "") or (
                self.request.headers.get("If-None-Match", "").strip() == row.sha256
            ):
                self.set_status(304)
                return
            media_type = row.media_type or "application/octet-stream"
            if media_type.startswith("text/"):
                media_type = "text/plain; charset=utf-8"
            self.set_header("Content-Type", media_type)
            self.set_header("X-Content-Type-Options", "nosniff")
            self.set_header("Content-Security-Policy", "default-src 'none'; sandbox")
            self.set_header("Content-Length", str(row.size))
            while True:
                chunk = await asyncio.to_thread(f.read, CHUNK)
                if not chunk:
                    break
                self.write(chunk)
                await self.flush()
        except StreamClosedError:
            return
        finally:
            await asyncio.to_thread(f.close)
        self.finish()


class AnnotationsHandler(DatasetsAPIHandler):
    """PUT a sample's annotations (as the caller's): the sample."""

    audit_events = {"PUT": ("updateSamples", "dataset")}

    @web.authenticated
    @needs_scope("datasets:label")
    async def put(self, owner, name, sample):
        body = self.get_json_body()
        answer = await self.service.annotate_one(self.current_user, owner, name, int(sample), body)
        self.audit_details = {"status": answer["status"]}
        self.write_json(answer)


class DeleteSamplesHandler(DatasetsAPIHandler):
    """POST {"ids": [...]}: delete those samples (their files go unless others hold them)."""

    audit_events = {"POST": ("deleteSamples", "dataset")}

    @web.authenticated
    @needs_scope("datasets:write")
    async def post(self, owner, name):
        body = self.get_json_body()
        answer = await self.service.delete_samples(self.current_user, owner, name, body)
        self.audit_details = {"deleted": answer["deleted"]}
        self.write_json(answer)


class AcceptHandler(DatasetsAPIHandler):
    """POST {"ids"} or {"min_confidence"}: pre-labels become labels."""

    audit_events = {"POST": ("acceptSamples", "dataset")}

    @web.authenticated
    @needs_scope("datasets:label")
    async def post(self, owner, name):
        body = self.get_json_body()
        answer = await self.service.accept(self.current_user, owner, name, body)
        self.audit_details = dict(answer)
        self.write_json(answer)


class ImportHandler(BodyHandler):
    """POST ?format=F an archive of files with annotations, or JSON {"format", "source":
    {"instance", "path"}} to copy them from an instance's storage."""

    audit_events = {"POST": ("importSamplesToDataset", "dataset")}

    @web.authenticated
    @needs_scope("datasets:write")
    async def post(self, owner, name):
        fmt = self.get_query_argument("format", "") or None
        if self._file is None:
            body = self.get_json_body()
            unknown = sorted(str(k) for k in set(body) - {"format", "source"})
            if unknown or not isinstance(body.get("source"), dict):
                raise APIError(
                    400,
                    'Send {"format": "coco", "source": {"instance": "nb", "path": "data/coco"}}, '
                    "or the files as a zip or tar archive with ?format=.",
                )
            if fmt and body.get("format") and body["format"] != fmt:
                raise APIError(400, "?format= and the body's format differ: give one.")
            fmt = body.get("format") or fmt
            self.audit_details = {"format": str(fmt)[:16], "source": body["source"]}
            result = await self.service.import_samples(
                self.current_user, owner, name, fmt, source=body["source"]
            )
        else:
            self.audit_details = {"format": str(fmt)[:16]}
            path = await self.body_file()
            result = await self.service.import_samples(
                self.current_user,
                owner,
                name,
                fmt,
                body=path,
                content_type=self.request.headers.get("Content-Type", ""),
            )
        self.audit_details.update(added=result["added"], annotated=result["annotated"])
        self.write_json(result)


class StatsHandler(DatasetsAPIHandler):
    """GET the dataset's statistics (one query: by status and review, and per label)."""

    @web.authenticated
    @needs_scope("datasets:read")
    async def get(self, owner, name):
        self.write_json(await self.service.stats(self.current_user, owner, name))


default_handlers = [
    (r"/datasets", DatasetsHandler),
    (DATASET, DatasetHandler),
    (DATASET + r"/labels", LabelsHandler),
    (DATASET + r"/labels/(?P<label>[^/]+)", LabelHandler),
    (DATASET + r"/samples", SamplesHandler),
    (DATASET + r"/samples/delete", DeleteSamplesHandler),
    (DATASET + r"/samples/accept", AcceptHandler),
    (SAMPLE, SampleHandler),
    (SAMPLE + r"/content", ContentHandler),
    (SAMPLE + r"/annotations", AnnotationsHandler),
    (DATASET + r"/import", ImportHandler),
    (DATASET + r"/stats", StatsHandler),
]
