"""Hyperparameter searches, their trials, and TensorBoards.

Revision ID: 0016
Revises: 0001
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0001"
branch_labels = ("experiments",)
depends_on = None


def upgrade():
    op.create_table(
        "experiment_searches",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("owner", sa.String(255), nullable=False),
        sa.Column("job", sa.String(64), nullable=False),
        sa.Column("workspace", sa.String(32), nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("spec", sa.Text, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("best_trial", sa.Integer, nullable=True),
        sa.Column("created", sa.DateTime, nullable=False),
        sa.Column("finished", sa.DateTime, nullable=True),
    )
    for column in ("owner", "workspace", "state", "created"):
        op.create_index(f"ix_experiment_searches_{column}", "experiment_searches", [column])
    op.create_table(
        "experiment_trials",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "search_id",
            sa.Integer,
            sa.ForeignKey("experiment_searches.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("number", sa.Integer, nullable=False),
        sa.Column("version", sa.Integer, nullable=True),
        sa.Column("params", sa.Text, nullable=False),
        sa.Column("system_attrs", sa.Text, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("value", sa.Float, nullable=True),
        sa.Column("steps", sa.Integer, nullable=False),
        sa.Column("intermediate", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("created", sa.DateTime, nullable=False),
        sa.Column("finished", sa.DateTime, nullable=True),
        sa.UniqueConstraint("search_id", "number", name="uq_experiment_trials_number"),
    )
    op.create_index("ix_experiment_trials_search_id", "experiment_trials", ["search_id"])
    op.create_index("ix_experiment_trials_state", "experiment_trials", ["state"])
    op.create_table(
        "tensorboards",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("owner", sa.String(255), nullable=False),
        sa.Column("instance", sa.String(255), nullable=False),
        sa.Column("runs", sa.Text, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created", sa.DateTime, nullable=False),
        sa.Column("stopped", sa.DateTime, nullable=True),
    )
    op.create_index("ix_tensorboards_owner", "tensorboards", ["owner"])


def downgrade():
    op.drop_table("tensorboards")
    op.drop_table("experiment_trials")
    op.drop_table("experiment_searches")
