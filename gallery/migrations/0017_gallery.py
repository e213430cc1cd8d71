"""Gallery assets, their versions, stars and uses.

Revision ID: 0017
Revises: 0001
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0001"
branch_labels = ("gallery",)
depends_on = None


def upgrade():
    op.create_table(
        "gallery_assets",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("owner", sa.String(255), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("title", sa.String(120), nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("tags", sa.Text, nullable=False),
        sa.Column("visibility", sa.String(16), nullable=False),
        sa.Column("workspace", sa.String(32), nullable=False),
        sa.Column("created", sa.DateTime, nullable=False),
        sa.Column("updated", sa.DateTime, nullable=False),
        sa.Column("uses", sa.Integer, nullable=False),
        sa.Column("stars", sa.Integer, nullable=False),
        sa.Column("latest", sa.Integer, nullable=False),
        sqlite_autoincrement=True,
    )
    for column in ("owner", "kind", "workspace", "created"):
        op.create_index(f"ix_gallery_assets_{column}", "gallery_assets", [column])
    op.create_table(
        "gallery_versions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "asset_id",
            sa.Integer,
            sa.ForeignKey("gallery_assets.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("created", sa.DateTime, nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("meta", sa.Text, nullable=False),
        sa.Column("files", sa.Text, nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("notes", sa.Text, nullable=False),
        sa.UniqueConstraint("asset_id", "version", name="uq_gallery_versions_version"),
    )
    op.create_index("ix_gallery_versions_asset_id", "gallery_versions", ["asset_id"])
    op.create_table(
        "gallery_stars",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "asset_id",
            sa.Integer,
            sa.ForeignKey("gallery_assets.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("user", sa.String(255), nullable=False),
        sa.Column("created", sa.DateTime, nullable=False),
        sa.UniqueConstraint("asset_id", "user", name="uq_gallery_stars_user"),
    )
    op.create_index("ix_gallery_stars_asset_id", "gallery_stars", ["asset_id"])
    op.create_index("ix_gallery_stars_user", "gallery_stars", ["user"])
    op.create_table(
        "gallery_uses",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "asset_id",
            sa.Integer,
            sa.ForeignKey("gallery_assets.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("user", sa.String(255), nullable=False),
        sa.Column("created", sa.DateTime, nullable=False),
        sa.Column("target", sa.Text, nullable=False),
    )
    op.create_index("ix_gallery_uses_asset_id", "gallery_uses", ["asset_id"])
    op.create_index("ix_gallery_uses_user", "gallery_uses", ["user"])


def downgrade():
    op.drop_table("gallery_uses")
    op.drop_table("gallery_stars")
    op.drop_table("gallery_versions")
    op.drop_table("gallery_assets")
