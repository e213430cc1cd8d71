"""The hub's datasets page: datasets with their statistics, versions, team tasks and
auto-labelling runs."""

from __future__ import annotations

from tornado import web

from hub.service.pages import FeaturePage


class DatasetsPageHandler(FeaturePage):
    """GET /datasets: the user's datasets and those of their workspaces and tasks; one
    dataset's labels per class, published versions, tasks with each member's progress and
    auto-labelling runs."""

    module_file = __file__
    pages = {
        "datasets_page": "/datasets",
        "jobs_page": "/jobs",
        "models_page": "/models",
        "experiments_page": "/experiments",
    }

    @web.authenticated
    def get(self):
        self.render_page("datasets.html", self.page_config())


default_pages = [(r"/datasets", DatasetsPageHandler)]
