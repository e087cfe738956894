"""One run per OUTPUT_DIR: ``tools/train_net.py`` (and the projects' train scripts) take
``OUTPUT_DIR/.run.lock`` on rank 0 before anything is written there, recording host, pid, the
process's start time and the command, and remove it when they end. A second run started in the
same folder stops with an error naming the first; a lock left by a run that died (its pid gone on
this host, or reused by another process) is taken over with a warning. A lock from another host
cannot be checked and is respected: the message says which file to delete if that run is gone.

Not guarded: two takeovers of the same stale lock at the same instant (both may proceed).
"""

import json
import logging
import os
import socket
import sys
import time

__all__ = ["RunLockError", "output_dir_lock"]

logger = logging.getLogger(__name__)

LOCK_NAME = ".run.lock"


class RunLockError(RuntimeError):
    """OUTPUT_DIR is in use by another run."""


def _start_time(pid):
    """The process's start time in clock ticks since boot (Linux /proc), or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _alive(holder) -> bool:
    if holder.get("host") != socket.gethostname():
        return True  # cannot check another machine: respect it
    pid = holder.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, another user's
    started = holder.get("start_time")
    return started is None or _start_time(pid) in (None, started)


def _read(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


class output_dir_lock:
    """Context manager holding ``<output_dir>/.run.lock`` (module docstring); ``enabled=False``
    (ranks other than 0) does nothing. Raises :class:`RunLockError` when another live run holds
    it."""

    def __init__(self, output_dir, enabled=True):
        self.path = os.path.join(output_dir, LOCK_NAME) if output_dir else None
        self.enabled = enabled and bool(output_dir)
        self.mine = None

    def __enter__(self):
        if not self.enabled:
            return self
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        me = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "start_time": _start_time(os.getpid()),
            "since": time.strftime("%Y-%m-%d %H:%M:%S"),
            "command": " ".join(sys.argv),
        }
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = _read(self.path)
                if holder is None:  # being written this instant, or garbage: look again
                    time.sleep(0.2)
                    holder = _read(self.path) or {}
                if holder and _alive(holder):
                    raise RunLockError(
                        f"OUTPUT_DIR {os.path.dirname(self.path)} is in use by pid "
                        f"{holder.get('pid')} on {holder.get('host')} since {holder.get('since')}"
                        f" ({holder.get('command')}): stop that run or choose another OUTPUT_DIR."
                        f" If it is not running any more, delete {self.path}."
                    ) from None
                logger.warning(
                    "%s was left by a run that is gone (pid %s on %s since %s): taking it over",
                    self.path, holder.get("pid"), holder.get("host"), holder.get("since"),
                )  # fmt: skip
                try:
                    os.remove(self.path)
                except FileNotFoundError:
                    pass
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            self.mine = me
            return self
        raise RunLockError(f"could not take {self.path}: other runs keep taking it")

    def __exit__(self, *exc):
        if self.mine is not None:
            holder = _read(self.path)
            if holder and holder.get("pid") == self.mine["pid"]:
                os.remove(self.path)
            self.mine = None
        return False
