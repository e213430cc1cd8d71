"""The hub's models and services pages: models with versions, lineage and files; services with
their traffic split, replicas, access keys and metrics."""

from __future__ import annotations

from tornado import web

from hub.service.pages import FeaturePage


class InferencePageBase(FeaturePage):
    """A page of the inference feature, linking to the models, services and jobs pages."""

    module_file = __file__
    pages = {
        "models_page": "/models",
        "services_page": "/services",
        "jobs_page": "/jobs",
        "experiments_page": "/experiments",
    }


class ModelsPageHandler(InferencePageBase):
    """GET /models: the user's models and their workspaces' models, each model's versions
    with their lineage and files (SHA-256s)."""

    @web.authenticated
    def get(self):
        self.render_page("models.html", self.page_config())


class ServicesPageHandler(InferencePageBase):
    """GET /services: the user's services and their workspaces' services, each with its
    traffic split, replicas, access keys and metrics."""

    @web.authenticated
    def get(self):
        self.render_page("services.html", self.page_config())


default_pages = [(r"/models", ModelsPageHandler), (r"/services", ServicesPageHandler)]
