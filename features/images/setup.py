"""How the images feature joins the platform: its service in the API, its store in spawners."""

from __future__ import annotations

from .service import make_image_service
from .store import SavedImageStore


def setup(platform) -> None:
    """The saved-image store (the instance policy resolves saved images with it) and the
    image service; a save a restart interrupted is cleaned up before the API serves."""
    store = SavedImageStore(platform.db)
    platform["saved_images"] = store
    service = make_image_service(
        db=platform.db,
        hub=platform.hub,
        policy=platform.policy,
        settings=platform.settings,
        store=store,
        engine_url=platform.engine.url,
    )
    platform["image_service"] = service
    platform.on_start.append(service.cleanup_interrupted)
