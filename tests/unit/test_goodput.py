"""bench/goodput: the trace reader and its checks, the trace generator, the goodput calculator,
what a replay measures from progress logs, and the replay's node schedule (all pure)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))

from goodput import calculator, finalsave, generate, measure, schedule, trace  # noqa: E402
from goodput.calculator import Costs, Segment  # noqa: E402

TRACES = REPO / "bench" / "goodput" / "traces"


def write(tmp_path: Path, name: str, body: object) -> Path:
    path = tmp_path / name
    path.write_text(body if isinstance(body, str) else json.dumps(body))
    return path


def one_zone(data: list[int], gap: float = 10.0) -> trace.Trace:
    return trace.combine([("z", gap, tuple(data))])


# --- trace files --------------------------------------------------------------------------

def test_a_skypilot_trace_reads_with_counts_above_one_as_capacity(tmp_path):
    path = write(tmp_path, "us-east-1a.json", {"metadata": {"gap_seconds": 600},
                                                "data": [1, 3, 0, 0, 2]})
    t = trace.load(path)
    assert t.gap_seconds == 600 and t.ticks == 5 and t.seconds == 3000
    assert t.zones[0][0] == "us-east-1a"
    assert [t.up(0, i) for i in range(5)] == [True, True, False, False, True]
    assert trace.runs(t.zones[0][1]) == [(0, 2, True), (2, 4, False), (4, 5, True)]


@pytest.mark.parametrize(("body", "cause"), [
    ("{not json", "not JSON"),
    ([1, 0, 1], "no 'metadata' object"),
    ({"data": [1]}, "no 'metadata' object"),
    ({"metadata": {"gap_seconds": 0}, "data": [1]}, "not a positive number"),
    ({"metadata": {"gap_seconds": -5}, "data": [1]}, "not a positive number"),
    ({"metadata": {"gap_seconds": "600"}, "data": [1]}, "not a positive number"),
    ({"metadata": {"gap_seconds": True}, "data": [1]}, "not a positive number"),
    ('{"metadata": {"gap_seconds": NaN}, "data": [1]}', "not a positive number"),
    ({"metadata": {"gap_seconds": 600}, "data": []}, "missing or empty"),
    ({"metadata": {"gap_seconds": 600}}, "missing or empty"),
    ({"metadata": {"gap_seconds": 600}, "data": [1, -1]}, "data[1] is -1"),
    ({"metadata": {"gap_seconds": 600}, "data": [1, 0.5]}, "data[1] is 0.5"),
    ({"metadata": {"gap_seconds": 600}, "data": ["1"]}, "data[0] is '1'"),
    ({"metadata": {"gap_seconds": 600}, "data": [True]}, "data[0] is True"),
    ({"metadata": {"gap_seconds": 600}, "data": [10**12]}, "not a capacity count"),
    ("[" * 100000 + "]" * 100000, "not JSON"),
])
def test_a_bad_trace_file_is_refused_naming_the_file_the_cause_and_the_fix(tmp_path, body,
                                                                           cause):
    path = write(tmp_path, "bad.json", body)
    with pytest.raises(trace.TraceError) as err:
        trace.load(path)
    message = str(err.value)
    assert str(path) in message and cause in message
    assert "; " in message.split(cause, 1)[1]  # a fix follows the cause


def test_a_missing_binary_or_oversized_trace_file_is_refused_by_name(tmp_path):
    with pytest.raises(trace.TraceError, match="missing.json: cannot be read"):
        trace.load(tmp_path / "missing.json")
    binary = tmp_path / "bin.json"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(trace.TraceError, match="bin.json: not UTF-8"):
        trace.load(binary)
    big = tmp_path / "big.json"
    big.write_text(" " * (trace.MAX_BYTES + 1))
    with pytest.raises(trace.TraceError, match="big.json: .* bytes, more than"):
        trace.load(big)


def test_zones_of_one_trace_must_agree_on_tick_length_and_length_and_have_distinct_names(
    tmp_path,
):
    a = write(tmp_path, "a.json", {"metadata": {"gap_seconds": 600}, "data": [1, 1]})
    b = write(tmp_path, "b.json", {"metadata": {"gap_seconds": 300}, "data": [1, 1]})
    c = write(tmp_path, "c.json", {"metadata": {"gap_seconds": 600}, "data": [1]})
    with pytest.raises(trace.TraceError, match=r"/b.json: gap_seconds 300 differs"):
        trace.load(a, b)
    with pytest.raises(trace.TraceError, match=r"/c.json: 1 ticks, .*/a.json has 2"):
        trace.load(a, c)
    with pytest.raises(trace.TraceError, match="zone names repeat"):
        trace.load(a, a)
    other = tmp_path / "other"
    other.mkdir()
    with pytest.raises(trace.TraceError, match="zone names repeat"):
        trace.load(a, write(other, "a.json", {"metadata": {"gap_seconds": 600}, "data": [1, 0]}))


def test_a_written_trace_reads_back_the_same():
    text = trace.dumps(600.0, [1, 0, 2])
    assert json.loads(text) == {"metadata": {"gap_seconds": 600}, "data": [1, 0, 2]}
    assert trace.parse(text, "x") == (600.0, (1, 0, 2))


def test_every_committed_trace_is_valid_and_generated():
    files = sorted(TRACES.glob("*.json"))
    assert files
    for path in files:
        gap, counts = trace.parse(path.read_text(), str(path))
        assert set(counts) <= {0, 1, 2, 3}  # the generator's small counts


# --- the generator ------------------------------------------------------------------------

def reclaims(series: list[int]) -> int:
    return sum(1 for _, end, up in trace.runs(tuple(series)) if up and end < len(series))


def test_a_seed_gives_the_same_trace_and_zones_differ():
    shape = generate.Shape(hours=48)
    assert generate.generate(shape, 3, 2) == generate.generate(shape, 3, 2)
    a, b = generate.generate(shape, 3, 2)
    assert a != b
    assert generate.generate(shape, 4)[0] != a
    assert len(a) == 48 * 6 and a[0] == 1


@pytest.mark.parametrize("uptime", generate.DISTRIBUTIONS)
def test_the_preemption_rate_sets_how_often_capacity_goes(uptime):
    often = generate.Shape(hours=2000, preemptions_per_hour=1.0, uptime=uptime, gap_seconds=60)
    rare = generate.Shape(hours=2000, preemptions_per_hour=0.1, uptime=uptime, gap_seconds=60)
    n_often = reclaims(generate.zone_series(often, 1))
    n_rare = reclaims(generate.zone_series(rare, 1))
    assert n_often > 4 * n_rare > 0


def test_longer_outages_leave_less_capacity():
    short = generate.Shape(hours=2000, outage_median_minutes=10)
    long = generate.Shape(hours=2000, outage_median_minutes=120)
    assert sum(generate.zone_series(short, 1)) > sum(generate.zone_series(long, 1)) * 1.2


def test_a_zone_with_several_nodes_loses_them_one_tick_apart():
    assert generate.waves([1, 1, 1, 1, 0, 0, 1, 1, 0, 1], 3) == [3, 3, 2, 1, 0, 0, 3, 1, 0, 3]
    assert generate.waves([1, 1, 0], 1) == [1, 1, 0]
    series = generate.zone_series(generate.Shape(hours=200, nodes=2), 5)
    assert max(series) == 2
    falls = [i for i in range(1, len(series) - 1) if series[i + 1] < series[i]]
    assert falls
    for i in falls:  # one node at a time, but for a zone up one tick only
        assert series[i] - series[i + 1] == 1 or series[i - 1] == 0


def test_a_bad_shape_is_refused_by_name():
    with pytest.raises(ValueError, match="uptime distribution 'weibull'"):
        generate.Shape(hours=1, uptime="weibull")
    with pytest.raises(ValueError, match="preemptions_per_hour is 0"):
        generate.Shape(hours=1, preemptions_per_hour=0)


def test_the_generator_command_writes_one_file_per_zone_that_loads(tmp_path):
    assert generate.main(["--hours", "2", "--zones", "2", "--seed", "1",
                          "--out", str(tmp_path / "t.json")]) == 0
    t = trace.load(tmp_path / "t-a.json", tmp_path / "t-b.json")
    assert [n for n, _ in t.zones] == ["t-a", "t-b"] and t.ticks == 12


# --- the calculator -----------------------------------------------------------------------

COSTS = Costs(step_seconds=1.0, interval_steps=10, save_seconds=0.0, upload_seconds=1.0,
              resume_seconds=5.0, provision_seconds=5.0, notice_seconds=20.0,
              reserve_seconds=4.0)


def test_without_preemptions_only_the_start_and_the_periodic_saves_cost():
    t = one_zone([1] * 10)  # 100 s
    g = calculator.goodput(t, COSTS)
    assert (g.paid, g.wall, g.preemptions, g.restarts) == (0.9, 0.9, 0, 0)
    saving = calculator.goodput(t, Costs(**{**COSTS.__dict__, "save_seconds": 10.0}))
    assert saving.useful_seconds == pytest.approx(90 * 10 / 20)


def test_using_the_notice_trains_through_it_and_raises_paid_goodput():
    t = one_zone([1] * 10 + [0] * 5 + [1] * 5)  # up 100 s, out 50 s, up 50 s
    used = calculator.goodput(t, COSTS)
    at_once = calculator.goodput(t, Costs(**{**COSTS.__dict__, "use_notice": False}))
    # segment 1: training 10..80 (at once) or 10..95 (20 s notice - 1 s upload - 4 s reserve)
    assert at_once.useful_seconds == 70 + 40 and used.useful_seconds == 85 + 40
    assert used.paid_seconds == at_once.paid_seconds == 150
    assert used.paid > at_once.paid and used.elapsed_seconds == 200
    assert (used.preemptions, used.restarts, used.steps_lost) == (1, 1, 0)
    assert used.cost_vs_on_demand == pytest.approx(0.3 * 150 / 125)


def test_a_final_save_longer_than_the_notice_loses_half_an_interval():
    t = one_zone([1] * 10 + [0] * 5 + [1] * 5)
    slow = calculator.goodput(t, Costs(**{**COSTS.__dict__, "upload_seconds": 30.0,
                                          "use_notice": False}))
    assert slow.steps_lost == 5  # interval 10 steps of 1 s
    assert slow.useful_seconds == 70 - 5 + 40


def test_moving_to_a_zone_with_capacity_raises_wall_clock_goodput():
    zones = trace.combine([("a", 10.0, (1,) * 10 + (0,) * 10),
                           ("b", 10.0, (0,) * 5 + (1,) * 15)])
    stay = calculator.goodput(zones, COSTS, "stay")
    move = calculator.goodput(zones, COSTS, "move")
    assert stay.wall == pytest.approx(85 / 200)
    segs = calculator.segments(zones, "move", notice=20.0)
    assert segs == [Segment(0.0, 100.0, True, False), Segment(80.0, 200.0, False, True)]
    # zone b's node starts at the notice; training waits for the final save (95 + 1 s)
    assert move.useful_seconds == 85 + (200 - 96)
    assert move.wall > stay.wall and move.paid_seconds == 220


def test_a_bad_policy_or_scale_or_cost_is_refused():
    with pytest.raises(ValueError, match="policy 'fly'"):
        calculator.segments(one_zone([1]), "fly")
    with pytest.raises(ValueError, match="scale is 0"):
        calculator.compress(one_zone([1]), 0)
    with pytest.raises(ValueError, match="save_seconds is -1"):
        Costs(**{**COSTS.__dict__, "save_seconds": -1})


def test_compressing_a_trace_shortens_its_ticks():
    assert calculator.compress(one_zone([1, 0], gap=600.0), 60).seconds == 20.0


# --- what a replay measures ---------------------------------------------------------------

def events(pid: int, restored: int | None, steps: range, t0: float) -> list[dict[str, object]]:
    out: list[dict[str, object]] = [{"event": "start", "step": 0, "t": t0, "pid": pid}]
    if restored is not None:
        out.append({"event": "restore", "step": restored, "t": t0, "pid": pid, "seconds": 0.1})
    out += [{"event": "step", "step": s, "t": t0 + 0.5 * i, "pid": pid}
            for i, s in enumerate(steps)]
    out.append({"event": "saved", "step": steps[-1], "t": t0 + 99, "pid": pid,
                "reason": "periodic", "seconds": 0.2})
    return out


def test_steps_made_twice_count_once_and_are_reported_per_restart():
    runs = [events(1, None, range(1, 51), 0.0), events(2, 40, range(41, 81), 100.0)]
    tries = measure.attempts(runs)
    assert [(a.restored, a.last) for a in tries] == [(0, 50), (40, 80)]
    m = measure.measure(tries, paid_seconds=80.0, elapsed_seconds=100.0)
    assert (m.useful_steps, m.steps_redone, m.restarts) == (80, (10,), 1)
    assert (m.step_seconds, m.save_seconds, m.useful_seconds) == (0.5, 0.2, 40.0)
    assert (m.paid, m.wall) == (0.5, 0.4)


def test_progress_after_the_end_counts_only_for_steps_redone():
    runs = [events(1, None, range(1, 51), 0.0), events(2, 45, range(46, 61), 100.0)]
    at_end = measure.attempts(runs, until=50.0)
    assert [(a.restored, a.last) for a in at_end] == [(0, 50)]
    m = measure.measure(at_end, 50.0, 50.0, after=measure.attempts(runs))
    assert (m.useful_steps, m.steps_redone, m.restarts) == (50, (5,), 0)


def test_a_restart_pauses_training_from_one_attempts_last_step_to_the_nexts_first():
    # attempt 1 steps at 0..24.5 s; attempt 2 never steps (its node went first); attempt 3
    # steps from 30 s: one pause of 5.5 s, over the attempt that never stepped
    silent = [{"event": "start", "step": 0, "t": 26.0, "pid": 2},
              {"event": "restore", "step": 50, "t": 27.0, "pid": 2, "seconds": 0.1}]
    runs = [events(1, None, range(1, 51), 0.0), silent, events(3, 50, range(51, 61), 30.0)]
    assert measure.pauses(measure.attempts(runs)) == (5.5,)
    assert measure.pauses(measure.attempts(runs[:1])) == ()


def test_nodes_are_billed_from_capacity_up_to_reclaim_or_the_end():
    assert measure.bills([0.0, 50.0], [30.0], end=80.0) == 30 + 30


# --- the replay's node schedule -----------------------------------------------------------

def test_the_replay_preempts_a_notice_before_capacity_goes_and_adds_when_it_returns():
    p = schedule.plan(one_zone([1] * 3 + [0] * 2 + [1] * 1 + [0] + [1]), notice=12.0)
    assert p.actions == (  # a node living less than the notice gets what is left of it
        schedule.Action(0.0, "add"), schedule.Action(18.0, "preempt", 12.0),
        schedule.Action(50.0, "add"), schedule.Action(50.0, "preempt", 10.0),
        schedule.Action(70.0, "add"))
    assert p.reclaims == (30.0, 60.0)


def test_a_multi_zone_replay_follows_each_zones_node_count():
    zones = trace.combine([("a", 10.0, (2, 2, 1, 0, 2)), ("b", 10.0, (0, 1, 1, 1, 1))])
    Z = schedule.ZoneAction
    assert schedule.zone_plan(zones, notice=8.0) == (
        Z(0.0, "add", "a"), Z(0.0, "add", "a"),
        Z(10.0, "add", "b"),
        Z(12.0, "preempt", "a", 8.0),
        Z(22.0, "preempt", "a", 8.0),
        Z(40.0, "add", "a"), Z(40.0, "add", "a"))


def test_the_zone_replay_starts_the_jobs_in_the_zone_reclaimed_first_the_others_join_after():
    zones = trace.combine([("a", 10.0, (2, 2, 2, 2, 2)), ("b", 10.0, (1, 1, 1, 1, 1)),
                           ("c", 10.0, (2, 2, 1, 0, 0))])
    Z = schedule.ZoneAction
    first, joining, rest = schedule.opening(schedule.zone_plan(zones, notice=8.0))
    assert first == (Z(0.0, "add", "c"), Z(0.0, "add", "c"))
    assert joining == (Z(0.0, "add", "a"), Z(0.0, "add", "a"), Z(0.0, "add", "b"))
    assert rest == (Z(12.0, "preempt", "c", 8.0), Z(22.0, "preempt", "c", 8.0))


def test_the_zone_replay_refuses_a_trace_whose_first_reclaimed_zone_cannot_start_the_jobs():
    never = trace.combine([("a", 10.0, (1, 1)), ("b", 10.0, (1, 1))])
    with pytest.raises(ValueError, match="never loses a node"):
        schedule.opening(schedule.zone_plan(never, notice=8.0))
    late = trace.combine([("a", 10.0, (0, 1, 0)), ("b", 10.0, (1, 1, 1))])
    with pytest.raises(ValueError, match="zone a is reclaimed first but has no node at the start"):
        schedule.opening(schedule.zone_plan(late, notice=8.0))


def test_the_zone_table_names_zones_without_their_common_prefix():
    from goodput import zones

    assert zones.short_names(["zones-2h-a", "zones-2h-b"]) == {"zones-2h-a": "a",
                                                               "zones-2h-b": "b"}
    assert zones.short_names(["ab", "abc"]) == {"ab": "ab", "abc": "abc"}
    assert zones.short_names(["zone-10", "zone-11"]) == {"zone-10": "10", "zone-11": "11"}
    assert zones.short_names(["only"]) == {"only": "only"}


def test_a_filler_is_bound_to_its_node_and_requests_half_of_it():
    from goodput import zones

    pod = zones.filler("filler-x", "spot-b-1")
    assert pod["spec"]["nodeName"] == "spot-b-1"
    from localcluster.node import nodes

    cap = nodes.capacity()  # a process node: 8 CPU, 32Gi
    assert pod["spec"]["containers"][0]["resources"]["requests"] == {
        "cpu": str(int(cap["cpu"]) // 2), "memory": f"{int(cap['memory'][:-2]) // 2}Gi"}
    assert pod["spec"]["tolerations"][0]["key"] == "kubernetes.azure.com/scalesetpriority"


def test_the_replay_refuses_a_multi_zone_trace_and_says_where_it_can_go():
    zones = trace.combine([("a", 10.0, (1,)), ("b", 10.0, (1,))])
    with pytest.raises(ValueError, match=r"this trace has 2 \(a, b\).*--policy stay\|move"):
        schedule.plan(zones, notice=8.0)


def test_a_final_upload_that_fits_the_notice_keeps_the_steps_a_full_one_loses():
    t = one_zone([1] * 100 + [0] * 10 + [1] * 100, gap=60.0)  # one reclaim
    base = finalsave.costs(save=19.0, resume=240.0, interval_steps=600, step=1.0)
    rows = finalsave.table(t, base, {"full": 215.0, "delta": 60.0}, [120.0]).splitlines()[2:]
    stay = {r.split("|")[3].split()[0]: [c.strip() for c in r.split("|")] for r in rows
            if r.split("|")[2].strip() == "stay"}
    assert stay["full"][4] == "no" and stay["delta"][4] == "yes"  # 19 + 215 > 120 >= 19 + 60
    assert stay["full"][7] == "300" and stay["delta"][7] == "0"  # half an interval lost
    assert float(stay["delta"][5]) > float(stay["full"][5])  # paid goodput
