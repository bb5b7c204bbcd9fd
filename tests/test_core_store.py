"""Store: local changes, the apply rules, tick bookkeeping, info maps, purging, state."""

from __future__ import annotations

import pytest

from distkv.core import ChainLink, Entry, Outcome, RangeSet, Store
from distkv.exceptions import ClientChainError, ClientError, ServerError
from distkv.util import NotGiven


def chain(*links: tuple[str, int]) -> ChainLink:
    res = None
    for node, tick in reversed(links):
        res = ChainLink(node, tick, res)
    assert res is not None
    return res


def sets(store: Store, name: str) -> dict[str, list]:
    """A node's tick sets in wire form."""
    n = store.nodes[name]
    return {
        "present": n.present.to_wire(),
        "superseded": n.superseded.to_wire(),
        "deleted": n.deleted.to_wire(),
        "missing": n.missing().to_wire(),
    }


def put(store: Store, path: tuple, value, *, nchain: int = -1) -> dict:
    """A local change, returned as the update map it broadcasts."""
    return store.local_change(store.follow(path, create=True), value).to_wire(nchain)


def get(store: Store, path: tuple):
    e = store.follow(path)
    return NotGiven if e is None else e.value


# --- the tree ---------------------------------------------------------------------


def test_new_store_has_root_and_meta_root():
    s = Store("a")
    assert s.root.path == ()
    assert s.root.get(None) is s.meta_root
    assert s.meta_root.path == (None,)
    assert s.node is s.nodes["a"] and s.node.tick is None


def test_follow_creates_only_when_asked_and_inherits_tock():
    s = Store("a")
    assert s.follow(("x", "y")) is None
    s.local_change(s.follow(("x",), create=True), 1)
    x = s.follow(("x",))
    y = s.follow(("x", None, 3), create=True)
    assert y.path == ("x", None, 3)
    assert y.value is NotGiven and y.chain is None and y.tock == x.tock
    assert s.follow(("x", None, 3)) is y


def test_walk_order_meta_children_and_depth_limits():
    root = Entry(None, None)
    for p in [("b",), ("b", "x"), ("a",), (None, "m"), ("b", None), ("b", "y", "z")]:
        root.follow(p, create=True)
    assert [e.path for e, _ in root.walk()] == [
        (),
        ("b",),
        ("b", "x"),
        ("b", "y"),
        ("b", "y", "z"),
        ("a",),
    ]
    full = [e.path for e, _ in root.walk(full=True)]
    assert full == [
        (),
        ("b",),
        ("b", "x"),
        ("b", None),
        ("b", "y"),
        ("b", "y", "z"),
        ("a",),
        (None,),
        (None, "m"),
    ]
    assert [(e.path, d) for e, d in root.walk(min_depth=1, max_depth=1)] == [
        (("b",), 1),
        (("a",), 1),
    ]


def test_walk_survives_changes_while_paused():
    root = Entry(None, None)
    for i in range(3):
        root.follow((i,), create=True)
    seen = []
    for e, _ in root.walk():
        seen.append(e.path)
        if e.path == (0,):
            root.follow((9,), create=True)  # appended while walking
            root.children[2].detach()
    assert seen == [(), (0,), (1,), (2,)]  # the snapshot of the root's children
    assert list(root.children) == [0, 1, 9]


# --- local changes ------------------------------------------------------------------


def test_local_change_allocates_tick_and_tock_and_renders_shape_a():
    s = Store("test_1")
    s.raise_tock(16)
    msg = put(s, ("foo", "bar"), "baz", nchain=5)
    assert msg == {
        "node": "test_1",
        "tick": 1,
        "prev": None,
        "path": ("foo", "bar"),
        "value": "baz",
        "tock": 18,
    }
    assert list(msg) == ["node", "tick", "prev", "path", "value", "tock"]
    assert s.tock == 19 and s.node.tick == 1
    assert s.follow(("foo", "bar")).tock == 18
    gone = put(s, ("foo", "bar"), NotGiven, nchain=5)
    assert gone == {"node": "test_1", "tick": 2, "prev": None, "path": ("foo", "bar"), "tock": 21}


