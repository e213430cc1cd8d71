"""How the instances feature joins the platform: its manager, auto-stop and live options."""

from __future__ import annotations

import os

from .lifecycle import Lifecycle
from .live_options import LiveOptionsStore
from .manager import InstanceManager
from .storage import InstanceStorage


def setup(platform) -> None:
    """The instance manager (admitted by the quotas feature's checker) and its lifecycle
    loop (auto-stop, crash restarts), started once the API serves."""
    settings = platform.settings
    manager = InstanceManager(platform.hub, platform.policy, start_timeout=settings.start_timeout)
    manager.lifecycle = Lifecycle(manager, settings)
    manager.quotas = platform["quota_checker"]
    manager.storage = InstanceStorage(settings, os.environ.get("WORKBENCH_ENGINE_URL", ""))
    platform.hub.live = LiveOptionsStore(platform.db)
    platform["instance_manager"] = manager
    platform.on_start.append(manager.lifecycle.start)
