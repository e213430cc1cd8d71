"""Alembic revisions of the jobs feature's tables (a branch off the first revision)."""
