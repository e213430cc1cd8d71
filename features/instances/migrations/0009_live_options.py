"""Options changed on running instances, laid over JupyterHub's user_options.

Revision ID: 0009
Revises: 0001
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0001"
branch_labels = ("live_options",)
depends_on = None


def upgrade():
    op.create_table(
        "instance_live_options",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("user", sa.String(255), nullable=False),
        sa.Column("instance", sa.String(64), nullable=False),
        sa.Column("options", sa.Text, nullable=False),
        sa.Column("updated", sa.DateTime, nullable=False),
        sa.UniqueConstraint("user", "instance"),
    )
    op.create_index("ix_instance_live_options_user", "instance_live_options", ["user"])


def downgrade():
    op.drop_table("instance_live_options")
