"""Alembic revisions of the instances feature's tables (a branch off the first revision)."""
