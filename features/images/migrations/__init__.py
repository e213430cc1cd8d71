"""Alembic revisions of the images feature's tables (a branch off the first revision)."""
