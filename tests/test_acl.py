"""ACLs (07): the letter matrix, wildcards and their order, deny by default, dumps,
``test_acl``, user resolution; and ``distkv client acl …`` against a server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from authsrv import auth_server
from procs import run_cli

from distkv.acl import (
    CLI_MODES,
    MODES,
    UNRESTRICTED,
    AclCursor,
    UserACL,
    acl_access,
    acl_for_user,
    find_match,
)
from distkv.command.client.acl import new_modes
from distkv.core import Store
from distkv.exceptions import ACLError, ClientError
from distkv.util.path import P


def put(store: Store, path: Any, value: Any) -> None:
    store.local_change(store.follow(P(path) if isinstance(path, str) else path, create=True),
                       value)


def make_acl(store: Store, name: str, entries: dict[str, str]) -> UserACL:
    for path, modes in entries.items():
        put(store, (None, "acl", name, *P(path)), modes)
    return UserACL(store, name)


@pytest.fixture
def store() -> Store:
    s = Store("test")
    put(s, "data", 1)  # an existing entry with a value
    put(s, "data.child", 2)
    s.follow(P("empty"), create=True)  # an existing entry without a value
    return s


# --- the letter matrix --------------------------------------------------------------------


@pytest.mark.parametrize("letter", list(MODES))
def test_each_letter_granted_and_refused(store: Store, letter: str):
    has = make_acl(store, "has", {"data": letter})
    lacks = make_acl(store, "lacks", {"data": MODES.replace(letter, "")})
    assert has.allows(("data",), letter)
    assert not lacks.allows(("data",), letter)
    with pytest.raises(ACLError) as err:
        lacks.check(("data",), letter)
    assert err.value.args == (
        f"ACL lacks at data grants {MODES.replace(letter, '')!r}, needed:", letter
    )


def test_the_cli_accepts_exactly_the_mode_letters():
    assert sorted(CLI_MODES) == sorted(MODES)


def test_W_is_c_for_new_entries_and_w_for_existing_ones(store: Store):
    create_only = make_acl(store, "c", {"#": "c"})
    write_only = make_acl(store, "w", {"#": "w"})
    assert create_only.allows(("new",), "W") and not write_only.allows(("new",), "W")
    assert create_only.allows(("empty",), "W")  # exists, but has no value
    assert write_only.allows(("data",), "W") and not create_only.allows(("data",), "W")
    with pytest.raises(ACLError) as err:
        create_only.check(("data",), "W")
    assert err.value.args[1] == "w"


# --- walking a path -----------------------------------------------------------------------


def test_traversal_needs_x_through_existing_and_n_for_new_entries(store: Store):
    acl = make_acl(store, "t", {"data": "r", "data.child": "r", "data.new": "c"})
    with pytest.raises(ACLError) as err:
        acl.check(P("data.child"), "r")  # 'data' exists: passing it needs x
    assert err.value.args == ("ACL t at data grants 'r', needed:", "x")
    with pytest.raises(ACLError) as err:
        acl.check(P("data.new"), "c")  # 'new' does not exist: creating it needs n at data
    assert err.value.args[1] == "n"
    ok = make_acl(store, "ok", {"data": "xn", "data.child": "r", "data.new": "c"})
    assert ok.allows(P("data.child"), "r") and ok.allows(P("data.new"), "c")


def test_ancestors_without_entries_do_not_block(store: Store):
    acl = make_acl(store, "deep", {"a.b.c": "rc"})
    assert acl.allows(P("a.b.c"), "c")  # nothing says anything about a or a.b
    assert not acl.allows(P("a.b"), "c")  # but there is no access there


def test_the_acl_roots_own_value_is_checked_first(store: Store):
    acl = make_acl(store, "rooted", {"data": "rx"})
    put(store, (None, "acl", "rooted"), "r")  # no x/n at the top
    assert not acl.allows(("data",), "r")
    assert not acl.allows(("new",), "c")


def test_no_matching_entry_means_no_access(store: Store):
    acl = make_acl(store, "foo", {"one": "rxnc", "one.two": "rc"})
    assert not acl.allows(("foo",), "W")  # 0.65.0 allowed this (15 #26)
    with pytest.raises(ACLError) as err:
        acl.check(P("foo.bar"), "W")
    assert err.value.args == ("ACL foo has no entry for foo.bar, needed:", "c")
    assert not acl.allows((None, "foo"), "W")


def test_the_tutorials_aclix_example(store: Store):
    """07 §4: 'one' and 'one.two' may be created and read back, nothing else."""
    acl = make_acl(store, "foo", {"one": "rxnc", "one.two": "rc"})
    assert acl.allows(("one",), "W")
    put(store, "one", 10)
    assert acl.allows(P("one.two"), "W")
    put(store, "one.two", 11)
    assert acl.allows(("one",), "r") and acl.allows(P("one.two"), "r")
    assert not acl.allows(P("one.two.three"), "W")  # no n at one.two
    assert not acl.allows(P("one.two"), "W")  # now an overwrite: no w
    assert not acl.allows(("one",), "W")
    assert not acl.allows(("foo",), "W")  # no matching entry


def test_the_tutorials_write_only_store(store: Store):
    acl = make_acl(store, "writeonly", {"wom.#": "xc"})
    assert acl.allows(P("wom.foo"), "W")
    # 'wom.foo' does not exist yet: a '#' entry granting c covers creating it
    assert acl.allows(P("wom.foo.bar.baz"), "W")
    put(store, "wom.foo.bar", 42)
    with pytest.raises(ACLError) as err:
        acl.check(P("wom.foo.bar"), "W")
    assert err.value.args == ("ACL writeonly at wom.# grants 'xc', needed:", "w")
    assert not acl.allows(P("wom.foo.bar"), "r")
    assert not acl.allows(("wom",), "c")  # '#' needs at least one level
    # without c, the '#' entry does not cover creating intermediate entries
    acl = make_acl(store, "noc", {"wom.#": "xw"})
    with pytest.raises(ACLError) as err:
        acl.check(P("wom.new.deeper"), "W")
    assert err.value.args == ("ACL noc at wom.# grants 'xw', needed:", "n")


# --- matching -----------------------------------------------------------------------------


def tree(store: Store, entries: dict[str, str]) -> Any:
    for path, v in entries.items():
        put(store, ("m", *P(path)), v)
    return store.follow(("m",))


def matched(root: Any, path: str) -> Any:
    node = find_match(root, P(path))
    return None if node is None else node.value


def test_plus_matches_exactly_one_level(store: Store):
    root = tree(store, {"a.+": "plus"})
    assert matched(root, "a.b") == "plus"
    assert matched(root, "a") is None and matched(root, "a.b.c") is None


def test_hash_matches_one_or_more_levels(store: Store):
    root = tree(store, {"a.#": "hash", "x.#.z": "xz"})
    assert matched(root, "a.b") == "hash" and matched(root, "a.b.c.d") == "hash"
    assert matched(root, "a") is None
    assert matched(root, "x.y.z") == "xz" and matched(root, "x.1.2.3.z") == "xz"
    assert matched(root, "x.z") is None and matched(root, "x.y.z.w") is None


def test_most_specific_first(store: Store):
    root = tree(store, {"a.b": "exact", "a.+": "plus", "a.#": "hash", "#": "top"})
    assert matched(root, "a.b") == "exact"
    assert matched(root, "a.c") == "plus"
    assert matched(root, "a.c.d") == "hash"
    assert matched(root, "q") == "top" and matched(root, "q.r.s") == "top"


def test_shallow_exact_beats_deep_wildcard(store: Store):
    root = tree(store, {"a.b.#.g": "b-first", "a.#.d.e.f.g": "hash-first"})
    assert matched(root, "a.b.c.d.e.f.g") == "b-first"
    assert matched(root, "a.x.d.e.f.g") == "hash-first"


def test_entries_without_values_only_structure(store: Store):
    root = tree(store, {"a.b.c": "deep", "a.+": "plus"})
    assert matched(root, "a.b") == "plus"  # a.b exists but has no value
    assert matched(root, "a.b.c") == "deep"


def test_wildcards_never_match_none(store: Store):
    root = tree(store, {"+": "plus", "#": "hash"})
    assert matched(root, "x") == "plus"
    assert find_match(root, (None,)) is None and find_match(root, ("a", None)) is None


# --- which ACL a user has -----------------------------------------------------------------

USER = (None, "auth", "_test", "user", "joe")


def test_users_acl_resolution(store: Store):
    put(store, USER, {})
    assert acl_for_user(store, USER) is UNRESTRICTED  # no acl child
    put(store, (*USER, "acl"), {"key": "*"})
    assert acl_for_user(store, USER) is UNRESTRICTED
    put(store, (*USER, "acl"), {"key": "foo"})
    acl = acl_for_user(store, USER)
    assert acl.restricted and acl.name == "foo"


@pytest.mark.parametrize("record", [{"key": "nope"}, {"key": 3}, {"nokey": "foo"}, "foo"])
def test_missing_or_malformed_acl_refuses_everything(store: Store, record: Any):
    make_acl(store, "foo", {"#": MODES})
    put(store, USER, {})
    put(store, (*USER, "acl"), record)
    acl = acl_for_user(store, USER)
    assert acl.restricted
    assert not any(acl.allows(("data",), letter) for letter in MODES)  # 15 #29


def test_acl_created_later_takes_effect_at_once(store: Store):
    acl = UserACL(store, "later")
    assert not acl.allows(("data",), "r")
    with pytest.raises(ACLError, match="ACL later does not exist"):
        acl.check(("data",), "r")
    make_acl(store, "later", {"data": "r"})
    assert acl.allows(("data",), "r")
    put(store, (None, "acl", "later", "data"), "")
    assert not acl.allows(("data",), "r")


def test_unrestricted_allows_everything(store: Store):
    assert UNRESTRICTED.allows((None, "auth"), "w") and not UNRESTRICTED.restricted
    cur = UNRESTRICTED.cursor(("data",), "e")
    assert cur.grants("r") and cur.descends() and cur.child("x").grants("d")


def test_meta_tree_is_off_limits_unless_named_explicitly(store: Store):
    acl = make_acl(store, "all", {"#": MODES, "+": MODES})
    assert acl.allows(("data",), "r")
    with pytest.raises(ACLError, match="has no entry for :n.acl.all"):
        acl.check((None, "acl", "all"), "r")  # wildcards never match None
    assert not acl.allows(("data", None, "x"), "W")
    # an explicit None element in the ACL opens exactly that part of the meta tree
    put(store, (None, "acl", "all", None, "type", "#"), "rc")
    assert acl.allows((None, "type", "int"), "r")
    assert acl.allows((None, "type", "int", "percent"), "c")  # ('#' with c implies n)
    assert not acl.allows((None, "type", "int"), "d")
    assert not acl.allows((None, "acl", "all"), "r")
    assert not acl.allows((None, "auth", "password", "user", "joe"), "r")


def test_sub_root_users(store: Store):
    put(store, ("tenant", None, "acl", "t", "x"), "rc")
    acl = UserACL(store, "t", base=("tenant",))
    assert acl.allows(("tenant", "x"), "c")
    assert not acl.allows(("tenant", "y"), "c")
    assert not acl.allows(("x",), "c")  # outside the user's root


# --- dumps --------------------------------------------------------------------------------


def test_dump_cursor(store: Store):
    acl = make_acl(store, "d", {"a": "re", "a.b": "rex", "a.b.c": "r", "a.q": "rx"})
    cur = acl.cursor(("a",), "e")
    assert cur.grants("r") and cur.descends() and not cur.grants("d")
    b = cur.child("b")
    assert not b.grants("r")  # 'a' lacks x: reading below it is blocked
    assert b.child("c").blocked == "r"
    full = make_acl(store, "f", {"a": "rex", "a.b": "re", "a.b.c": "r"})
    b = full.cursor(("a",), "e").child("b")
    assert b.grants("r") and b.descends()
    c = b.child("c")
    assert not c.grants("r") and not c.descends()  # a.b lacks x; a.b.c lacks e
    unknown = full.cursor(("a",), "e").child("zz")
    assert not unknown.grants("r")  # no entry: strict r
    assert not unknown.descends()  # and no ACL entry can match anything below it
    assert full.cursor(("a",), "e").child("b").child("zz").descends() is False
    deep = make_acl(store, "deep", {"a": "ex", "a.b.c": "r"})
    b = deep.cursor(("a",), "e").child("b")
    assert not b.grants("r") and b.descends()  # a.b has no entry, but a.b.c may grant
    assert b.child("c").grants("r")

    assert not full.cursor(("a",), "e").child(None).grants("r")
    with pytest.raises(ACLError):
        acl.cursor(("a", "b", "c"), "e")
    assert isinstance(cur, AclCursor)
    # a watcher's notification deep below the start
    top = full.cursor(("a",), "e")
    assert top.at(("b",)).grants("r") and top.at(()).grants("r")
    assert not top.at(("b", "c")).grants("r")
    assert top.at(("b", "c", "d")) is None  # a.b.c lacks e: no descent
    assert UNRESTRICTED.cursor(("a",), "x").at(("b", "c")).grants("r")


def test_lookup_states_are_not_shared_between_siblings(store: Store):
    acl = make_acl(store, "s", {"a": "rex", "a.+": "r", "a.y": "rx"})
    top = acl.cursor(("a",), "e")
    x, y = top.child("x"), top.child("y")
    assert x.grants("r") and not x.grants("x")
    assert y.grants("x")
    assert top.child("x").grants("r")  # stepping again gives the same answer (15 #13)


# --- test_acl -----------------------------------------------------------------------------


def test_acl_access(store: Store):
    user = make_acl(store, "user", {"data": "rax", "other": "r"})
    named = make_acl(store, "named", {"data": "rw"})
    assert acl_access(store, user, ("data",)) == "rax"
    assert acl_access(store, user, ("other",)) is False  # no 'a'
    assert acl_access(store, UNRESTRICTED, ("data",)) is True
    assert acl_access(store, user, ("data",), "r", "named") == "rw"
    assert acl_access(store, user, ("data",), "w", "named") is False  # user lacks w
    assert acl_access(store, UNRESTRICTED, ("data",), "w", "named") == "rw"
    assert acl_access(store, UNRESTRICTED, ("data",), "d", "named") is False
    assert named.name == "named"
    with pytest.raises(ClientError, match="The ACL 'nope' does not exist"):
        acl_access(store, user, ("data",), "r", "nope")


# --- the CLI ------------------------------------------------------------------------------


def test_new_modes():
    assert new_modes("rx", "+wc") == "rxwc"
    assert new_modes("rx", "+r") == "rx"
    assert new_modes("rxc", "-x") == "rc"
    assert new_modes("rx", "cc") == "c"
    assert new_modes("rx", "-") is None
    with pytest.raises(Exception, match="Unknown ACL letters 'q'"):
        new_modes("", "+q")


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    with auth_server(init=123) as server:
        yield server.ports[0]


def cli(port: int, *args: str) -> tuple[int, str, str]:
    res = run_cli(port, "client", *args)
    return res.returncode, res.stdout, res.stderr


def test_cli_acl_set_get_dump_list_test(port: int):
    assert cli(port, "acl", "set", "foo", "one", "-a", "rxnc") == (
        0, "old: ''\nnew: rxnc\n", "")
    assert cli(port, "acl", "set", "foo", "one.two", "-a", "rc")[0] == 0
    assert cli(port, "acl", "set", "foo", "one", "-a", "-n") == (0, "old: rxnc\nnew: rxc\n", "")
    assert cli(port, "acl", "set", "foo", "wom.#")[1] == "old: ''\nnew: x\n"
    assert cli(port, "acl", "get", "foo", "one") == (0, "'rxc'\n", "")
    assert cli(port, "acl", "dump", "foo", ":") == (
        0, "- !P one: rxc\n- !P one.two: rc\n- !P wom.#: x\n", "")
    assert cli(port, "acl", "dump", "foo", "one", "-d", "_") == (
        0, "_: rxc\ntwo:\n  _: rc\n", "")
    assert cli(port, "acl", "list") == (0, "- foo\n", "")
    assert cli(port, "acl", "set", "foo", "wom.#", "-a", "-") == (0, "old: x\nnew: '-'\n", "")
    assert cli(port, "acl", "dump", "foo", ":")[1] == "- !P one: rxc\n- !P one.two: rc\n"
    # an unrestricted user: '+' without a named ACL, the entry's letters with one
    assert cli(port, "acl", "test", "one") == (0, "+\n", "")
    assert cli(port, "acl", "test", "-a", "foo", "-m", "r", "one") == (0, "rxc\n", "")
    assert cli(port, "acl", "test", "-a", "foo", "-m", "w", "one") == (0, "-\n", "")
    code, out, err = cli(port, "acl", "set", "foo", "one", "-a", "+q")
    assert code == 2 and "Unknown ACL letters 'q'" in err


def test_cli_acl_refuses_bad_records(port: int):
    code, out, err = cli(port, "data", ":n.acl.bar.x", "set", "-e", ":", "5")
    assert code == 1 and err == "ServerError: ValueError('ACL is not a string')\n"
