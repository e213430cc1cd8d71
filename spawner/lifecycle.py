"""When an instance stops on its own (idle, fixed run time), and what ended its last run."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

from markupsafe import Markup
from traitlets import Bool, Dict, HasTraits, Integer
from workbench.times import aware_utcnow, isoformat, parse_time

from .flavors import format_bytes
from .templating import render_template

IDLE = "idle"
MAX_RUNTIME = "max runtime"


def auto_stop_deadline(auto_stop: dict, started, last_activity) -> tuple[datetime | None, str]:
    """When a running instance stops unless something changes, and why ("idle" or
    "max runtime"); (None, "") if it never stops on its own.

    The idle deadline counts from the last activity (or the start, if none was reported);
    the fixed one from the start of the current run.
    """
    started = parse_time(started)
    last_activity = parse_time(last_activity)
    auto_stop = auto_stop if isinstance(auto_stop, dict) else {}
    candidates = []
    idle = duration(auto_stop.get("idle_minutes"))
    if idle:
        since = max(filter(None, (started, last_activity)), default=None)
        if since is not None:
            candidates.append((_later(since, minutes=idle), IDLE))
    hours = duration(auto_stop.get("max_hours"))
    if hours and started is not None:
        candidates.append((_later(started, hours=hours), MAX_RUNTIME))
    if not candidates:
        return None, ""
    return min(candidates)


def duration(value) -> float:
    """A stored auto-stop duration as a positive finite number; 0 (none) for anything else.

    Options stored before they were validated as they are now (NaN, infinities, text) must
    not break every later deadline computation, and with it the instance's stop.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return 0
    if not math.isfinite(value) or value <= 0:
        return 0
    return value


def _later(when: datetime, **delta) -> datetime:
    """when + timedelta(**delta), or the latest representable time if that is past it."""
    try:
        return when + timedelta(**delta)
    except OverflowError:
        return datetime.max.replace(tzinfo=UTC)


def exit_reason(state: dict, mem_limit: int | None = None) -> str:
    """A user's description of why a container stopped, from its inspected State."""
    code = state.get("ExitCode")
    if state.get("OOMKilled"):
        at = f" at {format_bytes(mem_limit)}" if mem_limit else ""
        return f"out of memory{at}"
    if code == 137:
        return "killed (exit code 137)"
    if code == 143:
        return "terminated (exit code 143)"
    error = (state.get("Error") or "").strip()
    return f"exited with code {code}" + (f": {error}" if error else "")


def auto_stop_form_fields(auto_stop: dict | None, policy) -> Markup:
    """The spawn form's auto-stop fields (idle_minutes, max_hours)."""
    auto_stop = auto_stop or {}
    return render_template(
        __file__,
        "auto_stop_fields.html",
        policy=policy,
        idle=auto_stop.get("idle_minutes", policy.idle_stop_default_minutes),
        hours=auto_stop.get("max_hours", 0) or "",
    )


class LifecycleStateMixin(HasTraits):
    """Spawner state that outlives a run: how the last run ended and automatic restarts.

    Kept through clear_state() (JupyterHub clears the state at each stop), so the hub's
    pages and the platform API (which reads it with the admin:server_state scope) show it.
    """

    last_stop = Dict(
        help="""How the last run ended: {"reason", "at", "crash", "exit_code", "oom"}."""
    )
    restarts = Integer(0, help="Automatic restarts after crashes since the last normal stop.")
    restart_pending = Bool(
        False, help="The last run ended in a crash and has not been started again."
    )

    def record_crash(self, reason: str, **details):
        """Remember that the instance stopped without being asked to."""
        self.last_stop = {
            "reason": reason,
            "at": isoformat(aware_utcnow()),
            "crash": True,
            **details,
        }
        self.restart_pending = True
        self.log.warning("%s: the instance stopped unexpectedly: %s", self._log_name, reason)

    def record_stop(self):
        """Remember a requested stop: by its owner, or by the auto-stop rules.

        Never raises: this bookkeeping runs before the container is removed, and a failure
        here must not leave a container running that the hub counts as stopped.
        """
        if self.restart_pending and self.last_stop.get("crash"):
            return  # the hub cleaning up after a crash
        reason = "stopped"
        try:
            deadline, why = self.stops_at
            if deadline is not None and deadline <= aware_utcnow():
                reason = why
        except Exception:  # noqa: BLE001 - the stop goes ahead, recorded as a plain stop
            self.log.exception("%s: cannot tell why it stops; recording a stop", self._log_name)
        self.last_stop = {"reason": reason, "at": isoformat(aware_utcnow()), "crash": False}
        self.restarts = 0

    def record_start(self):
        """Count a start after a crash as a restart; any other start begins afresh."""
        if self.restart_pending:
            self.restarts += 1
            self.restart_pending = False

    def get_state(self):
        state = super().get_state()
        if self.last_stop:
            state["last_stop"] = dict(self.last_stop)
        if self.restarts:
            state["restarts"] = self.restarts
        if self.restart_pending:
            state["restart_pending"] = True
        return state

    def load_state(self, state):
        super().load_state(state)
        self.last_stop = dict(state.get("last_stop") or {})
        self.restarts = int(state.get("restarts") or 0)
        self.restart_pending = bool(state.get("restart_pending"))

    def clear_state(self):
        kept = (dict(self.last_stop), self.restarts, self.restart_pending)
        super().clear_state()
        self.last_stop, self.restarts, self.restart_pending = kept

    @property
    def stops_at(self) -> tuple[datetime | None, str]:
        """When this running instance stops on its own and why (for the hub's pages)."""
        orm_spawner = getattr(self, "orm_spawner", None)
        if orm_spawner is None or not orm_spawner.server:
            return None, ""
        auto_stop = (self.user_options or {}).get("auto_stop")
        if auto_stop is None:  # never set: the platform's default idle timeout
            auto_stop = {"idle_minutes": self.policy.idle_stop_default_minutes}
        return auto_stop_deadline(auto_stop, orm_spawner.started, orm_spawner.last_activity)
