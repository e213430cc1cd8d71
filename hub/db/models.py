"""Every table of the platform database: the kit's (audit) and each feature's."""

from ..audit import models as _audit  # noqa: F401
from .core import Base


def load_tables(features=None) -> type[Base]:
    """Import every feature's table modules, so Base.metadata holds all tables; Base."""
    from importlib import import_module

    from ..features import load_features

    for feature in load_features() if features is None else features:
        for module in feature.tables:
            import_module(module)
    return Base


__all__ = ["Base", "load_tables"]
