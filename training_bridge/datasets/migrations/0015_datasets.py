"""Datasets, their samples and versions, labelling tasks and auto-labelling runs.

Revision ID: 0015
Revises: 0001
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0001"
branch_labels = ("datasets",)
depends_on = None


def _of_dataset(name: str, *columns, unique: tuple[str, str] | None = None) -> None:
    """A table of rows that belong to one dataset (deleted with it)."""
    constraints = [sa.UniqueConstraint("dataset_id", unique[0], name=unique[1])] if unique else []
    op.create_table(
        name,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "dataset_id",
            sa.Integer,
            sa.ForeignKey("datasets.id", ondelete="CASCADE"),
            nullable=False,
        ),
        *columns,
        *constraints,
    )
    op.create_index(f"ix_{name}_dataset_id", name, ["dataset_id"])


def upgrade():
    op.create_table(
        "datasets",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("owner", sa.String(255), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("workspace", sa.String(32), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("multi_label", sa.Boolean, nullable=False),
        sa.Column("labels", sa.Text, nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("created", sa.DateTime, nullable=False),
        sa.Column("updated", sa.DateTime, nullable=False),
        sa.UniqueConstraint("owner", "name", name="uq_datasets_owner_name"),
    )
    op.create_index("ix_datasets_owner", "datasets", ["owner"])
    op.create_index("ix_datasets_workspace", "datasets", ["workspace"])
    _of_dataset(
        "dataset_samples",
        sa.Column("key", sa.String(512), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("media_type", sa.String(64), nullable=False),
        sa.Column("width", sa.Integer, nullable=False),
        sa.Column("height", sa.Integer, nullable=False),
        sa.Column("annotations", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("annotated_by", sa.String(255), nullable=False),
        sa.Column("confidence", sa.Float, nullable=True),
        sa.Column("review", sa.String(16), nullable=False),
        sa.Column("review_comment", sa.Text, nullable=False),
        sa.Column("reviewed_by", sa.String(255), nullable=False),
        sa.Column("task_id", sa.Integer, nullable=True),
        sa.Column("assignee", sa.String(255), nullable=False),
        sa.Column("created", sa.DateTime, nullable=False),
        sa.Column("updated", sa.DateTime, nullable=False),
        unique=("key", "uq_dataset_samples_key"),
    )
    op.create_index("ix_dataset_samples_sha256", "dataset_samples", ["sha256"])
    op.create_index("ix_dataset_samples_task_id", "dataset_samples", ["task_id"])
    # keyset paging by id within one dataset, filtered by status, review or assignee
    for column in ("status", "review", "assignee"):
        op.create_index(
            f"ix_dataset_samples_{column}", "dataset_samples", ["dataset_id", column, "id"]
        )
    _of_dataset(
        "dataset_versions",
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("train_ratio", sa.Float, nullable=False),
        sa.Column("manifest_sha256", sa.String(64), nullable=False),
        sa.Column("samples", sa.Integer, nullable=False),
        sa.Column("labelled", sa.Integer, nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("labels", sa.Text, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("created_by", sa.String(255), nullable=False),
        sa.Column("created", sa.DateTime, nullable=False),
        unique=("version", "uq_dataset_versions_version"),
    )
    _of_dataset(
        "labelling_tasks",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("created_by", sa.String(255), nullable=False),
        sa.Column("labellers", sa.Text, nullable=False),
        sa.Column("reviewers", sa.Text, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("sampling", sa.Text, nullable=False),
        sa.Column("created", sa.DateTime, nullable=False),
        sa.Column("updated", sa.DateTime, nullable=False),
        unique=("name", "uq_labelling_tasks_name"),
    )
    _of_dataset(
        "autolabel_runs",
        sa.Column("created_by", sa.String(255), nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("threshold", sa.Float, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("total", sa.Integer, nullable=False),
        sa.Column("done", sa.Integer, nullable=False),
        sa.Column("accepted", sa.Integer, nullable=False),
        sa.Column("created", sa.DateTime, nullable=False),
        sa.Column("finished", sa.DateTime, nullable=True),
    )


def downgrade():
    op.drop_table("autolabel_runs")
    op.drop_table("labelling_tasks")
    op.drop_table("dataset_versions")
    op.drop_table("dataset_samples")
    op.drop_table("datasets")
