"""The platform's own database: SQLAlchemy models, alembic migrations, async access."""

from .core import Base, Database, database_url, upgrade, upgrade_when_ready

__all__ = ["Base", "Database", "database_url", "upgrade", "upgrade_when_ready"]