def test_rewriting_supersedes_own_old_tick():
    s = Store("a")
    put(s, ("k",), 1)
    put(s, ("j",), 1)
    put(s, ("k",), 2)
    assert sets(s, "a") == {"present": [[2, 4]], "superseded": [1], "deleted": [], "missing": []}


def test_local_change_on_top_of_a_remote_chain():
    s = Store("a")
    assert s.apply_update(("k",), chain(("b", 4), ("a", 3)), "remote", 10) is Outcome.APPLIED
    s.node.tick = 5
    ev = s.local_change(s.follow(("k",)), "mine")
    assert list(ev.chain) == [("a", 6), ("b", 4)]
    assert ev.old_value == "remote" and ev.value == "mine"
    assert s.nodes["a"].superseded.to_wire() == [3]
    assert s.nodes["b"].present.to_wire() == [4]


def test_local_delete_keeps_a_tombstone():
    s = Store("a")
    put(s, ("k",), 1)
    ev = s.local_change(s.follow(("k",)), NotGiven)
    assert ev.is_delete and ev.old_value == 1
    e = s.follow(("k",))
    assert e is not None and e.value is NotGiven and list(e.chain) == [("a", 2)]
    assert sets(s, "a") == {"present": [2], "superseded": [1], "deleted": [2], "missing": []}
    # setting it again: the deletion record is superseded
    put(s, ("k",), 3)
    assert sets(s, "a") == {"present": [3], "superseded": [[1, 3]], "deleted": [], "missing": []}


def test_delete_of_a_missing_entry_still_makes_an_event():
    s = Store("a")
    ev = s.local_change(s.follow(("never", "was"), create=True), NotGiven)
    assert ev.old_value is NotGiven and ev.tick == 1
    assert sets(s, "a")["deleted"] == [1]


def test_observers_then_watchers_of_entry_and_ancestors():
    s = Store("a")
    calls = []
    s.observers.append(lambda e, ev: calls.append(("observer", e.path, ev.value)))
    top = s.follow(("x",), create=True)
    leaf = s.follow(("x", "y"), create=True)
    top.watchers = [lambda e, ev: calls.append(("x", e.path, ev.value))]
    s.root.watchers = [lambda e, ev: calls.append(("root", e.path, ev.value))]
    s.local_change(leaf, 5)
    assert calls == [("observer", ("x", "y"), 5), ("x", ("x", "y"), 5), ("root", ("x", "y"), 5)]


def test_failed_local_change_marks_its_tick_deleted_and_keeps_the_old_one():
    """15 #7: the old tick must stay present when the new value is refused."""
    s = Store("a")
    put(s, ("m",), "good")

    def refuse(entry, value, local):
        if value == "bad":
            raise ValueError("refused")

    s.validators.append(refuse)
    with pytest.raises(ValueError, match="refused"):
        s.local_change(s.follow(("m",)), "bad")
    e = s.follow(("m",))
    assert e.value == "good" and list(e.chain) == [("a", 1)]
    assert s.node.tick == 2
    assert sets(s, "a") == {"present": [1], "superseded": [2], "deleted": [2], "missing": []}
    put(s, ("m",), "better")
    assert sets(s, "a") == {"present": [3], "superseded": [[1, 3]], "deleted": [2], "missing": []}


# --- client preconditions -----------------------------------------------------------------


