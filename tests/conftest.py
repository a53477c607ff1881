"""Suite-wide settings.

A datum gets a private ``/tmp`` (as in a worker pod), so a test that watches a
datum from outside (progress files, gates, counters across retries) cannot keep
those files under ``/tmp``: the suite's temporary directories live in
``/var/tmp`` instead, unless ``--basetemp`` or ``PYTEST_DEBUG_TEMPROOT`` says otherwise.
"""

from __future__ import annotations

import os

import pytest


def pytest_configure(config: pytest.Config) -> None:
    if config.option.basetemp or os.environ.get("PYTEST_DEBUG_TEMPROOT"):
        return
    if os.path.isdir("/var/tmp") and os.access("/var/tmp", os.W_OK):
        os.environ["PYTEST_DEBUG_TEMPROOT"] = "/var/tmp"
