"""Models, services and access keys in the platform database."""

from __future__ import annotations

import json
from datetime import datetime

from sqlalchemy import (
    Boolean,
    DateTime,
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

# a model version's states
COPYING = "copying"
READY = "ready"
FAILED = "failed"

# a service's states
DEPLOYING = "deploying"
RUNNING = "running"
STOPPED = "stopped"
SERVICE_FAILED = "failed"


class Model(Base):
    """A named model of one owner; what it is made of lives in its versions."""

    __tablename__ = "models"
    __table_args__ = (UniqueConstraint("owner", "name", name="uq_models_owner_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner: Mapped[str] = mapped_column(String(255), index=True)
    name: Mapped[str] = mapped_column(String(64))
    description: Mapped[str] = mapped_column(Text, default="")
    workspace: Mapped[str] = mapped_column(String(32), default="default", index=True)
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class ModelVersion(Base):
    """One version of a model: its files (with SHA-256s), format, image, signature, lineage."""

    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("model_id", "version", name="uq_model_versions_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(Text, default="{}")  # JSON
    format: Mapped[str] = mapped_column(String(16))
    image: Mapped[str] = mapped_column(String(255))
    command: Mapped[str] = mapped_column(Text, default="")
    predictor: Mapped[str] = mapped_column(String(255), default="")
    signature: Mapped[str] = mapped_column(Text, default="{}")  # JSON
    metrics: Mapped[str] = mapped_column(Text, default="{}")  # JSON
    files: Mapped[str] = mapped_column(Text, default="[]")  # JSON: [{path, size, sha256}]
    state: Mapped[str] = mapped_column(String(16), default=COPYING)
    reason: Mapped[str] = mapped_column(Text, default="")
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Service(Base):
    """An online service: predictors (model versions with traffic weights) and their replicas."""

    # not "services": JupyterHub's own table of that name may share the database (PostgreSQL)
    __tablename__ = "inference_services"
    __table_args__ = (UniqueConstraint("owner", "name", name="uq_inference_services_owner_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner: Mapped[str] = mapped_column(String(255), index=True)
    name: Mapped[str] = mapped_column(String(64))
    description: Mapped[str] = mapped_column(Text, default="")
    workspace: Mapped[str] = mapped_column(String(32), default="default", index=True)
    public: Mapped[bool] = mapped_column(Boolean, default=False)
    state: Mapped[str] = mapped_column(String(16), default=DEPLOYING, index=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    spec: Mapped[str] = mapped_column(Text, default="{}")  # JSON: predictors, scaling
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class ServiceKey(Base):
    """An access key of a service: only its SHA-256 and first characters are kept."""

    __tablename__ = "inference_service_keys"
    __table_args__ = (
        UniqueConstraint("service_id", "name", name="uq_inference_service_keys_name"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    service_id: Mapped[int] = mapped_column(
        ForeignKey("inference_services.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(64))
    prefix: Mapped[str] = mapped_column(String(16))
    hash: Mapped[str] = mapped_column(String(64), unique=True)
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    last_used: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


def loads(text: str | None, default):
    """A JSON column's value (the default when empty)."""
    return json.loads(text) if text else default


def version_model(model: Model, row: ModelVersion) -> dict:
    """The API's JSON of a model version."""
    source = loads(row.source, {})
    lineage = None
    if source.get("kind") == "job":
        lineage = {"job": source.get("job"), "job_version": source.get("version")}
    return {
        "owner": model.owner,
        "name": model.name,
        "version": row.version,
        "format": row.format,
        "image": row.image,
        "command": row.command,
        "predictor": row.predictor,
        "source": source,
        "signature": loads(row.signature, {}),
        "metrics": loads(row.metrics, {}),
        "lineage": lineage,
        "files": loads(row.files, []),
        "state": row.state,
        "reason": row.reason,
        "created": isoformat(row.created),
    }


def model_model(model: Model, latest: ModelVersion | None, versions: list[dict] | None = None):
    """The API's JSON of a model (with its versions when given)."""
    out = {
        "owner": model.owner,
        "name": model.name,
        "description": model.description,
        "workspace": model.workspace,
        "created": isoformat(model.created),
        "latest": latest.version if latest else None,
        "format": latest.format if latest else None,
    }
    if versions is not None:
        out["versions"] = versions
    return out


def find_model(session: Session, owner: str, name: str) -> Model | None:
    return session.scalars(select(Model).where(Model.owner == owner, Model.name == name)).first()


def find_model_version(session: Session, model: Model, version: int) -> ModelVersion | None:
    q = select(ModelVersion).where(
        ModelVersion.model_id == model.id, ModelVersion.version == version
    )
    return session.scalars(q).first()


def model_versions_of(session: Session, model: Model) -> list[ModelVersion]:
    q = select(ModelVersion).where(ModelVersion.model_id == model.id).order_by(ModelVersion.version)
    return list(session.scalars(q))


def find_service(session: Session, owner: str, name: str) -> Service | None:
    return session.scalars(
        select(Service).where(Service.owner == owner, Service.name == name)
    ).first()


def forget_user(session: Session, user: str) -> dict[str, int]:
    """A deleted user's models and services go (replicas and files are removed by the services)."""
    services = list(session.scalars(select(Service.id).where(Service.owner == user)))
    if services:
        session.execute(delete(ServiceKey).where(ServiceKey.service_id.in_(services)))
        session.execute(delete(Service).where(Service.id.in_(services)))
    models = list(session.scalars(select(Model.id).where(Model.owner == user)))
    if models:
        session.execute(delete(ModelVersion).where(ModelVersion.model_id.in_(models)))
        session.execute(delete(Model).where(Model.id.in_(models)))
    return {"models": len(models), "services": len(services)}
