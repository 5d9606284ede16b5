"""The scheduling decision: assignments, Jenkins' "why" messages, affinity, consistent hashing,
and properties that must hold for any queue and any set of nodes."""

from __future__ import annotations

import dataclasses
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from builds.labels import node_labels, parse_label_expression
from builds.scheduler import (
    EXCLUSIVE,
    LAUNCHING,
    NORMAL,
    NOT_ACCEPTING,
    OFFLINE,
    TEMPORARILY_OFFLINE,
    Assignment,
    Decision,
    NodeState,
    QueueItemState,
    consistent_hash_order,
    decide,
    format_duration,
)

NOW = 1_700_000_000.0


def node(
    name: str,
    labels: str = "",
    *,
    executors: int = 1,
    free: tuple[int, ...] | None = None,
    mode: str = NORMAL,
    reason: str | None = None,
    display: str | None = None,
    builtin: bool = False,
) -> NodeState:
    return NodeState(
        name=name,
        display_name=display or name,
        labels=node_labels(name, labels, is_builtin=builtin),
        num_executors=executors,
        free_executors=tuple(range(executors)) if free is None else free,
        mode=mode,  # type: ignore[arg-type]
        online=reason is None,
        offline_reason=reason,  # type: ignore[arg-type]
        is_builtin=builtin,
    )


def busy(n: NodeState) -> NodeState:
    return dataclasses.replace(n, free_executors=())


def item(item_id: int, label: str | None = None, *, job: str | None = None, **kw) -> QueueItemState:
    kw.setdefault("due", NOW - 1)
    kw.setdefault("in_queue_since", NOW - 10)
    return QueueItemState(
        id=item_id, job_name=job or f"job-{item_id}", label_expression=label, **kw
    )


def why_of(queue_item: QueueItemState, nodes: list[NodeState]) -> str:
    decision = decide([queue_item], nodes, NOW)
    assert decision.assignments == []
    return decision.why[queue_item.id]


def assigned(decision: Decision) -> dict[int, tuple[str, int]]:
    return {a.item_id: (a.node_name, a.executor_number) for a in decision.assignments}


