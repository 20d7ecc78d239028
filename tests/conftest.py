"""Shared fixtures. Heavy ones (the real model, engines) are session-scoped: built once."""

from __future__ import annotations

import os
import tempfile

import pytest

# Fixture modules contributed by each part of the code base.
pytest_plugins = [
    "tests.fixtures.model",
    "tests.fixtures.guards",
    "tests.fixtures.router",
    "tests.fixtures.vllm",
    "tests.fixtures.openai_server",
    "tests.fixtures.fault_injector",
    "tests.fixtures.postgres",
]

# Never let a test reach the network by accident (Hugging Face hub, telemetry endpoints).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Audit logs, ledgers and span stores of the test session go to a throwaway directory.
os.environ.setdefault("MESH_DATA_DIR", tempfile.mkdtemp(prefix="mesh-test-data-"))
# `mesh up` serves HTTP on 127.0.0.1:8080 by default, one port every parallel test run on this
# machine would share: subprocesses serve none unless a test passes --http-listen itself.
os.environ.setdefault("MESH_HTTP_LISTEN", "off")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Fast tests first: a failure in the unit suite shows before engines start.
    order = {"unit": 0, "integration": 1, "e2e": 2}
    items.sort(
        key=lambda item: next((v for k, v in order.items() if f"/{k}/" in str(item.path)), 3)
    )
