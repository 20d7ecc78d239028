"""The benchmarks' pure helpers: round statistics, summary rows and table, prompts, the LiteLLM
version gate. No servers are started here."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import grpc
import grpc.aio
import pytest

from benchmarks.clients import GrpcPath
from benchmarks.fleet import ROUTER_CONFIGS, router_config
from benchmarks.litellm_venv import COMPROMISED, VERSION, Unavailable, check_version
from benchmarks.prompts import SUBJECTS, TEMPLATES, distinct_prompts
from benchmarks.soak import Soak, SoakPlan, endless_distinct
from benchmarks.stats import (
    Figure,
    Plan,
    Row,
    format_table,
    paired_added,
    paired_ratio,
    percentile,
    ratio,
    read_rows,
    summarise,
    write_rows,
)
from mesh.config.loader import parse_config


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]  # 1..100
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile(values, 100) == 100
    assert percentile([7.0], 99) == 7.0
    with pytest.raises(ValueError):
        percentile([], 50)


def test_summarise_takes_the_median_of_round_medians_and_of_round_p99s() -> None:
    rounds = [[1.0, 2.0, 3.0], [10.0, 20.0, 30.0], [4.0, 5.0, 600.0]]
    fig = summarise(rounds)
    assert fig.p50 == 5.0  # medians 2, 20, 5: one noisy round does not move it
    assert fig.p99 == 30.0  # round p99s 3, 30, 600
    assert fig.rounds == (2.0, 20.0, 5.0)
    with pytest.raises(ValueError):
        summarise([[1.0], []])


def test_paired_comparisons_cancel_a_load_change_between_rounds() -> None:
    # The machine slows down 10x in round 2: both paths feel it, their difference does not.
    base = Figure(p50=2.0, p99=0.0, rounds=(1.0, 10.0, 2.0))
    path = Figure(p50=4.0, p99=0.0, rounds=(2.0, 11.0, 3.0))
    assert paired_added(path, base) == 1.0
    assert path.p50 - base.p50 == 2.0  # the unpaired difference is twice as far off
    assert paired_ratio(path, base) == 1.5  # per-round ratios 2, 1.1, 1.5
    unpaired = Figure(p50=4.0, p99=0.0)
    assert paired_added(unpaired, base) == 2.0  # no rounds: the p50s
    assert paired_ratio(unpaired, base) == 2.0


def test_ratio_of_a_non_positive_base_is_nan() -> None:
    assert ratio(3.0, 2.0) == 1.5
    assert math.isnan(ratio(1.0, 0.0))
    assert math.isnan(ratio(1.0, -0.2))


@pytest.mark.parametrize(
    ("value", "op", "met", "ratio_text"),
    [
        (1.2, "<=", True, "1.20x"),
        (3.5, "<=", False, "3.50x"),
        (0.3, ">=", False, "0.30x"),
        (math.nan, "<=", None, "n/a"),
        (math.inf, "<=", False, "unbounded"),
    ],
)
def test_row_met_and_ratio(value: float, op: str, met: bool | None, ratio_text: str) -> None:
    row = Row("fig", "m", value, 1.5 if op == "<=" else 0.5, op)  # type: ignore[arg-type]
    assert row.met is met
    assert row.ratio_text == ratio_text


def test_absolute_targets_report_value_over_target() -> None:
    row = Row("router RSS idle", "852 MB", 852.0, 250, "<=", "MB")
    assert row.met is False
    assert row.target_text == "<= 250 MB"
    assert row.ratio_text == "3.41x of target"


def test_format_table_lines_up_every_row_with_its_mark() -> None:
    rows = [
        Row("short", "1 ms", 0.4, 0.5, "<=", "s"),
        Row("a much longer figure name", "2 / 1", 2.0, 3.0, ">="),
    ]
    lines = format_table(rows).splitlines()
    assert lines[0].split() == ["figure", "measured", "target", "ratio", "met?"]
    assert set(lines[1]) <= {"-", " "}
    assert lines[2].startswith("short ") and lines[2].endswith(" met")
    assert lines[3].endswith("NOT met") and "2.00x" in lines[3]
    starts = {line.index(cell) for line, cell in zip(lines[2:], ("1 ms", "2 / 1"), strict=True)}
    assert len(starts) == 1  # the measured column starts at the same place in both rows


def test_rows_survive_the_file_between_processes(tmp_path: Path) -> None:
    rows = [Row("a", "x", 1.0, 2.0, "<="), Row("b", "y", math.nan, 2.0, ">=", "MB")]
    path = tmp_path / "rows.json"
    write_rows(rows, path)
    back = read_rows(path)
    assert back[0] == rows[0]
    assert math.isnan(back[1].value) and back[1].unit == "MB"
    assert read_rows(tmp_path / "absent.json") == []


def test_quick_plan_is_smaller_than_the_full_one() -> None:
    full, quick = Plan(), Plan.quick()
    assert quick.rounds < full.rounds and quick.per_round < full.per_round
    assert quick.throughput_requests < full.throughput_requests
    assert quick.concurrencies == full.concurrencies == (1, 8, 32)


def test_distinct_prompts_never_repeat_and_are_the_same_every_run() -> None:
    first = list(distinct_prompts())
    assert len(first) == len(set(first)) == len(TEMPLATES) * len(SUBJECTS)
    assert first[:50] == list(distinct_prompts())[:50]
    assert len({p.split()[0] for p in first[:20]}) > 5  # shapes are mixed, not in blocks


def test_only_the_pinned_litellm_release_is_accepted() -> None:
    check_version(VERSION)
    for bad in sorted(COMPROMISED):
        with pytest.raises(Unavailable, match="compromised"):
            check_version(bad)
    with pytest.raises(Unavailable, match="required"):
        check_version(None)


def _rpc_error(code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), "test")


def test_a_path_counts_transient_errors_and_stops_on_others_or_too_many() -> None:
    path = GrpcPath(stub=None, prompts=iter(()), pinned=True)  # type: ignore[arg-type]
    path.sent = 100
    for _ in range(5):  # 5 of 105: within the 5 % a loaded router may answer UNAVAILABLE
        path.count_error(_rpc_error(grpc.StatusCode.UNAVAILABLE))
    assert path.errors == 5
    with pytest.raises(RuntimeError, match="6 UNAVAILABLE"):
        path.count_error(_rpc_error(grpc.StatusCode.UNAVAILABLE))
    with pytest.raises(grpc.aio.AioRpcError):  # a bench bug or a guard block: never counted
        path.count_error(_rpc_error(grpc.StatusCode.PERMISSION_DENIED))


@pytest.mark.parametrize("kind", sorted(ROUTER_CONFIGS))
def test_bench_router_configs_parse_and_bound_the_cache_only_when_asked(kind: str) -> None:
    upstreams = [("fake-node", "127.0.0.1:1")]
    shipped = parse_config(router_config(kind, upstreams)).router
    bounded = parse_config(router_config(kind, upstreams, cache_entries=321)).router
    assert bounded.cache.max_entries == 321
    assert shipped.cache.max_entries == type(shipped.cache)().max_entries  # the shipped bound
    # The bound joins the kind's own cache settings (lean: no semantic tier), never replaces them.
    assert bounded.cache.semantic == shipped.cache.semantic == (kind == "default")
    assert shipped.guards.enabled == (kind != "lean-unguarded")  # its path: what guards cost


def test_the_soak_prompts_never_repeat_past_the_distinct_ones() -> None:
    base = len(TEMPLATES) * len(SUBJECTS)
    prompts = list(itertools.islice(endless_distinct(), 2 * base + 5))
    assert len(set(prompts)) == len(prompts)
    assert prompts[:base] == list(distinct_prompts())


def test_soak_growth_compares_the_edges_medians_and_the_slope_is_per_minute() -> None:
    path = GrpcPath(stub=None, prompts=iter(()), pinned=True)  # type: ignore[arg-type]
    readings = [(0.0, 100.0), (5.0, 100.5), (10.0, 140.0), (15.0, 101.0), (20.0, 102.0)]
    readings += [(25.0, 102.5), (30.0, 103.0)]
    soak = Soak(readings, requests=10, path=path)
    # A one-reading spike at either edge does not decide the growth: medians of three.
    assert (soak.first_mb, soak.last_mb) == (100.5, 102.5)
    assert soak.growth_mb == pytest.approx(2.0)
    steady = Soak([(0.0, 100.0), (30.0, 101.0), (60.0, 102.0)], requests=10, path=path)
    assert steady.slope_mb_per_min == pytest.approx(2.0)
    assert SoakPlan.of(quick=True).soak_s < SoakPlan.of(quick=False).soak_s == 60
    assert SoakPlan.of(quick=False, soak_s=300).soak_s == 300
    # The warm-up serves more distinct prompts than the cache holds, so it is full before the
    # first reading: twice over at the slowest rate seen here (~200 req/s at c32).
    for plan in (SoakPlan.of(quick=True), SoakPlan.of(quick=False)):
        assert 200 * plan.warmup_s >= 2 * plan.cache_entries