# ---------------------------------------------------------------------------------------------
# Durations (Jenkins' Util.getTimeSpanString)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0 ms"),
        (0.05, "50 ms"),
        (0.1, "0.1 sec"),
        (0.234, "0.23 sec"),
        (1, "1 sec"),
        (4.0, "4 sec"),
        (4.9, "4.9 sec"),
        (4.99, "4.9 sec"),
        (9.95, "9.9 sec"),
        (10.7, "10 sec"),
        (59.999, "59 sec"),
        (60, "1 min 0 sec"),
        (123, "2 min 3 sec"),
        (9 * 60 + 59, "9 min 59 sec"),
        (10 * 60 + 59, "10 min"),
        (3600 + 60, "1 hr 1 min"),
        (12 * 3600 + 60, "12 hr"),
        (86400, "1 day 0 hr"),
        (2 * 86400 + 3 * 3600, "2 days 3 hr"),
        (12 * 86400, "12 days"),
        (40 * 86400, "1 mo 10 days"),
        (31 * 86400, "1 mo 1 day"),
        (400 * 86400, "1 yr 1 mo"),
        (-3, "0 ms"),
    ],
)
def test_format_duration_uses_jenkins_words(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


# ---------------------------------------------------------------------------------------------
# Assignments


def test_an_item_starts_on_the_lowest_free_executor_of_a_matching_node() -> None:
    nodes = [node("n1", "linux", executors=3, free=(2, 1)), node("n2", "windows")]
    decision = decide([item(1, "linux")], nodes, NOW)
    assert decision.assignments == [Assignment(1, "n1", 1)]
    assert decision.why == {}
    assert decision.blocked == set()
    assert decision.demand == {}


def test_free_executors_are_given_out_once_and_never_beyond_the_free_count() -> None:
    nodes = [node("n1", "linux", executors=4, free=(0, 3))]
    decision = decide([item(i, "linux") for i in (1, 2, 3)], nodes, NOW)
    assert assigned(decision) == {1: ("n1", 0), 2: ("n1", 3)}
    assert decision.why == {3: "Waiting for next available executor on ‘n1’"}


def test_the_queue_is_first_in_first_out_by_due_time_then_id() -> None:
    nodes = [node("n1", "linux")]
    late = item(1, "linux", due=NOW - 1)
    early = item(2, "linux", due=NOW - 5)
    assert assigned(decide([late, early], nodes, NOW)) == {2: ("n1", 0)}
    same_a, same_b = item(7, "linux", due=NOW - 1), item(3, "linux", due=NOW - 1)
    assert assigned(decide([same_a, same_b], nodes, NOW)) == {3: ("n1", 0)}


def test_an_item_without_a_label_expression_runs_only_on_normal_nodes() -> None:
    nodes = [node("ex", "linux", mode=EXCLUSIVE), node("norm", "linux")]
    assert assigned(decide([item(1)], nodes, NOW)) == {1: ("norm", 0)}
    assert decide([item(1)], [nodes[0]], NOW).assignments == []


def test_an_exclusive_node_takes_jobs_whose_expression_matches_it() -> None:
    nodes = [node("ex", "gpu", mode=EXCLUSIVE), node("norm", "linux")]
    assert assigned(decide([item(1, "gpu")], nodes, NOW)) == {1: ("ex", 0)}
    assert assigned(decide([item(1, "ex")], nodes, NOW)) == {1: ("ex", 0)}


@pytest.mark.parametrize("reason", [OFFLINE, TEMPORARILY_OFFLINE, NOT_ACCEPTING, LAUNCHING])
def test_nothing_starts_on_a_node_that_is_not_online(reason: str) -> None:
    decision = decide([item(1, "linux")], [node("n1", "linux", reason=reason)], NOW)
    assert decision.assignments == []


def test_a_node_flagged_offline_without_a_reason_is_not_used() -> None:
    n1 = dataclasses.replace(node("n1", "linux"), online=False)
    assert decide([item(1, "linux")], [n1], NOW).assignments == []
    assert why_of(item(1, "linux"), [n1]) == "‘n1’ is offline"


def test_the_built_in_node_is_addressed_by_its_label_and_shown_by_its_display_name() -> None:
    builtin = node("(built-in)", builtin=True, display="Built-In Node")
    assert assigned(decide([item(1, "built-in")], [builtin], NOW)) == {1: ("(built-in)", 0)}
    assert why_of(item(1, "built-in"), [busy(builtin)]) == (
        "Waiting for next available executor on ‘Built-In Node’"
    )


def test_the_input_order_does_not_matter() -> None:
    nodes = [node(f"n{i}", "linux" if i % 2 else "windows", executors=2) for i in range(6)]
    rng = random.Random(7)
    labels = ["linux", "windows", None]
    items = [item(i, rng.choice(labels), job=f"j{i % 4}") for i in range(12)]
    expected = decide(items, nodes, NOW)
    for _ in range(5):
        rng.shuffle(nodes)
        rng.shuffle(items)
        assert decide(items, nodes, NOW) == expected


def test_duplicate_ids_or_names_are_refused() -> None:
    with pytest.raises(ValueError, match="ids"):
        decide([item(1), item(1)], [node("n1")], NOW)
    with pytest.raises(ValueError, match="names"):
        decide([item(1)], [node("n1"), node("n1")], NOW)


# ---------------------------------------------------------------------------------------------
# Quiet period, concurrency, invalid expressions


def test_an_item_in_its_quiet_period_waits_even_with_a_free_executor() -> None:
    decision = decide([item(1, due=NOW + 4.9)], [node("n1")], NOW)
    assert decision.assignments == []
    assert decision.why == {1: "In the quiet period. Expires in 4.9 sec"}
    assert decision.blocked == set()
    assert decision.demand == {}
    assert decide([item(1, due=NOW + 123)], [node("n1")], NOW).why == {
        1: "In the quiet period. Expires in 2 min 3 sec"
    }


def test_an_item_starts_as_soon_as_its_quiet_period_ends() -> None:
    assert assigned(decide([item(1, due=NOW)], [node("n1")], NOW)) == {1: ("n1", 0)}


def test_a_non_concurrent_job_waits_for_its_running_build() -> None:
    queued = item(1, job="app", running_builds=(6, 7))
    decision = decide([queued], [node("n1")], NOW)
    assert decision.assignments == []
    assert decision.why == {1: "Build #7 is already in progress"}
    assert decision.blocked == {1}


def test_the_build_in_progress_message_shows_the_eta_when_an_estimate_is_known() -> None:
    queued = item(1, running_builds=(7,), running_since=NOW - 30, estimated_duration=93)
    assert why_of(queued, [node("n1")]) == "Build #7 is already in progress (ETA: 1 min 3 sec)"
    overdue = dataclasses.replace(queued, running_since=NOW - 200)
    assert why_of(overdue, [node("n1")]) == "Build #7 is already in progress"


def test_a_concurrent_job_starts_next_to_its_running_build() -> None:
    queued = item(1, running_builds=(7,), concurrent_build=True)
    assert assigned(decide([queued], [node("n1")], NOW)) == {1: ("n1", 0)}


def test_a_non_concurrent_job_gets_one_executor_per_decision() -> None:
    nodes = [node("n1", executors=2)]
    items = [item(1, job="app"), item(2, job="app"), item(3, job="other")]
    decision = decide(items, nodes, NOW)
    assert assigned(decision) == {1: ("n1", 0), 3: ("n1", 1)}
    assert decision.why == {2: "A build is already in progress"}
    assert decision.blocked == {2}


def test_a_concurrent_job_may_take_several_executors_at_once() -> None:
    items = [item(i, job="app", concurrent_build=True) for i in (1, 2)]
    assert assigned(decide(items, [node("n1", executors=2)], NOW)) == {
        1: ("n1", 0),
        2: ("n1", 1),
    }


def test_an_invalid_label_expression_never_runs_and_says_why() -> None:
    for due in (NOW - 1, NOW + 5):
        decision = decide([item(1, "linux &", due=due)], [node("n1", "linux")], NOW)
        assert decision.assignments == []
        assert decision.why[1].startswith("Invalid label expression: unexpected ‘&’ at column 7")
        assert decision.blocked == {1}
        assert decision.demand == {}


def test_a_blank_label_expression_means_no_restriction() -> None:
    assert assigned(decide([item(1, "  ")], [node("n1")], NOW)) == {1: ("n1", 0)}


# ---------------------------------------------------------------------------------------------
# Why an item waits for an executor (JENKINS.md d2)


def test_why_label_busy() -> None:
    nodes = [busy(node("n1", "linux")), busy(node("n2", "linux")), node("n3", "windows")]
    assert why_of(item(1, "linux"), nodes) == "Waiting for next available executor on ‘linux’"
    assert why_of(item(1, "linux&&!arm"), nodes) == (
        "Waiting for next available executor on ‘linux && !arm’"
    )


def test_why_single_node_busy() -> None:
    nodes = [busy(node("n1", "linux")), node("n2", "windows")]
    assert why_of(item(1, "n1"), nodes) == "Waiting for next available executor on ‘n1’"
    # Any label carried by exactly one node names that node, as in Jenkins.
    assert why_of(item(1, "linux"), nodes) == "Waiting for next available executor on ‘n1’"
    shown = [busy(node("n1", "linux", display="Linux box"))]
    assert why_of(item(1, "n1"), shown) == "Waiting for next available executor on ‘Linux box’"


def test_why_no_label_all_busy() -> None:
    nodes = [busy(node("n1")), busy(node("n2", executors=2))]
    assert why_of(item(1), nodes) == "Waiting for next available executor"


def test_why_no_nodes_with_the_label() -> None:
    nodes = [node("n1", "linux")]
    assert why_of(item(1, "gpu"), nodes) == "There are no nodes with the label ‘gpu’"
    assert why_of(item(1, "linux && gpu"), nodes) == (
        "There are no nodes with the label ‘linux && gpu’"
    )


def test_why_all_nodes_of_the_label_offline() -> None:
    nodes = [
        node("n1", "linux", reason=OFFLINE),
        node("n2", "linux", reason=TEMPORARILY_OFFLINE),
        node("n3", "linux", reason=LAUNCHING),
        node("w", "windows"),
    ]
    assert why_of(item(1, "linux"), nodes) == "All nodes of label ‘linux’ are offline"


def test_why_single_node_offline() -> None:
    nodes = [node("n1", "linux", reason=OFFLINE), node("w", "windows")]
    assert why_of(item(1, "n1"), nodes) == "‘n1’ is offline"
    assert why_of(item(1, "linux"), nodes) == "‘n1’ is offline"


def test_a_node_without_executors_counts_as_offline_and_is_not_in_demand() -> None:
    nodes = [node("n1", "linux", executors=0)]
    decision = decide([item(1, "linux")], nodes, NOW)
    assert decision.why == {1: "‘n1’ is offline"}
    assert decision.demand == {}


def test_why_not_accepting_tasks() -> None:
    nodes = [node("n1", "linux", reason=NOT_ACCEPTING), busy(node("n2", "linux"))]
    assert why_of(item(1, "linux"), nodes) == "‘n1’ is not accepting tasks"
    assert why_of(item(1), nodes) == "‘n1’ is not accepting tasks"


def test_a_not_accepting_node_without_idle_executors_reads_as_busy() -> None:
    nodes = [busy(node("n1", "linux", reason=NOT_ACCEPTING)), node("n2", "windows")]
    assert why_of(item(1, "linux"), nodes) == "Waiting for next available executor on ‘n1’"


def test_why_reserved_for_matching_label_expressions() -> None:
    nodes = [node("ex", "gpu", mode=EXCLUSIVE), busy(node("n1", "linux"))]
    assert why_of(item(1), nodes) == "‘ex’ is reserved for jobs with matching label expression"


def test_why_doesnt_have_label_lists_every_idle_node_that_refuses() -> None:
    nodes = [
        node("n1", "linux", reason=NOT_ACCEPTING),
        node("n2", "windows"),
        busy(node("n3", "linux")),
    ]
    assert why_of(item(1, "linux"), nodes) == (
        "‘n1’ is not accepting tasks; ‘n2’ doesn’t have label ‘linux’"
    )


def test_idle_nodes_outside_the_label_do_not_hide_that_the_label_is_busy() -> None:
    nodes = [busy(node("n1", "linux")), busy(node("n2", "linux")), node("w", "windows")]
    assert why_of(item(1, "linux"), nodes) == "Waiting for next available executor on ‘linux’"


def test_a_long_list_of_reasons_is_cut_after_five() -> None:
    nodes = [node(f"ex{i}", mode=EXCLUSIVE) for i in range(7)]
    reasons = [f"‘ex{i}’ is reserved for jobs with matching label expression" for i in range(5)]
    assert why_of(item(1), nodes) == "; ".join(reasons) + "; ... and 2 more"


def test_executors_taken_earlier_in_the_same_decision_count_as_busy() -> None:
    nodes = [node("n1", "linux"), node("n2", "linux")]
    decision = decide([item(i, "linux") for i in (1, 2, 3)], nodes, NOW)
    assert len(decision.assignments) == 2
    assert decision.why == {3: "Waiting for next available executor on ‘linux’"}


def test_every_why_string_of_the_reference_is_produced() -> None:
    """A roll call over the examples above, so a lost message shows up in one place."""
    produced = {
        why_of(item(1, due=NOW + 4.9), [busy(node("n1"))]).split(" Expires")[0],
        why_of(item(1, running_builds=(3,)), [node("n1")]),
        why_of(item(1, "linux"), [busy(node("a", "linux")), busy(node("b", "linux"))]),
        why_of(item(1, "a"), [busy(node("a"))]),
        why_of(item(1), [busy(node("a"))]),
        why_of(item(1, "gpu"), [node("a")]),
        why_of(item(1, "x"), [node("a", "x", reason=OFFLINE), node("b", "x", reason=OFFLINE)]),
        why_of(item(1, "a"), [node("a", reason=OFFLINE)]),
        why_of(item(1, "a"), [node("a", reason=NOT_ACCEPTING)]),
        why_of(item(1), [node("a", mode=EXCLUSIVE)]),
        why_of(item(1, "x"), [node("a", "x", reason=NOT_ACCEPTING), node("b")]),
    }
    assert produced == {
        "In the quiet period.",
        "Build #3 is already in progress",
        "Waiting for next available executor on ‘linux’",
        "Waiting for next available executor on ‘a’",
        "Waiting for next available executor",
        "There are no nodes with the label ‘gpu’",
        "All nodes of label ‘x’ are offline",
        "‘a’ is offline",
        "‘a’ is not accepting tasks",
        "‘a’ is reserved for jobs with matching label expression",
        "‘a’ is not accepting tasks; ‘b’ doesn’t have label ‘x’",
    }


# ---------------------------------------------------------------------------------------------
# Demand for offline nodes


def test_offline_nodes_that_could_run_a_waiting_item_are_in_demand() -> None:
    nodes = [
        node("d1", "linux", reason=OFFLINE),
        node("d2", "linux", reason=LAUNCHING),
        node("d3", "windows", reason=OFFLINE),
        node("d4", "linux", reason=OFFLINE, mode=EXCLUSIVE),
        busy(node("n1", "linux")),
    ]
    decision = decide([item(1, "linux"), item(2), item(3, "linux", due=NOW + 5)], nodes, NOW)
    assert decision.demand == {"d1": [1, 2], "d2": [1, 2], "d4": [1], "d3": [2]}


def test_no_demand_when_the_item_can_start_or_is_blocked() -> None:
    nodes = [node("n1", "linux"), node("d1", "linux", reason=OFFLINE)]
    assert decide([item(1, "linux")], nodes, NOW).demand == {}
    assert decide([item(1, "linux", running_builds=(2,))], nodes, NOW).demand == {}


# ---------------------------------------------------------------------------------------------
# Affinity and consistent hashing


def test_the_node_that_built_the_job_last_is_chosen_when_free() -> None:
    nodes = [node(f"n{i}", "linux") for i in range(5)]
    hashed = assigned(decide([item(1, "linux", job="app")], nodes, NOW))[1][0]
    last = next(n.name for n in nodes if n.name != hashed)
    decision = decide([item(1, "linux", job="app", last_built_on=last)], nodes, NOW)
    assert assigned(decision) == {1: (last, 0)}


def test_another_node_is_chosen_when_the_last_one_is_busy_or_does_not_qualify() -> None:
    nodes = [node(f"n{i}", "linux") for i in range(5)]
    hashed = assigned(decide([item(1, "linux", job="app")], nodes, NOW))[1][0]
    last = next(n.name for n in nodes if n.name != hashed)
    for replaced in (busy, lambda n: dataclasses.replace(n, labels=frozenset({n.name}))):
        changed = [replaced(n) if n.name == last else n for n in nodes]
        decision = decide([item(1, "linux", job="app", last_built_on=last)], changed, NOW)
        assert assigned(decision) == {1: (hashed, 0)}
    gone = decide([item(1, "linux", job="app", last_built_on="deleted")], nodes, NOW)
    assert assigned(gone) == {1: (hashed, 0)}


def _placements(job_names: list[str], nodes: list[NodeState]) -> dict[str, str]:
    placements = {}
    for name in job_names:
        decision = decide([item(1, job=name)], nodes, NOW)
        placements[name] = decision.assignments[0].node_name
    return placements


def test_consistent_hashing_spreads_jobs_and_keeps_them_when_a_node_is_added() -> None:
    jobs = [f"job-{i}" for i in range(400)]
    nodes = [node(f"agent-{i}", executors=2) for i in range(4)]
    before = _placements(jobs, nodes)
    counts = {n.name: list(before.values()).count(n.name) for n in nodes}
    assert all(50 <= count <= 150 for count in counts.values()), counts

    after = _placements(jobs, [*nodes, node("agent-new", executors=2)])
    moved = [job for job in jobs if after[job] != before[job]]
    # Only jobs that now hash to the new node move; it gets its share (about a fifth).
    assert all(after[job] == "agent-new" for job in moved)
    assert 40 <= len(moved) <= 130, len(moved)

    unrelated = [
        node("gpu-box", "gpu", mode=EXCLUSIVE, executors=4),
        node("win", "windows", reason=OFFLINE),
    ]
    assert _placements(jobs, [*nodes, *unrelated]) == before


def test_consistent_hashing_weighs_nodes_by_executors() -> None:
    jobs = [f"job-{i}" for i in range(600)]
    nodes = [node("small", executors=1), node("big", executors=3)]
    share = list(_placements(jobs, nodes).values()).count("big") / len(jobs)
    assert 0.65 <= share <= 0.85, share


def test_consistent_hash_order_lists_every_node_once_and_is_stable() -> None:
    weights = {"a": 1, "b": 2, "c": 3}
    order = consistent_hash_order("app", weights)
    assert sorted(order) == ["a", "b", "c"]
    assert consistent_hash_order("app", dict(reversed(weights.items()))) == order
    # Removing a node keeps the relative order of the others.
    without = consistent_hash_order("app", {k: v for k, v in weights.items() if k != order[0]})
    assert without == order[1:]


# ---------------------------------------------------------------------------------------------
# Properties over random farms and queues

ALPHABET = ["a", "b", "c"]
NODE_NAMES = ["n0", "n1", "n2", "n3", "n4"]
JOB_NAMES = ["j0", "j1", "j2", "j3"]
ATOMS = ALPHABET + NODE_NAMES[:2]
# Skewed towards what can run, so that most examples assign something and contend for it.
REASONS = [None] * 6 + [OFFLINE, TEMPORARILY_OFFLINE, NOT_ACCEPTING, LAUNCHING]
DUE_OFFSETS = [-30.0, -30.0, -1.0, -1.0, 0.0, 0.5, 4.9, 120.0]

expressions = st.recursive(
    st.sampled_from(ATOMS),
    lambda inner: st.one_of(
        inner.map(lambda x: f"!({x})"),
        st.tuples(inner, st.sampled_from(["&&", "||", "->", "<->"]), inner).map(
            lambda t: f"({t[0]}) {t[1]} ({t[2]})"
        ),
    ),
    max_leaves=5,
)
label_texts = st.one_of(
    st.none(),
    st.sampled_from(ATOMS),
    expressions,
    st.sampled_from([None, None, "a &&", "(b", "a & b", "!"]),
)


@st.composite
def farms(draw: st.DrawFn) -> list[NodeState]:
    names = draw(st.lists(st.sampled_from(NODE_NAMES), min_size=1, max_size=5, unique=True))
    result = []
    for name in names:
        executors = draw(st.integers(0, 3))
        reason = draw(st.sampled_from(REASONS))
        result.append(
            NodeState(
                name=name,
                display_name=name.upper(),
                labels=frozenset(draw(st.sets(st.sampled_from(ALPHABET)))) | {name},
                num_executors=executors,
                free_executors=draw(
                    st.sampled_from([tuple(range(executors)), tuple(range(executors))])
                    | st.lists(st.integers(0, max(executors - 1, 0)), unique=True).map(tuple)
                )
                if executors
                else (),
                mode=draw(st.sampled_from([NORMAL, EXCLUSIVE])),
                # Now and then a node is reported not online without a reason.
                online=reason is None and draw(st.sampled_from([True, True, True, False])),
                offline_reason=reason,
            )
        )
    return result


@st.composite
def queues(draw: st.DrawFn, nodes: list[NodeState]) -> list[QueueItemState]:
    jobs = {
        name: {
            "concurrent_build": draw(st.booleans()),
            "running_builds": draw(st.sampled_from([(), (), (), (4,), (3, 5)])),
            "last_built_on": draw(st.sampled_from([None, *NODE_NAMES])),
            "label_expression": draw(label_texts),
        }
        for name in JOB_NAMES
    }
    count = draw(st.integers(0, 8))
    ids = draw(st.lists(st.integers(1, 100), min_size=count, max_size=count, unique=True))
    return [
        QueueItemState(
            id=item_id,
            job_name=(job := draw(st.sampled_from(JOB_NAMES))),
            due=NOW + draw(st.sampled_from(DUE_OFFSETS)),
            in_queue_since=NOW - 60,
            **jobs[job],
        )
        for item_id in ids
    ]


farms_and_queues = farms().flatmap(lambda nodes: st.tuples(st.just(nodes), queues(nodes)))


def check_decision(
    items: list[QueueItemState], nodes: list[NodeState], d: Decision, now: float = NOW
) -> None:
    by_id = {i.id: i for i in items}
    by_name = {n.name: n for n in nodes}

    used = [(a.node_name, a.executor_number) for a in d.assignments]
    assert len(used) == len(set(used)), "an executor was given out twice"
    for a in d.assignments:
        n, queued = by_name[a.node_name], by_id[a.item_id]
        assert a.executor_number in n.free_executors
        assert n.online and n.offline_reason is None and n.num_executors > 0
        expression = parse_label_expression(queued.label_expression)
        if expression is None:
            assert n.mode == NORMAL, "an item without a label went to an EXCLUSIVE node"
        else:
            assert expression.matches(n.labels)
        assert queued.due <= now, "an item in its quiet period was assigned"
        if not queued.concurrent_build:
            assert not queued.running_builds, "a non-concurrent job started while running"
    for n in nodes:
        on_node = [a for a in d.assignments if a.node_name == n.name]
        assert len(on_node) <= len(set(n.free_executors))

    jobs = [
        by_id[a.item_id].job_name for a in d.assignments if not by_id[a.item_id].concurrent_build
    ]
    assert len(jobs) == len(set(jobs)), "a non-concurrent job got two executors"

    started = {a.item_id for a in d.assignments}
    assert len(started) == len(d.assignments), "an item was assigned twice"
    assert set(d.why) == set(by_id) - started, "every waiting item, and only those, has a why"
    assert all(d.why.values())
    assert d.blocked <= set(d.why)
    for name, waiting in d.demand.items():
        assert not by_name[name].online or by_name[name].offline_reason is not None
        assert set(waiting) <= set(d.why) - d.blocked


@settings(max_examples=400, deadline=None)
@given(farms_and_queues)
def test_every_decision_respects_the_rules(farm_and_queue) -> None:
    nodes, items = farm_and_queue
    decision = decide(items, nodes, NOW)
    check_decision(items, nodes, decision)
    # Deterministic, and independent of the order the caller lists things in.
    assert decide(items, nodes, NOW) == decision
    assert decide(list(reversed(items)), list(reversed(nodes)), NOW) == decision


def _runnable(queued: QueueItemState, nodes: list[NodeState]) -> bool:
    try:
        expression = parse_label_expression(queued.label_expression)
    except ValueError:
        return False
    return any(
        n.online
        and n.offline_reason is None
        and n.num_executors > 0
        and (n.mode == NORMAL if expression is None else expression.matches(n.labels))
        for n in nodes
    )


@settings(max_examples=300, deadline=None)
@given(farms_and_queues)
def test_applying_decisions_drains_every_queue_that_can_run(farm_and_queue) -> None:
    nodes, items = farm_and_queue
    queue = [queued for queued in items if _runnable(queued, nodes)]
    running: dict[str, set[int]] = {}  # job → its running build numbers
    next_number = 100
    now = NOW
    for _ in range(len(queue) + 3):
        if not queue:
            break
        decision = decide(queue, nodes, now)
        check_decision(queue, nodes, decision, now)
        started = {a.item_id: a for a in decision.assignments}
        busy_slots: dict[str, set[int]] = {}
        for a in decision.assignments:
            busy_slots.setdefault(a.node_name, set()).add(a.executor_number)
            job = next(q.job_name for q in queue if q.id == a.item_id)
            running.setdefault(job, set()).add(next_number)
            next_number += 1
        # The started builds hold their executors while the others look at the farm again...
        nodes_busy = [
            dataclasses.replace(
                n,
                free_executors=tuple(
                    x for x in n.free_executors if x not in busy_slots.get(n.name, set())
                ),
            )
            for n in nodes
        ]
        waiting = [
            dataclasses.replace(q, running_builds=tuple(sorted(running.get(q.job_name, ()))))
            for q in queue
            if q.id not in started
        ]
        check_decision(waiting, nodes_busy, decide(waiting, nodes_busy, now), now)
        # ...then every build finishes, freeing every executor (including those busy with
        # builds from before), and time moves on past any quiet period.
        running.clear()
        nodes = [
            dataclasses.replace(n, free_executors=tuple(range(n.num_executors))) for n in nodes
        ]
        queue = [dataclasses.replace(q, running_builds=()) for q in waiting]
        now += 300
    assert queue == [], f"left waiting: {decide(queue, nodes, now).why}"
