"""Ctrl-C and SIGTERM during the search: raised where the driver holds no lock.

Python raises a signal's exception between any two bytecodes of the main thread, also inside
a queue's or a condition's `with` block, which then stays locked: the next put on that queue,
on the way out, waits for ever (a driver stopped with SIGTERM hung so, in Queue.put). While
the search loop runs, the handler only notes the signal, and the loop raises it at its next
safe point, within about half a second (its longest wait). Elsewhere it is raised at once.
"""
from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager


class Terminated(BaseException):
    """SIGTERM. A BaseException like KeyboardInterrupt, so that no `except Exception` on the way
    (an observer guard, a report writer) swallows it."""


_deferring = 0
_pending: type[BaseException] | None = None


def handle(signum: int, frame) -> None:
    """The handler for SIGINT and SIGTERM."""
    global _pending
    error = KeyboardInterrupt if signum == signal.SIGINT else Terminated
    if _deferring:
        _pending = _pending or error
        return
    raise error()


def raise_pending() -> None:
    """Raise the signal noted while deferring, if any: call it where no lock is held."""
    global _pending
    error, _pending = _pending, None
    if error is not None:
        raise error()


@contextmanager
def deferred() -> Iterator[None]:
    """Signals inside are noted, not raised; the caller polls raise_pending()."""
    global _deferring
    _deferring += 1
    try:
        yield
    finally:
        _deferring -= 1
    raise_pending()  # one that came after the last poll