def test_check_write_texts():
    s = Store("test_0")
    put(s, ("test",), 1234)
    e = s.follow(("test",))
    with pytest.raises(ClientError) as exc:
        s.check_write(e, prev=999, path="test")
    assert repr(exc.value) == "ClientError('Data is 1234 not 999 at test')"
    with pytest.raises(ClientChainError) as exc:
        s.check_write(e, chain=None, path="test")
    assert repr(exc.value) == "ClientChainError('Entry already exists at test')"
    with pytest.raises(ClientChainError, match="Entry already exists at test"):
        s.check_write(e, chain={}, path="test")
    with pytest.raises(ClientChainError) as exc:
        s.check_write(e, chain={"node": "test_0", "tick": 7}, path="test")
    assert (
        str(exc.value)
        == "Chain is <NodeEvent test_0:1 (1,)> not <NodeEvent test_0:7 (7,)> for test"
    )
    s.check_write(e, chain={"node": "test_0", "tick": 1}, prev=1234)  # both hold


def test_check_write_on_valueless_entries():
    s = Store("a")
    new = s.follow(("n", "x"), create=True)
    s.check_write(new, chain=None)
    s.check_write(None, chain=None)
    with pytest.raises(ClientChainError) as exc:
        s.check_write(new, chain={"node": "a", "tick": 1})
    assert str(exc.value) == "Entry is new at n.x"  # the entry's own path, rendered as text
    with pytest.raises(ClientError) as exc:
        s.check_write(new, prev=None)
    assert str(exc.value) == "Data is NotGiven not None at n.x"


def test_client_chains_do_not_create_node_records():
    """15 #20."""
    s = Store("a")
    put(s, ("k",), 1)
    with pytest.raises(ClientChainError):
        s.check_write(s.follow(("k",)), chain={"node": "intruder", "tick": 5})
    assert set(s.nodes) == {"a"}


# --- applying updates --------------------------------------------------------------------


def test_apply_to_a_new_entry_creates_path_and_registers_nodes():
    s = Store("a")
    assert (
        s.apply_update((None, "p", "q"), chain(("b", 3), ("c", 2)), {"v": 1}, 50) is Outcome.APPLIED
    )
    e = s.follow((None, "p", "q"))
    assert e.value == {"v": 1} and e.tock == 50 and list(e.chain) == [("b", 3), ("c", 2)]
    assert s.tock == 50
    assert (s.nodes["b"].tick, s.nodes["c"].tick) == (3, 2)
    assert sets(s, "b") == {"present": [3], "superseded": [], "deleted": [], "missing": [[1, 3]]}


def test_duplicate_and_stale_updates_are_ignored():
    s = Store("a")
    s.apply_update(("k",), chain(("b", 2)), "two", 20)
    assert s.apply_update(("k",), chain(("b", 2)), "other", 99) is Outcome.DUPLICATE
    assert s.apply_update(("k",), chain(("b", 1)), "one", 10) is Outcome.STALE
    e = s.follow(("k",))
    assert (e.value, e.tock) == ("two", 20)
    assert sets(s, "b") == {"present": [2], "superseded": [1], "deleted": [], "missing": []}


def test_an_update_that_extends_the_chain_wins_whatever_its_tock():
    s = Store("a")
    s.apply_update(("k",), chain(("b", 2)), "b", 20)
    assert s.apply_update(("k",), chain(("c", 1), ("b", 2)), "c", 5) is Outcome.APPLIED
    assert get(s, ("k",)) == "c"
    assert not s.conflicts
    assert sets(s, "b")["present"] == [2] and sets(s, "c")["present"] == [1]


def test_applied_update_supersedes_dropped_links():
    s = Store("a")
    s.apply_update(("k",), chain(("b", 2), ("c", 1)), "x", 20)
    s.apply_update(("k",), chain(("c", 3), ("b", 2)), "y", 30)
    assert sets(s, "c") == {"present": [3], "superseded": [1], "deleted": [], "missing": [2]}
    assert sets(s, "b")["present"] == [2]


