"""The reliability suite's scenario table, printed at the end of the run.

Scenario tests ask the `scenarios` fixture for their row (tests/reliability/scenarios.py) and
record every call. The table (tried / failed / expected / worst / p99) and the scenarios'
figures (stream p99, router RSS growth) end the run's output, in `make test` and `make soak`
alike. Failures are still asserted by the tests: the table is the evidence, not the verdict.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from mesh.config import NodeConfig
from nodes.runtime import NodeRuntime
from tests.fixtures.recording_engine import RecordingFakeEngine
from tests.reliability.load import ANSWER_WORDS
from tests.reliability.scenarios import ScenarioTable

_TABLE_KEY = pytest.StashKey[ScenarioTable]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_TABLE_KEY] = ScenarioTable()


@pytest.fixture(scope="session")
def scenarios(request: pytest.FixtureRequest) -> ScenarioTable:
    """The run's table; `scenarios("name")` is a scenario's row."""
    return request.config.stash[_TABLE_KEY]


@pytest.fixture
async def recording_nodes() -> AsyncIterator[list[NodeRuntime]]:
    """Two nodes in the test process on RecordingFakeEngine (a deterministic test engine, named
    as such), ANSWER_WORDS one-word chunks per answer, over real gRPC on loopback."""
    nodes = []
    for node_id in ("n1", "n2"):
        engine = RecordingFakeEngine()
        engine.script.words_per_answer = ANSWER_WORDS
        config = NodeConfig(id=node_id, engine="fake", model="fake-model", max_inflight=64)
        nodes.append(NodeRuntime(config, engine))
    for node in nodes:
        await node.start()
    try:
        yield nodes
    finally:
        await asyncio.gather(*(node.stop(0) for node in nodes))


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    table = config.stash.get(_TABLE_KEY, None)
    if table is None or not table.rows:
        return
    terminalreporter.section("reliability scenarios")
    for line in table.lines():
        terminalreporter.write_line(line)
