"""Out-of-memory kills the engine does not report (Podman 4 on cgroup v1 leaves OOMKilled
false): a container's first process runs the command under a wrapper that says so in the
container's log, from its own memory cgroup's count of OOM kills."""

from __future__ import annotations

# what the wrapper prints (on stderr) when the kernel killed the command for lack of memory
OOM_LINE = "workbench-oom: the node ran out of memory"
# the wrapper: runs the command, passes SIGTERM on (a stop), and says so when the memory
# cgroup killed the command (exit status 137 with an oom_kill count)
WRAPPER = f"""\
"$@" &
child=$!
trap 'kill -TERM $child 2>/dev/null' TERM INT
while :; do
  wait $child
  code=$?
  kill -0 $child 2>/dev/null || break
done
if [ $code -eq 137 ]; then
  for f in /sys/fs/cgroup/memory.events /sys/fs/cgroup/memory/memory.oom_control; do
    if [ -r $f ] && grep -Eq '^oom_kill [1-9]' $f; then echo "{OOM_LINE}" >&2; break; fi
  done
fi
exit $code
"""


def wrapped(argv: list[str], name: str) -> list[str]:
    """argv under the wrapper; `name` is its $0 (shown in ps)."""
    return ["sh", "-c", WRAPPER, name, *argv]


def says_oom(log_tail: bytes | str) -> bool:
    """Whether a container's last log lines hold the wrapper's out-of-memory line."""
    if isinstance(log_tail, bytes):
        log_tail = log_tail.decode(errors="replace")
    return any(line.startswith(OOM_LINE) for line in log_tail.splitlines())