def test_conflict_lower_tock_loses():
    s = Store("a")
    s.apply_update(("k",), chain(("b", 2)), "b", 20)
    assert s.apply_update(("k",), chain(("c", 7)), "c", 19) is Outcome.CONFLICT_KEPT
    e = s.follow(("k",))
    assert (e.value, e.tock, e.chain.head) == ("b", 20, ("b", 2))
    assert sets(s, "c") == {"present": [], "superseded": [7], "deleted": [], "missing": [[1, 7]]}
    [c] = s.conflicts
    assert c.to_wire() == {
        "path": ("k",),
        "winner": {"node": "b", "tick": 2, "prev": None},
        "loser": {"node": "c", "tick": 7, "prev": None},
        "winner_tock": 20,
        "loser_tock": 19,
    }


def test_conflict_higher_tock_wins():
    s = Store("a")
    s.apply_update(("k",), chain(("b", 2)), "b", 20)
    assert s.apply_update(("k",), chain(("c", 7)), "c", 21) is Outcome.CONFLICT_WON
    assert get(s, ("k",)) == "c"
    assert sets(s, "b") == {"present": [], "superseded": [2], "deleted": [], "missing": [1]}
    [c] = s.conflicts
    assert (c.winner.head, c.loser.head, c.winner_tock, c.loser_tock) == (
        ("c", 7),
        ("b", 2),
        21,
        20,
    )


@pytest.mark.parametrize(
    ("first", "second", "winner"),
    [
        (("b", 2), ("c", 7), "c"),  # equal tock: higher tick
        (("c", 7), ("b", 2), "c"),
        (("b", 5), ("c", 5), "b"),  # equal tock and tick: lower node name
        (("c", 5), ("b", 5), "b"),
    ],
)
def test_ties_are_broken_the_same_way_in_any_order(first, second, winner):
    """15 #10."""
    s = Store("a")
    s.apply_update(("k",), chain(first), first[0], 20)
    s.apply_update(("k",), chain(second), second[0], 20)
    assert get(s, ("k",)) == winner


def test_a_tombstone_competes_like_a_value():
    """Delete on b and a concurrent older set on c: the delete wins everywhere."""
    for order in ([0, 1], [1, 0]):
        s = Store("a")
        updates = [(chain(("b", 1)), NotGiven, 30), (chain(("c", 1)), "c", 25)]
        for i in order:
            s.apply_update(("k",), *updates[i])
        e = s.follow(("k",))
        assert e.value is NotGiven and e.chain.head == ("b", 1)


def test_loading_resolves_conflicts_without_recording_them():
    s = Store("a")
    s.apply_update(("k",), chain(("b", 2)), "b", 20, loading=True)
    assert s.apply_update(("k",), chain(("c", 1)), "c", 10, loading=True) is Outcome.CONFLICT_KEPT
    assert not s.conflicts


def test_loading_applies_deletions():
    """15 #18: deletion records in a log delete."""
    s = Store("a")
    s.apply_update(("k",), chain(("b", 1)), "v", 10, loading=True)
    assert s.apply_update(("k",), chain(("b", 2)), NotGiven, 11, loading=True) is Outcome.APPLIED
    assert get(s, ("k",)) is NotGiven
    assert sets(s, "b") == {"present": [2], "superseded": [1], "deleted": [2], "missing": []}


def test_conflict_log_is_bounded():
    s = Store("a", max_conflicts=3)
    for i in range(10):
        s.apply_update(("k", i), chain(("b", 2 * i + 1)), 1, 100)
        s.apply_update(("k", i), chain(("c", 2 * i + 1)), 1, 99)
    assert len(s.conflicts) == 3
    assert [c.path for c in s.conflicts] == [("k", 7), ("k", 8), ("k", 9)]


def test_remote_validator_refusal_supersedes_the_events():
    s = Store("a")

    def refuse(entry, value, local):
        if not local and value == "bad":
            raise TypeError("bad type")

    s.validators.append(refuse)
    with pytest.raises(TypeError):
        s.apply_update(("k",), chain(("b", 1)), "bad", 5)
    assert get(s, ("k",)) is NotGiven
    assert sets(s, "b") == {"present": [], "superseded": [1], "deleted": [], "missing": []}


