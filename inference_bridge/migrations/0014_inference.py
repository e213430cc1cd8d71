"""Models and their versions, services and their access keys.

Revision ID: 0014
Revises: 0001
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0001"
branch_labels = ("inference",)
depends_on = None


def _owned(name: str, *columns) -> None:
    """A table of named things of one owner in a workspace."""
    op.create_table(
        name,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("owner", sa.String(255), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("workspace", sa.String(32), nullable=False),
        *columns,
        sa.UniqueConstraint("owner", "name", name=f"uq_{name}_owner_name"),
    )
    op.create_index(f"ix_{name}_owner", name, ["owner"])
    op.create_index(f"ix_{name}_workspace", name, ["workspace"])


def upgrade():
    _owned("models", sa.Column("created", sa.DateTime, nullable=False))
    op.create_table(
        "model_versions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "model_id", sa.Integer, sa.ForeignKey("models.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("format", sa.String(16), nullable=False),
        sa.Column("image", sa.String(255), nullable=False),
        sa.Column("command", sa.Text, nullable=False),
        sa.Column("predictor", sa.String(255), nullable=False),
        sa.Column("signature", sa.Text, nullable=False),
        sa.Column("metrics", sa.Text, nullable=False),
        sa.Column("files", sa.Text, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("created", sa.DateTime, nullable=False),
        sa.UniqueConstraint("model_id", "version", name="uq_model_versions_version"),
    )
    op.create_index("ix_model_versions_model_id", "model_versions", ["model_id"])
    # not "services": JupyterHub's own table of that name shares a PostgreSQL database
    _owned(
        "inference_services",
        sa.Column("public", sa.Boolean, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("spec", sa.Text, nullable=False),
        sa.Column("created", sa.DateTime, nullable=False),
        sa.Column("updated", sa.DateTime, nullable=False),
    )
    op.create_index("ix_inference_services_state", "inference_services", ["state"])
    op.create_table(
        "inference_service_keys",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "service_id",
            sa.Integer,
            sa.ForeignKey("inference_services.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False, unique=True),
        sa.Column("created", sa.DateTime, nullable=False),
        sa.Column("last_used", sa.DateTime, nullable=True),
        sa.UniqueConstraint("service_id", "name", name="uq_inference_service_keys_name"),
    )
    op.create_index(
        "ix_inference_service_keys_service_id", "inference_service_keys", ["service_id"]
    )


def downgrade():
    op.drop_table("inference_service_keys")
    op.drop_table("inference_services")
    op.drop_table("model_versions")
    op.drop_table("models")
