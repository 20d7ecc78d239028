"""The reliability suite's scenario table, printed at the end of the run.

Scenario tests ask the `scenarios` fixture for their row (tests/reliability/scenarios.py) and
record every call. The table (tried / failed / expected / worst / p99) and the scenarios'
figures (stream p99, router RSS growth) end the run's output, in `make test` and `make soak`
alike. Failures are still asserted by the tests: the table is the evidence, not the verdict.
"""

from __future__ import annotations

import pytest

from tests.reliability.scenarios import ScenarioTable

_TABLE_KEY = pytest.StashKey[ScenarioTable]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_TABLE_KEY] = ScenarioTable()


@pytest.fixture(scope="session")
def scenarios(request: pytest.FixtureRequest) -> ScenarioTable:
    """The run's table; `scenarios("name")` is a scenario's row."""
    return request.config.stash[_TABLE_KEY]


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    table = config.stash.get(_TABLE_KEY, None)
    if table is None or not table.rows:
        return
    terminalreporter.section("reliability scenarios")
    for line in table.lines():
        terminalreporter.write_line(line)
