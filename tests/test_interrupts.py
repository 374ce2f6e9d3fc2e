"""Ctrl-C and SIGTERM during the search are raised at a safe point, never inside a lock."""
from __future__ import annotations

import signal

import pytest

from automl import interrupts


def test_a_signal_during_the_search_is_noted_and_raised_at_the_next_safe_point():
    with interrupts.deferred():
        interrupts.handle(signal.SIGTERM, None)  # lands, say, inside Queue.put: nothing raised there
        interrupts.handle(signal.SIGINT, None)  # the first one noted wins
        with pytest.raises(interrupts.Terminated):
            interrupts.raise_pending()  # the loop's safe point
        interrupts.raise_pending()  # raised once only


def test_a_signal_after_the_last_safe_point_is_raised_when_the_search_ends():
    with pytest.raises(interrupts.Terminated):
        with interrupts.deferred():
            interrupts.handle(signal.SIGTERM, None)
    interrupts.raise_pending()  # nothing left over


def test_outside_the_search_a_signal_is_raised_at_once():
    with pytest.raises(interrupts.Terminated):
        interrupts.handle(signal.SIGTERM, None)
