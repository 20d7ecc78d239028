"""The servers' event loop: uvloop where installed, the standard loop on request."""

from __future__ import annotations

import asyncio

import pytest

from mesh.serve_loop import EVENT_LOOP_ENV, run_server


async def _loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__.split(".")[0]


def test_servers_run_on_uvloop_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(EVENT_LOOP_ENV, raising=False)
    assert run_server(_loop_module()) == "uvloop"


def test_the_standard_loop_can_be_asked_for(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(EVENT_LOOP_ENV, " AsyncIO ")
    assert run_server(_loop_module()) == "asyncio"
