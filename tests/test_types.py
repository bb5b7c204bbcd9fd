"""Types and matches (08 §1-3): records, examples, subtypes, schemas, checks of writes,
user code that misbehaves, the snippet calling convention; ``distkv client type …``."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from authsrv import auth_server, client_cli

from distkv.core import Store
from distkv.exceptions import ClientError
from distkv.snippet import CodeRunner, CodeTimeoutError, Snippet
from distkv.types import TypeSystem, meta_position
from distkv.util import NotGiven
from distkv.util.path import P

INT = {"good": [0, 2], "bad": [None, "foo"],
       "code": "if not isinstance(value,int): raise ValueError('not an int')"}
PERCENT = {"good": [0, 100, 50], "bad": [-1, 555],
           "code": "if not 0<=value<=100: raise ValueError('not a percentage')"}


@pytest.fixture
def ts() -> Iterator[TypeSystem]:
    store = Store("test")
    types = TypeSystem(store, CodeRunner(timeout=0.3))
    store.validators.append(types.validator)
    yield types
    types.runner.close()


def put(ts: TypeSystem, path: Any, value: Any) -> None:
    """Write like a client would (validators run)."""
    path = P(path) if isinstance(path, str) else path
    ts.store.local_change(ts.store.follow(path, create=True), value)


def meta(*path: Any) -> tuple:
    return (None, *path)


def check(ts: TypeSystem, path: str, value: Any) -> None:
    ts.check_value(P(path), value)


def refused(ts: TypeSystem, path: str, value: Any) -> str:
    with pytest.raises(ClientError) as err:
        check(ts, path, value)
    return err.value.args[0]


# --- the tutorial's types -----------------------------------------------------------------


def test_percent_example(ts: TypeSystem):
    """08 §3: foo.+.bar must be an int.percent."""
    put(ts, meta("type", "int"), INT)
    put(ts, meta("type", "int", "percent"), PERCENT)
    put(ts, meta("match", "foo", "+", "bar"), {"type": P("int.percent")})
    check(ts, "foo.dud.bar", 55)
    assert refused(ts, "foo.dud.bar", 123) == "ValueError('not a percentage')"
    assert refused(ts, "foo.dud.bar", "123") == "ValueError('not an int')"  # the parent's check
    assert refused(ts, "foo.dud.bar", 5.5) == "ValueError('not an int')"
    check(ts, "foo.dud.baz", "anything")  # no match
    check(ts, "foo.bar", 123)  # '+' is exactly one level


def test_tutorial_integer_and_stats_quota(ts: TypeSystem):
    put(ts, meta("type", "int"), {
        "good": [0, -2, 123], "bad": [1.2, "Hello"],
        "code": 'if int(value) != value: raise ValueError("not an integer")'})
    put(ts, meta("type", "int", "percent"), {
        "good": [0, 99, 100], "bad": [-1, 101],
        "code": 'if not (0 <= value <= 100): raise ValueError("not a percentage")'})
    put(ts, meta("match", "stats", "#", "quota"), {"type": "int.percent"})  # a string path
    assert refused(ts, "stats.foo.bar.quota", 123) == "ValueError('not a percentage')"
    check(ts, "stats.foo.bar.quota", 12)
    assert refused(ts, "stats.x.quota", 1.5) == "ValueError('not an integer')"


def test_subtypes_accumulate_checks(ts: TypeSystem):
    put(ts, meta("type", "num"), {
        "good": [1, 2.5], "bad": ["x"],
        "code": "if not isinstance(value,(int,float)): raise TypeError('not a number')"})
    put(ts, meta("type", "num", "pos"), {"good": [1, 2.5], "bad": [-1],
                                         "code": "if value <= 0: raise ValueError('not positive')"})
    put(ts, meta("type", "num", "pos", "small"), {
        "good": [1, 2.5], "bad": [10], "code": "if value >= 10: raise ValueError('too big')"})
    put(ts, meta("match", "x"), {"type": P("num.pos.small")})
    assert refused(ts, "x", "a") == "TypeError('not a number')"
    assert refused(ts, "x", -5) == "ValueError('not positive')"
    assert refused(ts, "x", 50) == "ValueError('too big')"
    check(ts, "x", 3)


def test_json_schema_types(ts: TypeSystem):
    put(ts, meta("type", "pct"), {
        "good": [0, 100], "bad": [101, "x", 1.5],
        "schema": {"type": "integer", "minimum": 0, "maximum": 100}})
    put(ts, meta("type", "pct", "even"), {
        "good": [0, 100], "bad": [3],
        "schema": {"multipleOf": 2}, "code": "if value == 42: raise ValueError('not 42')"})
    put(ts, meta("match", "p"), {"type": P("pct")})
    put(ts, meta("match", "e"), {"type": P("pct.even")})
    assert refused(ts, "p", 101) == "ValueError('101 is greater than the maximum of 100')"
    assert refused(ts, "p", "x") == "ValueError(\"'x' is not of type 'integer'\")"
    assert refused(ts, "e", 7) == "ValueError('7 is not a multiple of 2')"
    assert refused(ts, "e", 42) == "ValueError('not 42')"  # schema first, then code
    check(ts, "e", 44)


def test_most_specific_match_wins(ts: TypeSystem):
    put(ts, meta("type", "int"), INT)
    put(ts, meta("type", "str"), {
        "good": ["a", "b"], "bad": [1],
        "code": "if not isinstance(value,str): raise ValueError('not a string')"})
    put(ts, meta("match", "a", "#"), {"type": P("int")})
    put(ts, meta("match", "a", "b", "+"), {"type": P("str")})
    check(ts, "a.b.c", "text")
    assert refused(ts, "a.x.c", "text") == "ValueError('not an int')"
    assert refused(ts, "a.b.c", 3) == "ValueError('not a string')"


def test_changed_type_takes_effect_and_deleted_match_stops_checks(ts: TypeSystem):
    put(ts, meta("type", "t"), {"good": [1, 2], "bad": [3], "code": "assert value < 3"})
    put(ts, meta("match", "v"), {"type": P("t")})
    assert refused(ts, "v", 5) == "AssertionError()"
    check(ts, "v", 2)
    put(ts, meta("type", "t"), {"good": [1, 3], "bad": [2], "code": "assert value != 2"})
    check(ts, "v", 5)
    assert refused(ts, "v", 2) == "AssertionError()"
    put(ts, meta("match", "v"), NotGiven)  # deleting works (15 #7)
    check(ts, "v", 2)


def test_deleted_type_makes_matching_writes_fail(ts: TypeSystem):
    put(ts, meta("type", "t"), {"good": [1, 2], "bad": [3], "code": "assert value < 3"})
    put(ts, meta("match", "v"), {"type": P("t")})
    put(ts, meta("type", "t"), NotGiven)
    check(ts, "v", 5)  # the entry still exists, without checks
    ts.store.follow(meta("type"), create=True).children.clear()
    assert refused(ts, "v", 5) == "The type t does not exist"


# --- validating type and match records ----------------------------------------------------


def bad_record(ts: TypeSystem, path: tuple, value: Any) -> BaseException:
    with pytest.raises(Exception) as err:
        put(ts, path, value)
    assert ts.store.follow(path) is None or ts.store.follow(path).value is NotGiven
    return err.value


def test_examples_are_required_and_enforced(ts: TypeSystem):
    t = meta("type", "int")
    code = INT["code"]
    assert repr(bad_record(ts, t, {"good": [1], "bad": ["x"], "code": code})) == \
        "RuntimeError('Must have check-good values')"
    assert repr(bad_record(ts, t, {"good": [1, 2], "bad": [], "code": code})) == \
        "RuntimeError('Must have check-bad values')"
    assert repr(bad_record(ts, t, {"good": [1, "x"], "bad": [None], "code": code})) == \
        "ValueError(\"failed on good value 'x': ValueError('not an int')\")"
    assert repr(bad_record(ts, t, {"good": [1, 2], "bad": [3], "code": code})) == \
        "ValueError('did not fail on 3')"
    put(ts, t, INT)
    # examples of a subtype must pass the parent type
    err = bad_record(ts, meta("type", "int", "pct"), {**PERCENT, "bad": [-1, "x"]})
    assert repr(err) == "ValueError('not an int')"
    put(ts, meta("type", "doc"), {"info": "no checks, so no examples needed"})


def test_broken_code_and_schema_are_refused(ts: TypeSystem):
    err = bad_record(ts, meta("type", "x"), {"good": [1, 2], "bad": [3], "code": "if value:\nfoo("})
    assert isinstance(err, ValueError) and str(err).startswith(":n.type.x: cannot compile the code")
    err = bad_record(ts, meta("type", "y"),
                     {"good": [1, 2], "bad": [3], "schema": {"type": "nope"}})
    assert str(err).startswith(":n.type.y: bad schema:")
    assert repr(bad_record(ts, meta("type", "z"), 5)) == \
        "ValueError('A type record must be a map, not 5')"


def test_containers_cannot_hold_data(ts: TypeSystem):
    for kind in ("type", "match", "codec", "conv", "acl"):
        assert str(bad_record(ts, meta(kind), {"x": 1})) == "This node can't have data."
    assert str(bad_record(ts, meta("type"), None)) == "This node can't have data."
    put(ts, meta("match"), None)  # tolerated, as upstream does
    assert str(bad_record(ts, meta("conv", "grp"), 1)) == "This node can't have data."


def test_match_records(ts: TypeSystem):
    put(ts, meta("type", "int"), INT)
    assert repr(bad_record(ts, meta("match", "a"), {"type": P("nope")})) == \
        "ClientError('This type does not exist')"
    assert repr(bad_record(ts, meta("match", "a"), {"typ": P("int")})).startswith(
        "ValueError(\"A match record needs a 'type'")
    assert str(bad_record(ts, meta("match", "a"), {"type": 5})) == "The type must be a path, not 5"
    put(ts, meta("match", "a"), {"type": ["int"]})
    assert refused(ts, "a", "s") == "ValueError('not an int')"


def test_replicated_records_are_not_validated(ts: TypeSystem):
    entry = ts.store.follow(meta("type", "x"), create=True)
    ts.validator(entry, {"good": [], "code": "whatever"}, False)  # no error
    with pytest.raises(RuntimeError):
        ts.validator(entry, {"good": [], "code": "whatever"}, True)


def test_meta_position():
    s = Store("t")
    assert meta_position(s.follow(P("a.b"), create=True)) is None
    assert meta_position(s.follow((None, "type", "x"), create=True)) == ((), ("type", "x"))
    assert meta_position(s.follow(("a", None, "acl", "n"), create=True)) == (("a",), ("acl", "n"))


def test_sub_root_types(ts: TypeSystem):
    put(ts, ("t", None, "type", "int"), INT)
    put(ts, ("t", None, "match", "x"), {"type": P("int")})
    with pytest.raises(ClientError, match="not an int"):
        ts.check_value(("t", "x"), "s", base=("t",))
    ts.check_value(("x",), "s")  # the global meta tree has no such match


# --- user code that misbehaves ------------------------------------------------------------


def test_type_code_gets_entry_data_and_match(ts: TypeSystem):
    put(ts, meta("type", "t"), {
        "good": [1, 2], "bad": [0], "limit": 5,
        "code": "if entry is not None and value > data['limit']: raise ValueError(match.path)\n"
                "assert value"})
    put(ts, meta("match", "m", "+"), {"type": P("t")})
    entry = ts.store.follow(P("m.x"), create=True)
    ts.check_value(P("m.x"), 5, entry=entry)
    with pytest.raises(ClientError) as err:
        ts.check_value(P("m.x"), 6, entry=entry)
    assert err.value.args[0] == "ValueError((None, 'match', 'm', '+'))"


def test_code_that_loops_forever_is_stopped(ts: TypeSystem):
    put(ts, meta("type", "t"),
        {"good": [1, 2], "bad": [0], "code": "while value == 7: pass\nassert value"})
    put(ts, meta("match", "v"), {"type": P("t")})
    start = time.monotonic()
    msg = refused(ts, "v", 7)
    assert time.monotonic() - start < 2
    assert msg == "CodeTimeoutError('the type t did not finish within 0.3 seconds')"
    check(ts, "v", 1)  # a fresh worker carries on
    start = time.monotonic()
    err = bad_record(ts, meta("type", "u"), {"good": [1, 7], "bad": [0],
                                             "code": "while value == 7: pass\nassert value"})
    assert time.monotonic() - start < 2
    assert repr(err) == "CodeTimeoutError('checking :n.type.u did not finish within 0.3 seconds')"


def test_code_that_returns_garbage_is_ignored_for_types(ts: TypeSystem):
    put(ts, meta("type", "t"), {"good": [1, 2], "bad": [0],
                                "code": "assert value\nreturn object()"})
    put(ts, meta("match", "v"), {"type": P("t")})
    check(ts, "v", 3)  # a check's return value does not matter
    assert refused(ts, "v", 0) == "AssertionError()"


def test_code_that_raises_oddly(ts: TypeSystem):
    put(ts, meta("type", "t"), {"good": [1, 2], "bad": [0],
                                "code": "if value == 9: raise KeyboardInterrupt\n"
                                        "if value == 8: 1/0\nassert value"})
    put(ts, meta("match", "v"), {"type": P("t")})
    assert refused(ts, "v", 8) == "ZeroDivisionError('division by zero')"
    with pytest.raises(KeyboardInterrupt):  # not an Exception: not turned into an error reply
        check(ts, "v", 9)


# --- snippets and the runner --------------------------------------------------------------


def test_snippet_calling_convention():
    s = Snippet("return (a, b, c, x)", ("a", "b", "c"), "proc")
    assert s(1, c=3, x="glob") == (1, None, 3, "glob")
    indented = Snippet("  if a:\n    return 'yes'\n  return 'no'", ("a",), "ind")
    assert indented(1) == "yes" and indented(0) == "no"
    rec = Snippet("return 1 if a <= 1 else a * _proc(a - 1)", ("a",), "rec")
    assert rec(5) == 120
    assert Snippet("return len(v)", ("v",), "b")("abc") == 3  # builtins work
    with pytest.raises(ValueError, match=r"^p: cannot compile the code: .* \(line 2\)$"):
        Snippet("x = 1\nreturn )", ("v",), "p")
    with pytest.raises(TypeError, match="1 arguments expected, 2 given"):
        Snippet("return v", ("v",), "q")(1, 2)


def test_runner_bounds_runaway_threads():
    r = CodeRunner(timeout=0.1, max_runaway=2)
    sleepy = Snippet("import time\ntime.sleep(1.5)", (), "sleepy")
    try:
        for _ in range(2):
            with pytest.raises(CodeTimeoutError, match="did not finish within 0.1 seconds"):
                r.run(sleepy, what="sleepy")
        assert r.runaway == 2
        start = time.monotonic()
        with pytest.raises(CodeTimeoutError, match="2 timed-out snippets are still running"):
            r.run(Snippet("return 1", (), "one"))
        assert time.monotonic() - start < 0.05
        deadline = time.monotonic() + 5
        while r.runaway and time.monotonic() < deadline:
            time.sleep(0.05)
        assert r.run(Snippet("return 1", (), "one")) == 1
    finally:
        r.close()


# --- the CLI ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    with auth_server(init=123) as server:
        yield server.ports[0]


cli = client_cli


def test_cli_tutorial_types(port: int, tmp_path: Any):
    assert cli(port, "type", "set", "-g", "0", "-g", "-2", "-g", "123", "-b", "1.2",
               "-b", '"Hello"', "int",
               input='if int(value) != value: raise ValueError("not an integer")\n') == (0, "", "")
    assert cli(port, "type", "set", "-g", "0", "-g", "99", "-g", "100", "-b", "-1", "-b", "101",
               "int.percent",
               input='if not (0 <= value <= 100): raise ValueError("not a percentage")\n'
               ) == (0, "", "")
    assert cli(port, "type", "match", "-t", "int.percent", "stats.#.quota") == (0, "", "")
    assert cli(port, "data", "stats.foo.bar.quota", "set", "-e", ":", "123") == (
        1, "", "ClientError: ValueError('not a percentage')\n")
    assert cli(port, "data", "stats.foo.bar.quota", "set", "-v", ":", "123") == (
        1, "", "ClientError: ValueError('not an integer')\n")
    assert cli(port, "data", "stats.foo.bar.quota", "set", "-e", ":", "12") == (0, "", "")
    assert cli(port, "type", "match", "stats.#.quota", "-R") == (0, "int.percent\n", "")
    assert cli(port, "type", "match", "stats.#.quota") == (0, "type: !P int.percent\n", "")
    assert cli(port, "type", "match", ":") == (
        0, "stats:\n  '#':\n    quota:\n      _:\n        type: !P int.percent\n", "")
    script = tmp_path / "code.py"
    code, out, err = cli(port, "type", "get", "int.percent", "-s", str(script))
    assert (code, out, err) == (0, "good:\n- 0\n- 99\n- 100\nbad:\n- -1\n- 101\n", "")
    assert script.read_text() == \
        'if not (0 <= value <= 100): raise ValueError("not a percentage")\n'
    code, out, err = cli(port, "type", "list", "int")
    assert code == 0 and out.startswith("_:\n  good:\n") and "percent:\n  _:\n" in out
    assert cli(port, "type", "match", "-d", "stats.#.quota") == (0, "", "")
    assert cli(port, "data", "stats.foo.bar.quota", "set", "-e", ":", "123") == (0, "", "")


def test_cli_type_schema_and_errors(port: int, tmp_path: Any):
    data = tmp_path / "t.yaml"
    data.write_text("schema:\n  type: string\ngood: [a, b]\nbad: [1]\n")
    assert cli(port, "type", "set", "-d", str(data), "str") == (0, "", "")  # 15 #40
    code, out, err = cli(port, "type", "set", "-g", "1", "-b", "2", "one")
    assert code == 2 and "at least two good examples" in err
    code, out, err = cli(port, "type", "set", "-g", "1", "-g", "2", "-b", "2", "bad",
                         input="pass\n")
    assert (code, err) == (1, "ServerError: ValueError('did not fail on 2')\n")
    code, out, err = cli(port, "type", "set", "-g", "__import__('os')", "-g", "2", "-b", "x",
                         "evil")
    assert code == 2 and "Cannot evaluate" in err
    code, out, err = cli(port, "type", "get", "nope")
    assert (code, err) == (1, "Error: There is no type nope.\n")
