"""One call on a daemon thread: the refit, where no idle worker of the search can train it (worker_refit.py)."""
from __future__ import annotations

import threading
import time
from typing import Any, Callable


class Background:
    """`fn()` on a daemon thread (an interrupted command does not wait for it to finish);
    `result()` waits for it, in slices so that Ctrl-C still reaches the caller, and re-raises."""

    def __init__(self, fn: Callable[[], Any], name: str):
        self.seconds = 0.0  # how long fn ran
        self._result: Any = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(fn,), name=name, daemon=True)
        self._thread.start()

    def _run(self, fn: Callable[[], Any]) -> None:
        start = time.monotonic()
        try:
            self._result = fn()
        except BaseException as error:  # handed to the caller of result()
            self._error = error
        finally:
            self.seconds = time.monotonic() - start

    def result(self) -> Any:
        while self._thread.is_alive():
            self._thread.join(0.5)
        if self._error is not None:
            raise self._error
        return self._result
