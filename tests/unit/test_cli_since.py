"""`--since` of `mesh costs` and `mesh audit`: one parser for ages and ISO dates."""

from __future__ import annotations

import datetime as dt

import click
import pytest
from click.testing import CliRunner

from mesh.cli.since import parse_since, since_option

NOW = dt.datetime(2026, 5, 8, 12, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30m", NOW - dt.timedelta(minutes=30)),
        ("24h", NOW - dt.timedelta(hours=24)),
        ("7d", NOW - dt.timedelta(days=7)),
        ("2w", NOW - dt.timedelta(weeks=2)),
        (" 90 s ", NOW - dt.timedelta(seconds=90)),
        ("2026-05-01", dt.datetime(2026, 5, 1, tzinfo=dt.UTC)),
        ("2026-05-01T08:30:00", dt.datetime(2026, 5, 1, 8, 30, tzinfo=dt.UTC)),
        ("2026-05-01 08:30:00", dt.datetime(2026, 5, 1, 8, 30, tzinfo=dt.UTC)),
        (
            "2026-05-01T08:30:00+02:00",
            dt.datetime(2026, 5, 1, 6, 30, tzinfo=dt.UTC),
        ),
    ],
)
def test_an_age_or_an_iso_date(text: str, expected: dt.datetime) -> None:
    assert parse_since(text, NOW) == expected


@pytest.mark.parametrize("text", ["yesterday", "24", "h", "-3d", "5y"])
def test_anything_else_is_refused_naming_the_forms(text: str) -> None:
    with pytest.raises(ValueError, match="use an age like 30m / 24h / 7d or an ISO date"):
        parse_since(text, NOW)


def test_the_option_hands_the_command_an_aware_datetime_or_a_usage_error() -> None:
    seen: list[dt.datetime | None] = []

    @click.command()
    @since_option
    def show(since: dt.datetime | None) -> None:
        seen.append(since)

    runner = CliRunner()
    assert runner.invoke(show, []).exit_code == 0
    assert runner.invoke(show, ["--since", "2026-05-01"]).exit_code == 0
    assert seen == [None, dt.datetime(2026, 5, 1, tzinfo=dt.UTC)]
    bad = runner.invoke(show, ["--since", "soon"])
    assert bad.exit_code == 2 and "Invalid value for '--since'" in bad.output
