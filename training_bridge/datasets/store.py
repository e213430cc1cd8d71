"""Datasets, their samples, versions, labelling tasks and auto-labelling runs in the database."""

from __future__ import annotations

import json
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    delete,
    select,
)
from sqlalchemy.orm import Mapped, Session, mapped_column
from workbench.times import utcnow

from hub.db.core import Base

# the dataset types
IMAGE_CLASSIFICATION = "image_classification"
OBJECT_DETECTION = "object_detection"
TEXT_CLASSIFICATION = "text_classification"
NAMED_ENTITIES = "named_entities"
DATASET_TYPES = (IMAGE_CLASSIFICATION, OBJECT_DETECTION, TEXT_CLASSIFICATION, NAMED_ENTITIES)
IMAGE_TYPES = (IMAGE_CLASSIFICATION, OBJECT_DETECTION)

# a sample's labelling status
UNLABELLED = "unlabelled"
LABELLED = "labelled"  # annotated (or confirmed) by a person
PRELABELLED = "prelabelled"  # annotated by a model only, not confirmed yet
SAMPLE_STATUSES = (UNLABELLED, LABELLED, PRELABELLED)

# a sample's review state ("" : not in review)
TO_REVIEW = "to_review"
ACCEPTED = "accepted"
REJECTED = "rejected"
REVIEW_STATES = ("", TO_REVIEW, ACCEPTED, REJECTED)

# a version's, a task's or an auto-labelling run's state
PENDING = "pending"
RUNNING = "running"
READY = "ready"
DONE = "done"
STOPPED = "stopped"
FAILED = "failed"


