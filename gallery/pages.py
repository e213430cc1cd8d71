"""The hub's gallery page: search, filter and sort the assets users share; preview, star and use."""

from __future__ import annotations

from tornado import web

from hub.service.pages import FeaturePage


class GalleryPageHandler(FeaturePage):
    """GET /gallery: the assets the user may see as cards (text search, tag chips, kind and
    sort), and one asset's detail: its Markdown description, versions, a notebook's read-only
    preview in a sandboxed frame, the star, and how to use it (a notebook into one of the
    user's running instances, an image, a model or a dataset as the user's own); owners edit
    and unpublish."""

    module_file = __file__
    pages = {
        "gallery_page": "/gallery",
        "jobs_page": "/jobs",
        "experiments_page": "/experiments",
        "datasets_page": "/datasets",
        "models_page": "/models",
        "services_page": "/services",
    }

    @web.authenticated
    def get(self):
        # the hub's base (its prefix without "hub/"): where the user's instances are served
        base = self.hub_auth.hub_prefix.rstrip("/").rsplit("/", 1)[0]
        self.render_page("gallery.html", self.page_config(instances=base + "/user/"))


default_pages = [(r"/gallery", GalleryPageHandler)]
