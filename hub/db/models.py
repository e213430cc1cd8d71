"""All tables of the platform database (each feature's module registers its own)."""

from .. import keys as _keys  # noqa: F401
from .. import live_options as _live_options  # noqa: F401
from .. import metering as _metering  # noqa: F401
from .. import quotas as _quotas  # noqa: F401
from .. import saved_images as _saved_images  # noqa: F401
from .. import workspaces as _workspaces  # noqa: F401
from ..audit import models as _audit  # noqa: F401
from .core import Base

__all__ = ["Base"]
