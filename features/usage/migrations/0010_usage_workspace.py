"""Usage periods record the instance's workspace.

Revision ID: 0010
Revises: 0007
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("usage_periods") as batch:
        batch.add_column(
            sa.Column("workspace", sa.String(32), nullable=False, server_default="default")
        )
        batch.create_index("ix_usage_periods_workspace", ["workspace"])


def downgrade():
    with op.batch_alter_table("usage_periods") as batch:
        batch.drop_index("ix_usage_periods_workspace")
        batch.drop_column("workspace")
