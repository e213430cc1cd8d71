"""Alembic revisions of the SSH feature's tables (a branch off the first revision)."""
