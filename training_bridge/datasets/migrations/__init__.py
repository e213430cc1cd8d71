"""Alembic revisions of the datasets feature's tables (a branch off the first revision)."""
