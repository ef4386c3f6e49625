"""Stop signals that arrive while the CLI is still starting (importing takes over a second).

The executable holds SIGTERM from its first instruction; a long-running command that stops gracefully
(`fraudflow consume`) takes it over and treats a held signal as a stop request. Every other command gets the
default behaviour back before it runs, including a signal held meanwhile, so nothing ignores SIGTERM.
"""

from __future__ import annotations

import os
import signal
from types import FrameType

_held: list[int] = []


def _hold(signum: int, frame: FrameType | None) -> None:
    _held.append(signum)


def hold_stop_signals() -> None:
    signal.signal(signal.SIGTERM, _hold)


def held_stop_signal() -> bool:
    """Whether SIGTERM arrived while held (the caller has installed its own handler by now)."""
    return bool(_held)


def release_stop_signals() -> None:
    """Back to the default action; a signal that arrived meanwhile is delivered again, now with it."""
    if signal.getsignal(signal.SIGTERM) is _hold:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        if _held:
            os.kill(os.getpid(), _held[0])
