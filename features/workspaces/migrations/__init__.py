"""Alembic revisions of the workspaces feature's tables (a branch off the first revision)."""
