"""Alembic revisions of the inference feature's tables (a branch off the first revision)."""
