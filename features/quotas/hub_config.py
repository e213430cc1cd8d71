"""What the quotas feature sets in the hub's configuration (read at every hub start)."""

from __future__ import annotations


def hub_config(c, hub) -> None:
    """Every start (spawn page, hub API, platform API) is admitted by the spawner too."""
    hub.spawner.quota_limits = hub.shared(
        "features.quotas.store:QuotaStore", hub.settings.default_quota()
    )
