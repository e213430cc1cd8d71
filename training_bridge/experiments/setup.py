"""How the experiments feature joins the platform API: its search loop and TensorBoards."""

from __future__ import annotations

from .searches import SearchService
from .tensorboards import TensorBoardService


def setup(platform) -> None:
    """platform["search_service"] (its loop starts with the API and takes up the searches a
    restart left running) and platform["tensorboard_service"]."""
    config = platform.settings.feature("experiments")
    jobs = platform["job_service"]
    searches = SearchService(
        db=platform.db,
        jobs=jobs,
        settings=config,
        quotas=platform.get("quota_checker"),
        policy=platform.policy,
    )
    platform["search_service"] = searches
    platform.on_start.append(searches.start)
    platform.on_stop.append(searches.close)
    platform["tensorboard_service"] = TensorBoardService(
        db=platform.db, jobs=jobs, hub=platform.hub, settings=config
    )
