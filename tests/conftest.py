"""Shared fixtures: one real local Ray per test session (never local_mode)."""

from __future__ import annotations

import os

import pytest
from hypothesis import settings

# CI runs a fixed sequence of examples so a red build is reproducible; local runs keep
# exploring new ones (a failure found there is added to the test as an @example).
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

# Ray's dashboard and usage reporting are not needed in tests and slow the start.
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def ray_local():
    """A real local Ray with 2 CPUs, shared by every test that needs one."""
    import ray

    if not ray.is_initialized():
        # address="local": never join another Ray running on this (shared) machine
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
