"""Usage metering: running periods of instances.

Revision ID: 0007
Revises: 0001
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0001"
branch_labels = ("usage",)
depends_on = None


def upgrade():
    op.create_table(
        "usage_periods",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("user", sa.String(255), nullable=False),
        sa.Column("instance", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("flavor", sa.String(64), nullable=False),
        sa.Column("vcpus", sa.Float, nullable=False),
        sa.Column("memory_gib", sa.Float, nullable=False),
        sa.Column("gpus", sa.Integer, nullable=False),
        sa.Column("started", sa.DateTime, nullable=False),
        sa.Column("stopped", sa.DateTime, nullable=True),
    )
    op.create_index("ix_usage_periods_user", "usage_periods", ["user"])
    op.create_index("ix_usage_periods_started", "usage_periods", ["started"])


def downgrade():
    op.drop_table("usage_periods")
