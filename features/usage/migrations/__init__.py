"""Alembic revisions of the usage feature's tables (a branch off the first revision)."""
