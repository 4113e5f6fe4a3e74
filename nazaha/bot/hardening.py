"""Process hardening for the bot: memory stays in memory.

Drafts, follow-up keys and the bot key live in the bot's memory; a core dump would put them
on disk. :func:`disable_core_dumps` turns dumps off for this process and its children.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

log = logging.getLogger(__name__)

PR_SET_DUMPABLE = 4
PR_GET_DUMPABLE = 3


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name, use_errno=True) if name else None
    except OSError:
        return None


def disable_core_dumps() -> bool:
    """Set ``RLIMIT_CORE`` to (0, 0) and, on Linux, ``PR_SET_DUMPABLE`` to 0 (no core
    file, no ptrace by other processes of the same user, /proc/<pid>/mem closed to them).

    Returns True if both took effect (on other systems: the rlimit alone); failures are
    logged as a warning and never raise."""
    ok = True
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    except (ImportError, ValueError, OSError):
        log.warning("could not turn core dumps off (RLIMIT_CORE)")
        ok = False
    if sys.platform.startswith("linux"):
        libc = _libc()
        if libc is None or libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
            log.warning("could not mark the process non-dumpable (PR_SET_DUMPABLE)")
            ok = False
    return ok


def is_dumpable() -> bool | None:
    """``prctl(PR_GET_DUMPABLE)`` as a bool; None where it cannot be asked."""
    if not sys.platform.startswith("linux"):
        return None
    libc = _libc()
    if libc is None:
        return None
    result = libc.prctl(PR_GET_DUMPABLE, 0, 0, 0, 0)
    return None if result < 0 else bool(result)
