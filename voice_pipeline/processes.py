"""Child processes the server starts (workers, LLM servers): how an exit reads, and dying with the parent."""

from __future__ import annotations

import ctypes
import signal


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            return signal.Signals(-returncode).name
        except ValueError:
            return f"signal {-returncode}"
    return f"exit {returncode}"


def die_with_parent() -> None:
    """In the child before exec: if its parent is killed, the child gets SIGTERM (Linux)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
