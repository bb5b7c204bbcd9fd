"""Setup shared by every test module."""

from __future__ import annotations

import signal

import pytest


def pytest_configure(config: pytest.Config) -> None:
    # A non-interactive shell starts background jobs with SIGINT ignored, and
    # the processes the tests start would inherit that: tests that stop a
    # client with Ctrl-C (SIGINT) need it to reach the client.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
