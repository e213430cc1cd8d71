"""Saved images: a record of each push, which pulls trust instead of an image's labels.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "image_pushes",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("ref", sa.String(512), nullable=False, unique=True),
        sa.Column("owner", sa.String(255), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("tag", sa.String(128), nullable=False),
        sa.Column("image_id", sa.String(128), nullable=False, server_default=""),
        sa.Column("base_image", sa.String(255), nullable=False),
        sa.Column("source_instance", sa.String(255), nullable=False, server_default=""),
        sa.Column("description", sa.Text, nullable=False, server_default=""),
        sa.Column("pushed", sa.DateTime, nullable=False),
    )
    op.create_index("ix_image_pushes_owner", "image_pushes", ["owner"])


def downgrade():
    op.drop_index("ix_image_pushes_owner", "image_pushes")
    op.drop_table("image_pushes")
