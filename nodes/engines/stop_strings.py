"""Stop strings over a token stream, without ever emitting part of a stop string."""

from __future__ import annotations

from collections.abc import Sequence


class StopStringFilter:
    """Feed text pieces in order; get back what is safe to emit and whether a stop was hit.

    Text that could be the start of a stop string is held back until the next piece decides,
    so a stop string split across two tokens is still caught and never leaks.
    """

    def __init__(self, stops: Sequence[str]) -> None:
        self._stops = tuple(s for s in stops if s)
        self._hold = max((len(s) for s in self._stops), default=1) - 1
        self._pending = ""
        self.stopped = False

    def feed(self, piece: str) -> tuple[str, bool]:
        if self.stopped:
            return "", True
        if not self._stops:
            return piece, False
        self._pending += piece
        cut = min((i for s in self._stops if (i := self._pending.find(s)) >= 0), default=-1)
        if cut >= 0:
            out, self._pending = self._pending[:cut], ""
            self.stopped = True
            return out, True
        safe = len(self._pending) - self._hold
        if safe <= 0:
            return "", False
        out, self._pending = self._pending[:safe], self._pending[safe:]
        return out, False

    def flush(self) -> str:
        """What is still held when generation ends without a stop."""
        out, self._pending = ("" if self.stopped else self._pending), ""
        return out
