"""HTTP handlers of labelling tasks (review, sampling acceptance) and auto-labelling runs."""

from __future__ import annotations

from tornado import web

from hub.service.api import needs_scope

from .autolabel import AutoLabeller
from .tasks import TaskService
from .versions_api import DATASET, DatasetAPIHandler

TASK = DATASET + r"/tasks/(?P<task>[^/]+)"
RUN = DATASET + r"/autolabel/(?P<run>[0-9]{1,9})"


class TasksAPIHandler(DatasetAPIHandler):
    @property
    def tasks(self) -> TaskService:
        return self.settings["dataset_tasks"]


class TasksHandler(TasksAPIHandler):
    """GET a dataset's labelling tasks with their progress; POST creates one."""

    audit_events = {"POST": ("createWorkforceTask", "dataset")}

    def audit_resource_id(self):
        task = (self.audit_details or {}).get("task", "")
        return "/".join(p for p in (super().audit_resource_id(), "tasks", task) if p)

    @web.authenticated
    @needs_scope("datasets:read")
    async def get(self, owner, name):
        self.write_json(await self.tasks.list(self.current_user, owner, name))

    @web.authenticated
    @needs_scope("datasets:write")
    async def post(self, owner, name):
        body = self.get_json_body()
        self.audit_details = {"task": str(body.get("name", ""))[:64]}
        task = await self.tasks.create(self.current_user, owner, name, body)
        self.audit_details.update(
            labellers=task["labellers"], reviewers=task["reviewers"], samples=task["samples"]
        )
        self.set_header("Location", self.dataset_location(owner, name, "tasks", task["name"]))
        self.write_json(task, status=201)


class TaskHandler(TasksAPIHandler):
    """GET a task; PATCH its members, description or samples; DELETE it (its samples are
    released, their labels kept)."""

    audit_events = {
        "PATCH": ("updateWorkforceTask", "dataset"),
        "DELETE": ("deleteWorkforceTask", "dataset"),
    }

    @web.authenticated
    @needs_scope("datasets:read")
    async def get(self, owner, name, task):
        self.write_json(await self.tasks.get(self.current_user, owner, name, task))

    @web.authenticated
    @needs_scope("datasets:write")
    async def patch(self, owner, name, task):
        body = self.get_json_body()
        self.audit_details = {k: body[k] for k in ("labellers", "reviewers") if k in body}
        self.write_json(await self.tasks.update(self.current_user, owner, name, task, body))

    @web.authenticated
    @needs_scope("datasets:write")
    async def delete(self, owner, name, task):
        await self.tasks.delete(self.current_user, owner, name, task)
        self.no_content()


class ReviewHandler(TasksAPIHandler):
    """POST {"samples": [{"id", "accepted", "comment"?}]}: a reviewer's decisions."""

    audit_events = {"POST": ("reviewSamples", "dataset")}

    @web.authenticated
    @needs_scope("datasets:review")
    async def post(self, owner, name, task):
        body = self.get_json_body()
        answer = await self.tasks.review(self.current_user, owner, name, task, body)
        self.audit_details = {
            "accepted": [s["id"] for s in answer["samples"] if s.get("review") == "accepted"],
            "rejected": [s["id"] for s in answer["samples"] if s.get("review") == "rejected"],
        }
        self.write_json(answer)


class SamplingHandler(TasksAPIHandler):
    """POST {"labeller", "ratio"} draws samples to check; PATCH {"labeller", "accepted",
    "comment"?} decides on all of that labeller's samples waiting for review."""

    audit_events = {
        "POST": ("startWorkforceSamplingTask", "dataset"),
        "PATCH": ("updateWorkforceSamplingTask", "dataset"),
    }

    @web.authenticated
    @needs_scope("datasets:review")
    async def post(self, owner, name, task):
        body = self.get_json_body()
        check = await self.tasks.start_sampling(self.current_user, owner, name, task, body)
        self.audit_details = {"labeller": check["labeller"], "samples": len(check["samples"])}
        self.write_json(check, status=201)

    @web.authenticated
    @needs_scope("datasets:review")
    async def patch(self, owner, name, task):
        body = self.get_json_body()
        decided = await self.tasks.decide_sampling(self.current_user, owner, name, task, body)
        self.audit_details = {
            "labeller": decided["labeller"],
            "state": decided["state"],
            "samples": decided.get("count"),
        }
        self.write_json(decided)


class AutoLabelAPIHandler(DatasetAPIHandler):
    @property
    def autolabeller(self) -> AutoLabeller:
        return self.settings["autolabeller"]


class AutoLabelRunsHandler(AutoLabelAPIHandler):
    """GET a dataset's auto-labelling runs; POST {"service", "threshold"?, "limit"?} starts one
    (the caller must be allowed to call the service)."""

    audit_events = {"POST": ("createAutoLabelingTask", "dataset")}

    @web.authenticated
    @needs_scope("datasets:read")
    async def get(self, owner, name):
        self.write_json(await self.autolabeller.list(self.current_user, owner, name))

    @web.authenticated
    @needs_scope("datasets:write")
    async def post(self, owner, name):
        body = self.get_json_body()
        self.audit_details = {"service": body.get("service"), "threshold": body.get("threshold")}
        self.require_scope("services:call")
        run = await self.autolabeller.create(self.current_user, owner, name, body)
        self.audit_details["run"] = run["id"]
        self.set_header("Location", self.dataset_location(owner, name, "autolabel", run["id"]))
        self.write_json(run, status=202)


class AutoLabelRunHandler(AutoLabelAPIHandler):
    """GET an auto-labelling run: its state and counts."""

    @web.authenticated
    @needs_scope("datasets:read")
    async def get(self, owner, name, run):
        self.write_json(await self.autolabeller.get(self.current_user, owner, name, int(run)))


class AutoLabelStopHandler(AutoLabelAPIHandler):
    """POST: stop a run after the batch it is at."""

    audit_events = {"POST": ("stopTask", "dataset")}

    @web.authenticated
    @needs_scope("datasets:write")
    async def post(self, owner, name, run):
        self.write_json(await self.autolabeller.stop(self.current_user, owner, name, int(run)))


default_handlers = [
    (DATASET + r"/tasks", TasksHandler),
    (TASK, TaskHandler),
    (TASK + r"/review", ReviewHandler),
    (TASK + r"/sampling", SamplingHandler),
    (DATASET + r"/autolabel", AutoLabelRunsHandler),
    (RUN, AutoLabelRunHandler),
    (RUN + r"/stop", AutoLabelStopHandler),
]