def test_updates_without_chain_or_with_bad_tock_are_refused():
    s = Store("a")
    with pytest.raises(ValueError):
        s.apply_update(("k",), None, 1, 1)
    with pytest.raises(ValueError):
        s.apply_update(("k",), chain(("b", 1)), 1, "soon")


def test_own_events_echoed_back_are_duplicates_or_stale():
    s = Store("a")
    first = put(s, ("k",), 1)
    second = put(s, ("k",), 2)
    from distkv.core import chain_from_wire

    assert (
        s.apply_update(second["path"], chain_from_wire(second), 2, second["tock"])
        is Outcome.DUPLICATE
    )
    assert s.apply_update(first["path"], chain_from_wire(first), 1, first["tock"]) is Outcome.STALE
    assert get(s, ("k",)) == 2


def test_reused_tick_does_not_crash():
    """15 #51: a node that lost its log tail reuses a tick for a delete."""
    s = Store("a")
    s.apply_update(("x",), chain(("b", 4)), "x", 10)
    assert s.apply_update(("y",), chain(("b", 4)), NotGiven, 11) is Outcome.APPLIED
    s.process_info({"node": "c", "deleted": {"b": [4]}})
    assert get(s, ("x",)) == "x"


# --- tick bookkeeping and info maps -------------------------------------------------------


def test_missing_ticks_and_info_maps():
    s = Store("a")
    s.apply_update(("k",), chain(("b", 5)), 1, 10)
    assert s.missing() == {"b": RangeSet.span(1, 5)}
    res = s.process_info(
        {"node": "c", "tick": 3, "ticks": {"b": 9, "d": 2}, "known": {"b": [[1, 3]]}, "tock": 40}
    )
    assert s.tock == 40
    assert s.nodes["b"].tick == 9 and s.nodes["d"].tick == 2
    assert s.missing() == {"b": RangeSet([3, 4, 6, 7, 8, 9]), "d": RangeSet([1, 2])}
    assert res.missing == {} and res.purged == 0
    res = s.process_info(
        {"node": "c", "missing": {"b": [[4, 6]]}, "superseded": {"b": [3, [6, 10]]}}
    )
    assert res.missing == {"b": RangeSet([4, 5])}
    assert sets(s, "b") == {
        "present": [5],
        "superseded": [[1, 4], [6, 10]],
        "deleted": [],
        "missing": [4],
    }
    assert s.nodes["b"].remote_missing.to_wire() == [[4, 6]]
    # a peer saying a tick we hold is superseded does not unhold it
    s.process_info({"node": "c", "superseded": {"b": [5]}})
    assert sets(s, "b")["present"] == [5]
    # somebody else declaring 4 resolved also clears the request for it
    s.process_info({"node": "d", "superseded": {"b": [4]}})
    assert s.nodes["b"].remote_missing.to_wire() == [5]
    assert s.missing() == {"d": RangeSet([1, 2])}


def test_info_from_ourselves_is_ignored():
    s = Store("a")
    s.process_info({"node": "a", "ticks": {"z": 5}})
    assert "z" not in s.nodes


def test_peers_reporting_our_ticks_prevent_reuse():
    """15 #50: a server that lost its log tail learns its old tick from peers."""
    s = Store("a")
    s.node.tick = 3
    s.process_info({"node": "b", "ticks": {"a": 10}})
    assert s.local_change(s.follow(("k",), create=True), 1).tick == 11


def test_info_deleted_purges_others_tombstones():
    s = Store("a")
    s.apply_update(("d", "x"), chain(("b", 1)), 1, 10)
    s.apply_update(("d", "x"), chain(("b", 2)), NotGiven, 11)
    res = s.process_info({"node": "b", "deleted": {"b": [2, 7]}})
    assert res.purged == 1
    assert s.follow(("d",)) is None  # the tombstone and its empty parent are gone
    # a deleted tick 7 means b got that far: 3-6 are missing now
    assert sets(s, "b") == {
        "present": [],
        "superseded": [[1, 3], 7],
        "deleted": [7],
        "missing": [[3, 7]],
    }