class Dataset(Base):
    """A named dataset of one owner: its type, label set and samples."""

    __tablename__ = "datasets"
    __table_args__ = (UniqueConstraint("owner", "name", name="uq_datasets_owner_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner: Mapped[str] = mapped_column(String(255), index=True)
    name: Mapped[str] = mapped_column(String(64))
    description: Mapped[str] = mapped_column(Text, default="")
    workspace: Mapped[str] = mapped_column(String(32), default="default", index=True)
    type: Mapped[str] = mapped_column(String(32))
    multi_label: Mapped[bool] = mapped_column(Boolean, default=False)
    # JSON: [{"name": "cat", "color": "#e6194b", "key": "c"}]
    labels: Mapped[str] = mapped_column(Text, default="[]")
    # bytes of the files the dataset's samples hold (each distinct file counted once)
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Sample(Base):
    """One sample: a file of the blob store (an image, or a text) and its annotations."""

    __tablename__ = "dataset_samples"
    __table_args__ = (
        UniqueConstraint("dataset_id", "key", name="uq_dataset_samples_key"),
        Index("ix_dataset_samples_status", "dataset_id", "status", "id"),
        Index("ix_dataset_samples_review", "dataset_id", "review", "id"),
        Index("ix_dataset_samples_assignee", "dataset_id", "assignee", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataset_id: Mapped[int] = mapped_column(
        ForeignKey("datasets.id", ondelete="CASCADE"), index=True
    )
    # the sample's path in the dataset (POSIX, relative): "images/cat-001.jpg", "texts/000001.txt"
    key: Mapped[str] = mapped_column(String(512))
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    media_type: Mapped[str] = mapped_column(String(64), default="")
    width: Mapped[int] = mapped_column(Integer, default=0)
    height: Mapped[int] = mapped_column(Integer, default=0)
    # JSON list of annotations (see the annotation model in formats)
    annotations: Mapped[str] = mapped_column(Text, default="[]")
    status: Mapped[str] = mapped_column(String(16), default=UNLABELLED)
    # who last wrote the annotations: a user's name, or "model:<owner>/<service or model>"
    annotated_by: Mapped[str] = mapped_column(String(255), default="")
    # the lowest confidence among a model's annotations (None: a person's)
    confidence: Mapped[float | None] = mapped_column(Float, nullable=True)
    review: Mapped[str] = mapped_column(String(16), default="")
    review_comment: Mapped[str] = mapped_column(Text, default="")
    reviewed_by: Mapped[str] = mapped_column(String(255), default="")
    # the labelling task that holds it and the member it is assigned to ("": none)
    task_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    assignee: Mapped[str] = mapped_column(String(255), default="")
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class DatasetVersion(Base):
    """A published, immutable version: its manifest (in the store) and what it counted."""

    __tablename__ = "dataset_versions"
    __table_args__ = (
        UniqueConstraint("dataset_id", "version", name="uq_dataset_versions_version"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataset_id: Mapped[int] = mapped_column(
        ForeignKey("datasets.id", ondelete="CASCADE"), index=True
    )
    version: Mapped[int] = mapped_column(Integer)
    description: Mapped[str] = mapped_column(Text, default="")
    train_ratio: Mapped[float] = mapped_column(Float, default=0.8)
    # SHA-256 of the version's manifest (JSON lines, one sample each, in key order)
    manifest_sha256: Mapped[str] = mapped_column(String(64), default="")
    samples: Mapped[int] = mapped_column(Integer, default=0)
    labelled: Mapped[int] = mapped_column(Integer, default=0)
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    # JSON: the label set when published
    labels: Mapped[str] = mapped_column(Text, default="[]")
    state: Mapped[str] = mapped_column(String(16), default=PENDING)
    reason: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str] = mapped_column(String(255), default="")
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class LabellingTask(Base):
    """A team labelling task over a dataset: labellers, reviewers, and sampling acceptance."""

    __tablename__ = "labelling_tasks"
    __table_args__ = (UniqueConstraint("dataset_id", "name", name="uq_labelling_tasks_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataset_id: Mapped[int] = mapped_column(
        ForeignKey("datasets.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(64))
    description: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str] = mapped_column(String(255))
    labellers: Mapped[str] = mapped_column(Text, default="[]")  # JSON list of user names
    reviewers: Mapped[str] = mapped_column(Text, default="[]")  # JSON list of user names
    state: Mapped[str] = mapped_column(String(16), default=RUNNING)
    # JSON: the last sampling check per labeller {"alice": {"ratio": .., "samples": [ids],
    # "state": "running|accepted|rejected", "comment": ..}}
    sampling: Mapped[str] = mapped_column(Text, default="{}")
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class AutoLabelRun(Base):
    """A run of a deployed service (or a model version as a batch run) over unlabelled samples."""

    __tablename__ = "autolabel_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataset_id: Mapped[int] = mapped_column(
        ForeignKey("datasets.id", ondelete="CASCADE"), index=True
    )
    created_by: Mapped[str] = mapped_column(String(255))
    # JSON: {"service": "owner/name"} or {"model": "owner/name", "version": 2}
    source: Mapped[str] = mapped_column(Text, default="{}")
    threshold: Mapped[float] = mapped_column(Float, default=1.0)
    state: Mapped[str] = mapped_column(String(16), default=PENDING)
    reason: Mapped[str] = mapped_column(Text, default="")
    total: Mapped[int] = mapped_column(Integer, default=0)
    done: Mapped[int] = mapped_column(Integer, default=0)
    accepted: Mapped[int] = mapped_column(Integer, default=0)
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    finished: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


def loads(text: str | None, default):
    """A JSON column's value (default when empty)."""
    return json.loads(text) if text else default


def find_dataset(session: Session, owner: str, name: str) -> Dataset | None:
    return session.scalar(select(Dataset).where(Dataset.owner == owner, Dataset.name == name))


def find_version(session: Session, dataset: Dataset, version: int) -> DatasetVersion | None:
    q = select(DatasetVersion).where(
        DatasetVersion.dataset_id == dataset.id, DatasetVersion.version == version
    )
    return session.scalar(q)


def forget_user(session: Session, user: str) -> dict[str, int]:
    """A deleted user's datasets go with all they hold (their files are removed by the
    dataset service's next clean-up of the blob store); their assignments elsewhere end."""
    ids = list(session.scalars(select(Dataset.id).where(Dataset.owner == user)))
    if ids:
        for table in (Sample, DatasetVersion, LabellingTask, AutoLabelRun):
            session.execute(delete(table).where(table.dataset_id.in_(ids)))
        session.execute(delete(Dataset).where(Dataset.id.in_(ids)))
    rows = session.scalars(select(Sample).where(Sample.assignee == user))
    for row in rows:
        row.assignee = ""
    return {"datasets": len(ids)}
