"""The platform database's first revision; each feature's tables branch off it.

Revision ID: 0001
Revises:
Create Date: 2026-11-30
"""

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