def test_info_deleted_never_purges_a_live_value():
    """15 #47: set on A, deleted on B, set again on A; B's delete tick stays in the chain."""
    a, b, joiner = Store("a"), Store("b"), Store("c")
    from distkv.core import chain_from_wire

    def send(msg, *to):
        for s in to:
            s.apply_update(
                msg["path"], chain_from_wire(msg), msg.get("value", NotGiven), msg["tock"]
            )

    send(put(a, ("key",), 1), b)
    send(put(b, ("key",), NotGiven), a)
    third = put(a, ("key",), 3)
    send(third, b)
    assert list(a.follow(("key",)).chain) == [("a", 2), ("b", 1)]
    joiner.apply_update(third["path"], chain_from_wire(third), 3, third["tock"])
    # the joiner downloads b's state, which lists the delete as a deleted tick
    joiner.process_state({"nodes": {"a": 2, "b": 1}, "known": {"a": [1]}, "deleted": {"b": [1]}})
    assert get(joiner, ("key",)) == 3
    assert sets(joiner, "b")["present"] == [1]
    assert joiner.missing() == {}
    # and the deleter's purge of that tick leaves the value alone as well
    for s in (a, b, joiner):
        s.purge("b", [1])
        assert get(s, ("key",)) == 3
        assert s.nodes["b"].present.to_wire() == [1]


def test_purge_removes_tombstones_and_empty_parents_only():
    s = Store("a")
    put(s, ("p",), "parent value")
    put(s, ("p", "q", "r"), 1)  # tick 2
    put(s, ("p", "q", "r"), NotGiven)  # tick 3
    put(s, ("p", "keep"), NotGiven)  # tick 4, a tombstone with a watcher
    s.follow(("p", "keep")).watchers = [print]
    assert s.purge("a", [[2, 5]]) == 2
    assert s.follow(("p", "q")) is None
    assert get(s, ("p",)) == "parent value"
    kept = s.follow(("p", "keep"))
    assert kept is not None and kept.chain is None
    assert sets(s, "a") == {"present": [1], "superseded": [[2, 5]], "deleted": [], "missing": []}


def test_purge_keeps_the_meta_root():
    s = Store("a")
    put(s, (None, "foo"), NotGiven)
    s.purge("a", [1])
    assert s.root.get(None) is not None and s.follow((None, "foo")) is None


def test_purge_by_a_non_head_tick_leaves_the_tombstone():
    s = Store("a")
    s.apply_update(("k",), chain(("b", 1)), 1, 10)
    s.apply_update(("k",), chain(("c", 1), ("b", 1)), NotGiven, 11)
    assert s.purge("b", [1]) == 0
    assert s.follow(("k",)).chain.head == ("c", 1)
    assert s.purge("c", [1]) == 1
    assert s.follow(("k",)) is None
    assert sets(s, "b")["superseded"] == [1] and sets(s, "c")["superseded"] == [1]


def test_process_state_known_keeps_remote_missing():
    s = Store("a")
    s.process_info({"node": "b", "missing": {"c": [1, 2]}})
    s.process_state(
        {"nodes": {"c": 2}, "known": {"c": [1, 2]}, "remote_missing": {"c": [5]}, "tock": 7}
    )
    assert s.nodes["c"].remote_missing.to_wire() == [[1, 3], 5]
    assert s.missing() == {} and s.tock == 7


# --- reading state ---------------------------------------------------------------------------


