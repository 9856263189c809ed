"""Where art-adr's messages go: module loggers (``logging.getLogger(__name__)``, as ART), and the handler the CLI
installs so that they print above the progress bars.

A library user routes or silences them with ``logging`` as usual (``logging.getLogger("art_adr")``); nothing
is printed unless a handler is configured (Python's default shows warnings only), so ``logging.basicConfig(
level=logging.INFO)`` shows the trainers' epoch summaries. The progress bars stay tqdm (``verbose=``).
"""

from __future__ import annotations

import logging

__all__ = ["TqdmHandler", "show_messages"]


class TqdmHandler(logging.Handler):
    """Writes each record with :func:`art_adr.console.say` (``tqdm.write`` on stdout, above any running bar, in
    order with the bars)."""

    def emit(self, record: logging.LogRecord) -> None:
        from .console import say

        try:
            say(self.format(record))
        except Exception:  # noqa: BLE001 - logging's contract: a failing handler reports, never raises
            self.handleError(record)


def show_messages(level: int = logging.INFO) -> logging.Handler:
    """Print the messages of the ``art_adr`` loggers at ``level`` and above through ``tqdm.write`` (the CLI's
    setup; once: a second call returns the handler already installed)."""
    root = logging.getLogger("art_adr")
    root.setLevel(level)
    for handler in root.handlers:
        if isinstance(handler, TqdmHandler):
            return handler
    handler = TqdmHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    root.addHandler(handler)
    return handler
