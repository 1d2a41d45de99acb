"""A small progress indicator for the management commands (the runtime depends on Django only).

It writes to stderr, so stdout stays clean for findings and tables, and only
when stderr is a terminal and the verbosity is not 0.
"""

from __future__ import annotations

from typing import Any, TextIO

WIDTH = 30


class ProgressBar:
    """``label [#####.....]  120/400`` redrawn in place on one line."""

    def __init__(self, label: str, total: int, stream: TextIO, enabled: bool) -> None:
        self.label = label
        self.total = max(total, 0)
        self.done = 0
        self.stream = stream
        self.enabled = enabled
        self._drawn = False

    @classmethod
    def for_command(cls, label: str, total: int, stderr: Any, verbosity: int) -> ProgressBar:
        stream = getattr(stderr, "_out", stderr)  # Django's OutputWrapper around the real stream
        enabled = verbosity > 0 and bool(getattr(stream, "isatty", lambda: False)())
        return cls(label, total, stream, enabled)

    def __call__(self, count: int) -> None:
        self.done += count
        if self.enabled:
            self._draw()

    def _draw(self) -> None:
        done = min(self.done, self.total) if self.total else self.done
        filled = WIDTH if not self.total else WIDTH * done // self.total
        self.stream.write(f"\r{self.label} [{'#' * filled}{'.' * (WIDTH - filled)}] {done}/{self.total}")
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        """End the bar's line (before printing something else, or at the end); it redraws on the next call."""
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False
