"""The hub's training job pages: the list of jobs with a submit form, and one job's page."""

from __future__ import annotations

from tornado import web

from hub.service.pages import FeaturePage


class JobsPageBase(FeaturePage):
    """A page of the jobs feature, linking to the jobs pages."""

    module_file = __file__
    pages = {"pages": "/jobs", "experiments_page": "/experiments"}


class JobsPageHandler(JobsPageBase):
    """GET /jobs: the user's jobs and those of their workspaces, and a form to submit one."""

    @web.authenticated
    def get(self):
        self.render_page("jobs.html", self.page_config(state=self.get_argument("state", "")))


class JobPageHandler(JobsPageBase):
    """GET /jobs/{owner}/{name}: one job's versions, logs, metrics and output files."""

    @web.authenticated
    def get(self, owner: str, name: str):
        self.render_page("job.html", self.page_config(owner=owner, name=name))


default_pages = [(r"/jobs", JobsPageHandler), (r"/jobs/([^/]+)/([^/]+)", JobPageHandler)]
