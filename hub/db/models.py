"""All tables of the platform database (each feature's module registers its own)."""

from .core import Base

__all__ = ["Base"]