def test_get_state_shapes():
    s = Store("test_0")
    # ticks 1-9 write k1, k5, k6, k7, k5, k6, k7, k8, k9; ticks 10-11 delete k5 and k6
    for i in range(1, 10):
        put(s, ("k", {2: 5, 3: 6, 4: 7}.get(i, i)), i)
    s.local_change(s.follow(("k", 5)), NotGiven)
    s.local_change(s.follow(("k", 6)), NotGiven)
    s.process_info({"node": "x", "missing": {"test_0": [3]}, "ticks": {"ghost": 0}})
    full = s.get_state(
        nodes=True,
        known=True,
        present=True,
        deleted=True,
        missing=True,
        remote_missing=True,
        node_drop=True,
        from_server="x",
    )
    assert full == {
        "nodes": {"test_0": 11, "ghost": 0},
        "known": {"test_0": [[2, 7]]},
        "present": {"test_0": [1, [7, 12]]},
        "deleted": {"test_0": [[10, 12]]},
        "missing": {},
        "remote_missing": {"test_0": [3]},
        "node_drop": [],
        "node": "test_0",
        "tock": s.tock,
    }
    assert list(full) == [
        "nodes",
        "known",
        "present",
        "deleted",
        "missing",
        "remote_missing",
        "node_drop",
        "node",
        "tock",
    ]
    bare = s.get_state()
    assert set(bare) == {"node", "tock"} and bare["tock"] == full["tock"] + 1
    assert s.get_state(superseded=True)["known"] == {"test_0": [[2, 7]]}
    assert s.get_state(debug=True)["debug"] == {}


def test_enum_node():
    s = Store("a")
    s.apply_update(("x",), chain(("b", 1)), 1, 5)
    s.apply_update(("y",), chain(("a", 1), ("b", 2)), 1, 6)
    s.apply_update(("z",), chain(("b", 3)), 1, 7)
    assert s.enum_node("b") == [1, 2, 3]
    assert s.enum_node("b", max=2) == [1, 2]
    assert s.enum_node("b", current=True) == [1, 3]
    with pytest.raises(KeyError):
        s.enum_node("nope")


def test_find_event():
    s = Store("a")
    s.apply_update(("x",), chain(("b", 1)), 1, 5)
    s.apply_update(("y", "z"), chain(("a", 1), ("b", 2)), 1, 6)
    s.apply_update(("t",), chain(("b", 3)), NotGiven, 7)
    assert s.find_event("b", 2).path == ("y", "z")
    assert s.find_event("b", 3).path == ("t",)
    assert s.find_event("b", 9) is None
    with pytest.raises(KeyError):
        s.find_event("nope", 1)
    found = s.find_events({"b": RangeSet([1, 2, 9]), "a": RangeSet([1]), "zz": RangeSet([1])})
    assert {k: e.path for k, e in found.items()} == {
        ("b", 1): ("x",),
        ("b", 2): ("y", "z"),
        ("a", 1): ("y", "z"),
    }


def test_kill_node():
    s = Store("a")
    s.apply_update(("x",), chain(("b", 1)), 1, 5)
    s.apply_update(("y",), chain(("a", 1), ("c", 4)), 1, 6)
    with pytest.raises(ServerError) as exc:
        s.kill_node("b")
    assert str(exc.value) == "Node b has entry 1"
    with pytest.raises(KeyError):
        s.kill_node("nope")
    s.kill_node("c")
    assert "c" not in s.nodes and s.node_drop == {"c"}
    assert list(s.follow(("y",)).chain) == [("a", 1)]
    assert s.get_state(node_drop=True)["node_drop"] == ["c"]
    # hearing of the node again brings it back
    s.process_info({"node": "b", "ticks": {"c": 5}})
    assert "c" in s.nodes and not s.node_drop


def test_info_node_drop_skips_nodes_that_head_entries():
    s = Store("a")
    s.apply_update(("x",), chain(("b", 1)), 1, 5)
    s.process_info({"node": "z", "ticks": {"c": 0}})
    res = s.process_info({"node": "z", "node_drop": ["b", "c", "a", "unknown"]})
    assert res.dropped == ["c"]
    assert set(s.nodes) == {"a", "b"}
