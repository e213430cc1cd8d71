"""Saved images record the workspace they were saved in.

Revision ID: 0011
Revises: 0003
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("saved_images") as batch:
        batch.add_column(
            sa.Column("workspace", sa.String(32), nullable=False, server_default="default")
        )


def downgrade():
    with op.batch_alter_table("saved_images") as batch:
        batch.drop_column("workspace")
