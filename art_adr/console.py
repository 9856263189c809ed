"""Log lines that keep their order with tqdm's progress bars (which write to stderr)."""

from __future__ import annotations

import sys

__all__ = ["say"]


def say(text: str, err: bool = False) -> None:
    """Print ``text`` on stdout (``err``: stderr) through ``tqdm.write`` and flush: a progress bar open at the time
    is cleared first and redrawn below the line, so a log line never lands inside a bar's line and every line
    appears in the order it was said, bars included."""
    from tqdm import tqdm

    stream, other = (sys.stderr, sys.stdout) if err else (sys.stdout, sys.stderr)
    other.flush()  # e.g. the carriage return a closed bar left in stderr's buffer: before the line, not after
    tqdm.write(text, file=stream)
    stream.flush()
