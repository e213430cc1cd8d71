"""Training jobs in the platform database: jobs, their versions (runs) and metric points."""

from __future__ import annotations

import json
from datetime import datetime

from sqlalchemy import (
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    delete,
    select,
)
from sqlalchemy.orm import Mapped, Session, mapped_column
from workbench.times import isoformat, utcnow

from hub.db.core import Base

# a version's states; the first three are "active" (they hold or wait for resources)
QUEUED = "queued"
STARTING = "starting"
RUNNING = "running"
STOPPING = "stopping"
SUCCEEDED = "succeeded"
FAILED = "failed"
STOPPED = "stopped"
ACTIVE = (QUEUED, STARTING, RUNNING, STOPPING)
FINISHED = (SUCCEEDED, FAILED, STOPPED)


class Job(Base):
    """A named training job of one owner; its runs are versions."""

    __tablename__ = "jobs"
    __table_args__ = (UniqueConstraint("owner", "name", name="uq_jobs_owner_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner: Mapped[str] = mapped_column(String(255), index=True)
    name: Mapped[str] = mapped_column(String(64))
    description: Mapped[str] = mapped_column(Text, default="")
    workspace: Mapped[str] = mapped_column(String(32), default="default", index=True)
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class JobVersion(Base):
    """One run of a job: its spec, its state with the reason, its nodes and restarts."""

    __tablename__ = "job_versions"
    __table_args__ = (UniqueConstraint("job_id", "version", name="uq_job_versions_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    spec: Mapped[str] = mapped_column(Text)  # JSON
    state: Mapped[str] = mapped_column(String(16), default=QUEUED, index=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    nodes: Mapped[str] = mapped_column(Text, default="[]")  # JSON: [{rank, state, ...}]
    restarts: Mapped[int] = mapped_column(Integer, default=0)
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)
    started: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    finished: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    # when the current attempt's nodes started (the maximum run time counts from the first)
    attempt_started: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class JobMetric(Base):
    """One scalar a version reported: from its log lines or its TensorBoard event files."""

    __tablename__ = "job_metrics"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version_id: Mapped[int] = mapped_column(
        ForeignKey("job_versions.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(64))
    step: Mapped[int] = mapped_column(Integer)
    value: Mapped[float] = mapped_column(Float)
    time: Mapped[float] = mapped_column(Float)
    source: Mapped[str] = mapped_column(String(16))


def version_model(job: Job, row: JobVersion, queue_position: int | None = None) -> dict:
    """The API's JSON of a version."""
    return {
        "owner": job.owner,
        "name": job.name,
        "version": row.version,
        "workspace": job.workspace,
        "state": row.state,
        "reason": row.reason,
        "queue_position": queue_position if row.state == QUEUED else None,
        "spec": json.loads(row.spec),
        "nodes": json.loads(row.nodes or "[]"),
        "restarts": row.restarts,
        "created": isoformat(row.created),
        "started": isoformat(row.started) if row.started else None,
        "finished": isoformat(row.finished) if row.finished else None,
        "output_path": f"jobs/{job.name}/{row.version}/output",
    }


def job_model(job: Job, latest: JobVersion | None, versions: list[dict] | None = None) -> dict:
    """The API's JSON of a job (with its versions when given)."""
    model = {
        "owner": job.owner,
        "name": job.name,
        "description": job.description,
        "workspace": job.workspace,
        "created": isoformat(job.created),
        "latest": latest.version if latest else None,
        "state": latest.state if latest else None,
        "reason": latest.reason if latest else "",
    }
    if versions is not None:
        model["versions"] = versions
    return model


def find_job(session: Session, owner: str, name: str) -> Job | None:
    return session.scalars(select(Job).where(Job.owner == owner, Job.name == name)).first()


def find_version(session: Session, job: Job, version: int) -> JobVersion | None:
    q = select(JobVersion).where(JobVersion.job_id == job.id, JobVersion.version == version)
    return session.scalars(q).first()


def versions_of(session: Session, job: Job) -> list[JobVersion]:
    q = select(JobVersion).where(JobVersion.job_id == job.id).order_by(JobVersion.version)
    return list(session.scalars(q))


def forget_user(session: Session, user: str) -> dict[str, int]:
    """A deleted user's jobs go (their containers and files are removed by the job service)."""
    jobs = list(session.scalars(select(Job).where(Job.owner == user)))
    ids = [j.id for j in jobs]
    if ids:
        version_ids = list(session.scalars(select(JobVersion.id).where(JobVersion.job_id.in_(ids))))
        if version_ids:
            session.execute(delete(JobMetric).where(JobMetric.version_id.in_(version_ids)))
        session.execute(delete(JobVersion).where(JobVersion.job_id.in_(ids)))
        session.execute(delete(Job).where(Job.id.in_(ids)))
    return {"jobs": len(ids)}
