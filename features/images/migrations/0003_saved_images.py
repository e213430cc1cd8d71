"""Saved images: images committed from instances, their owners, shares and state.

Revision ID: 0003
Revises: 0001
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0001"
branch_labels = ("images",)
depends_on = None


def upgrade():
    op.create_table(
        "saved_images",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("owner", sa.String(255), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("tag", sa.String(128), nullable=False),
        sa.Column("ref", sa.String(512), nullable=False, unique=True),
        sa.Column("image_id", sa.String(128), nullable=False, server_default=""),
        sa.Column("size", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("added_size", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("created", sa.DateTime, nullable=False),
        sa.Column("source_instance", sa.String(255), nullable=False, server_default=""),
        sa.Column("base_image", sa.String(255), nullable=False),
        sa.Column("description", sa.Text, nullable=False, server_default=""),
        sa.Column("state", sa.String(16), nullable=False, server_default="saving"),
        sa.Column("error", sa.Text, nullable=False, server_default=""),
        sa.Column("shares", sa.JSON, nullable=False),
        sa.Column("pushed_ref", sa.String(512), nullable=False, server_default=""),
        sa.UniqueConstraint("owner", "name", "tag", name="uq_saved_images_name_tag"),
    )
    op.create_index("ix_saved_images_owner", "saved_images", ["owner"])


def downgrade():
    op.drop_index("ix_saved_images_owner", "saved_images")
    op.drop_table("saved_images")
