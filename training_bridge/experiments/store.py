"""Hyperparameter searches, their trials and TensorBoards in the platform database."""

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

# a search's states
SEARCHING = "running"  # asking, running and telling trials
STOPPING = "stopping"  # stop asked: its running trials are being stopped
COMPLETED = "completed"  # all planned trials ended
STOPPED = "stopped"  # stopped by its owner
FAILED = "failed"  # it cannot go on (its job deleted, no trial reports the objective)
SEARCH_ACTIVE = (SEARCHING, STOPPING)
SEARCH_STATES = (SEARCHING, STOPPING, COMPLETED, STOPPED, FAILED)

# a trial's states (optuna's, plus "waiting": asked, its job version not made yet)
WAITING = "waiting"
RUNNING = "running"
COMPLETE = "complete"
PRUNED = "pruned"
TRIAL_FAILED = "failed"
TRIAL_STOPPED = "stopped"  # stopped with its search (or by its owner): not told to the sampler
TRIAL_ACTIVE = (WAITING, RUNNING)
TRIAL_STATES = (WAITING, RUNNING, COMPLETE, PRUNED, TRIAL_FAILED, TRIAL_STOPPED)

# a TensorBoard's states
TB_RUNNING = "running"
TB_STOPPED = "stopped"


class Search(Base):
    """A hyperparameter search of one owner over the versions of one of their jobs."""

    __tablename__ = "experiment_searches"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner: Mapped[str] = mapped_column(String(255), index=True)
    job: Mapped[str] = mapped_column(String(64))  # the job whose versions are the trials
    workspace: Mapped[str] = mapped_column(String(32), default="default", index=True)
    description: Mapped[str] = mapped_column(Text, default="")
    # JSON: {space, objective: {metric, direction}, trials, parallel, sampler, pruner,
    # hyperparameters (fixed ones), seed}
    spec: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16), default=SEARCHING, index=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    best_trial: Mapped[int | None] = mapped_column(Integer, nullable=True)  # a trial number
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)
    finished: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class Trial(Base):
    """One trial of a search: the parameters asked, the job version that runs them, and what
    it reported (the objective's final value, the last step of its intermediate values)."""

    __tablename__ = "experiment_trials"
    __table_args__ = (UniqueConstraint("search_id", "number", name="uq_experiment_trials_number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    search_id: Mapped[int] = mapped_column(
        ForeignKey("experiment_searches.id", ondelete="CASCADE"), index=True
    )
    number: Mapped[int] = mapped_column(Integer)  # 0, 1, ... in the order asked
    version: Mapped[int | None] = mapped_column(Integer, nullable=True)  # the job's version
    params: Mapped[str] = mapped_column(Text, default="{}")  # JSON: name -> value
    system_attrs: Mapped[str] = mapped_column(Text, default="{}")  # JSON: the sampler's own
    state: Mapped[str] = mapped_column(String(16), default=WAITING, index=True)
    value: Mapped[float | None] = mapped_column(Float, nullable=True)
    steps: Mapped[int] = mapped_column(Integer, default=0)  # intermediate values seen
    # JSON: step -> value of the objective seen so far (what the pruner judges)
    intermediate: Mapped[str] = mapped_column(Text, default="{}")
    reason: Mapped[str] = mapped_column(Text, default="")
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    finished: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class TensorBoard(Base):
    """A TensorBoard one user opened in one of their instances over runs' event folders."""

    __tablename__ = "tensorboards"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner: Mapped[str] = mapped_column(String(255), index=True)
    instance: Mapped[str] = mapped_column(String(255))
    # JSON: [{"owner", "name", "version", "label", "logdir"}]; logdir relative to the
    # instance's work folder
    runs: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16), default=TB_RUNNING)
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    stopped: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


def trial_model(row: Trial, best: int | None = None) -> dict:
    """The API's JSON of a trial."""
    return {
        "number": row.number,
        "version": row.version,
        "params": json.loads(row.params or "{}"),
        "state": row.state,
        "value": row.value,
        "steps": row.steps,
        "intermediate": {int(k): v for k, v in json.loads(row.intermediate or "{}").items()},
        "reason": row.reason,
        "best": best is not None and row.number == best,
        "created": isoformat(row.created),
        "finished": isoformat(row.finished) if row.finished else None,
    }


def search_model(row: Search, trials: list[Trial] | None = None) -> dict:
    """The API's JSON of a search (with its trials when given)."""
    spec = json.loads(row.spec)
    model = {
        "id": row.id,
        "owner": row.owner,
        "job": row.job,
        "workspace": row.workspace,
        "description": row.description,
        "state": row.state,
        "reason": row.reason,
        "space": spec["space"],
        "objective": spec["objective"],
        "trials_planned": spec["trials"],
        "parallel": spec["parallel"],
        "sampler": spec["sampler"],
        "pruner": spec["pruner"],
        "hyperparameters": spec.get("hyperparameters", {}),
        "best_trial": row.best_trial,
        "created": isoformat(row.created),
        "finished": isoformat(row.finished) if row.finished else None,
    }
    if trials is not None:
        model["trials"] = [trial_model(t, row.best_trial) for t in trials]
        counts = {state: 0 for state in TRIAL_STATES}
        for t in trials:
            counts[t.state] += 1
        model["counts"] = counts
        best = next((t for t in trials if t.number == row.best_trial), None)
        model["best"] = trial_model(best, row.best_trial) if best is not None else None
    return model


def tensorboard_model(row: TensorBoard) -> dict:
    """The API's JSON of a TensorBoard."""
    return {
        "id": row.id,
        "owner": row.owner,
        "instance": row.instance,
        "runs": json.loads(row.runs),
        "state": row.state,
        "created": isoformat(row.created),
        "stopped": isoformat(row.stopped) if row.stopped else None,
    }


def trials_of(session: Session, search_id: int) -> list[Trial]:
    q = select(Trial).where(Trial.search_id == search_id).order_by(Trial.number)
    return list(session.scalars(q))


def forget_user(session: Session, user: str) -> dict[str, int]:
    """A deleted user's searches and TensorBoards go (their jobs go with the jobs feature)."""
    ids = list(session.scalars(select(Search.id).where(Search.owner == user)))
    if ids:
        session.execute(delete(Trial).where(Trial.search_id.in_(ids)))
        session.execute(delete(Search).where(Search.id.in_(ids)))
    boards = session.execute(delete(TensorBoard).where(TensorBoard.owner == user)).rowcount
    return {"searches": len(ids), "tensorboards": boards or 0}
