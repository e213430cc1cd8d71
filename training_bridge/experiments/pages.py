"""The hub's experiments page: hyperparameter searches with their trials and charts, runs
compared side by side, and the user's TensorBoards."""

from __future__ import annotations

from tornado import web

from hub.service.pages import FeaturePage


class ExperimentsPageHandler(FeaturePage):
    """GET /experiments: the user's searches and those of their workspaces; one search's
    trials with the objective and each parameter charted; a comparison of ticked runs (trials
    or any job versions) with their differences marked and metric curves overlaid; the user's
    TensorBoards."""

    module_file = __file__
    pages = {
        "experiments_page": "/experiments",
        "jobs_page": "/jobs",
        "datasets_page": "/datasets",
        "models_page": "/models",
    }

    @web.authenticated
    def get(self):
        # the hub's base (its prefix without "hub/"): where the user's instances are served
        base = self.hub_auth.hub_prefix.rstrip("/").rsplit("/", 1)[0]
        self.render_page("experiments.html", self.page_config(instances=base + "/user/"))


default_pages = [(r"/experiments", ExperimentsPageHandler)]
