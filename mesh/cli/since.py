"""`--since` for `mesh costs` and `mesh audit`: an age ("30m", "24h", "7d") or an ISO date/time."""

from __future__ import annotations

import datetime as dt
import re

import click

_AGE = re.compile(r"^(\d+)\s*([smhdw])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
SINCE_HELP = (
    'Only since then: an age ("30m", "24h", "7d") or an ISO date/time (UTC unless it names a zone).'
)


def parse_since(text: str, now: dt.datetime | None = None) -> dt.datetime:
    """The moment `text` names, timezone-aware: an age before `now`, or an ISO date/time.

    A date or time without a zone is UTC, as the ledger and the audit log store it.
    """
    now = now or dt.datetime.now(dt.UTC)
    match = _AGE.match(text.strip())
    if match:
        return now - dt.timedelta(seconds=int(match[1]) * _UNIT_S[match[2]])
    try:
        when = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{text!r}: use an age like 30m / 24h / 7d or an ISO date") from None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


class SinceType(click.ParamType[dt.datetime]):
    """The click type of a `--since` value; a bad one is a usage error naming the option."""

    name = "AGE|DATE"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> dt.datetime:
        if isinstance(value, dt.datetime):
            return value
        try:
            return parse_since(str(value))
        except ValueError as err:
            self.fail(str(err), param, ctx)


# Shared by `mesh costs` and `mesh audit`; the command receives `since: datetime | None`.
since_option = click.option("--since", type=SinceType(), default=None, help=SINCE_HELP)
