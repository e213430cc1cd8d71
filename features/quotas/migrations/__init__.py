"""Alembic revisions of the quotas feature's tables (a branch off the first revision)."""
