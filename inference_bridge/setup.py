"""How the inference feature joins the platform API: the model registry and the services."""

from __future__ import annotations

from .model_setup import setup_models
from .service_setup import setup_services


def setup(platform) -> None:
    """The model registry first (services deploy its versions), then the service manager."""
    setup_models(platform)
    setup_services(platform)
