"""Codecs and converters (08 §4-5): the tutorial's floatval example, record validation,
misbehaving codecs, users' converters; ``distkv client codec …``."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
from authsrv import auth_server, client_cli

from distkv.client import open_client
from distkv.codec import packb
from distkv.core import Store
from distkv.exceptions import ClientError, ServerError
from distkv.snippet import CodeRunner, CodeTimeoutError
from distkv.types import TypeSystem, converter_for_user
from distkv.util import NotGiven
from distkv.util.path import P

FLOAT_STR = {"encode": "return str(value)", "decode": "return float(value)",
             "in": [("12.5", 12.5)], "out": [(13.25, "13.25")]}
INT_CODEC = {"decode": "assert isinstance(value,str); return int(value)",
             "encode": "return str(value)", "in": [("1", 1), ("2", 2)], "out": [(1, "1")]}


@pytest.fixture
def ts() -> Iterator[TypeSystem]:
    store = Store("test")
    types = TypeSystem(store, CodeRunner(timeout=0.3))
    store.validators.append(types.validator)
    yield types
    types.runner.close()


def put(ts: TypeSystem, path: tuple, value: Any) -> None:
    ts.store.local_change(ts.store.follow(path, create=True), value)


def bad_record(ts: TypeSystem, path: tuple, value: Any) -> BaseException:
    with pytest.raises(Exception) as err:
        put(ts, path, value)
    return err.value


def test_floatval_tutorial(ts: TypeSystem):
    put(ts, (None, "codec", "float", "str"), FLOAT_STR)
    put(ts, (None, "conv", "floatval", "monitor", "#", "value"), {"codec": P("float.str")})
    conv = ts.converter("floatval")
    # joe writes strings, the store holds floats; other entries are left alone
    assert conv.decode(P("monitor.a.b.c.value"), "99.5") == 99.5
    assert conv.decode(P("monitor.a.b.c.thing"), "12.3") == "12.3"
    assert conv.encode(P("monitor.a.b.c.value"), 99.5) == "99.5"
    assert conv.encode(P("monitor.a.b.c.thing"), "12.3") == "12.3"
    assert conv.decode(P("monitor.value"), "1") == "1"  # '#' needs at least one level
    assert ts.converter("other").encode(P("monitor.a.value"), 1.5) == 1.5


def test_int_codec_example(ts: TypeSystem):
    """08 §5: user 'con' writes inty.ten = "10", stored as 10; writing 11 fails."""
    put(ts, (None, "codec", "int"), INT_CODEC)
    put(ts, (None, "conv", "foo", "inty", "#"), {"codec": ["int"]})
    conv = ts.converter("foo")
    assert conv.decode(P("inty.ten"), "10") == 10
    assert conv.encode(P("inty.ten"), 10) == "10"
    with pytest.raises(AssertionError):
        conv.decode(P("inty.eleven"), 11)
    assert conv.decode(("inty",), 11) == 11  # not matched


def test_a_type_error_on_none_passes_none_through(ts: TypeSystem):
    put(ts, (None, "codec", "n"), {"encode": "return len(value)", "decode": None,
                                    "out": [("ab", 2)]})
    put(ts, (None, "conv", "g", "#"), {"codec": "n"})
    conv = ts.converter("g")
    assert conv.encode(("x",), None) is None  # len(None): TypeError, swallowed
    assert conv.decode(("x",), "abc") == "abc"  # no decoder
    with pytest.raises(TypeError):
        conv.encode(("x",), 5)  # only for None
    put(ts, (None, "codec", "n"), {"encode": "return value.upper()", "decode": None,
                                    "out": [("a", "A")]})
    with pytest.raises(AttributeError):  # other errors are not
        conv.encode(("x",), None)


def test_codec_records_are_validated(ts: TypeSystem):
    c = (None, "codec", "c")
    assert repr(bad_record(ts, c, {**FLOAT_STR, "in": []})) == \
        "RuntimeError('Must have tests for decoding')"
    assert repr(bad_record(ts, c, {**FLOAT_STR, "out": None})) == \
        "RuntimeError('Must have tests for encoding')"
    assert str(bad_record(ts, c, {**FLOAT_STR, "in": [("x", 1.0)]})) == \
        "failed decoder at :n.codec.c on 'x' with " \
        "ValueError(\"could not convert string to float: 'x'\")"
    assert str(bad_record(ts, c, {**FLOAT_STR, "out": [(1.5, "2")]})) == \
        "Encoding at :n.codec.c: 1.5 got '1.5', not '2'"
    assert str(bad_record(ts, c, {"encode": None})).startswith(
        "A codec record needs the keys 'encode' and 'decode'")
    assert str(bad_record(ts, c, {**FLOAT_STR, "in": ["x"]})) == \
        "Decoding tests must be pairs, not 'x'"
    put(ts, c, {"encode": None, "decode": None})  # a codec that does nothing
    put(ts, c, NotGiven)  # deleting works (15 #7)
    # lists and tuples are alike (msgpack returns tuples)
    put(ts, c, {"encode": "return list(value)", "decode": "return tuple(value)",
                "in": [([1, 2], (1, 2))], "out": [((1,), [1])]})


def test_conv_records_are_validated(ts: TypeSystem, caplog: pytest.LogCaptureFixture):
    g = (None, "conv", "g", "x")
    assert str(bad_record(ts, g, {"codex": "a"})).startswith("A converter record needs a 'codec'")
    assert str(bad_record(ts, g, {"codec": 3})) == "The codec must be a path, not 3"
    put(ts, g, {"codec": "not.yet"})
    assert "Codec not.yet does not exist (yet?)" in caplog.text
    with pytest.raises(ClientError, match="The codec not.yet does not exist"):
        ts.converter("g").encode(("x",), 1)


def test_misbehaving_codecs(ts: TypeSystem):
    put(ts, (None, "codec", "loop"), {"encode": "while value == 7: pass\nreturn value",
                                      "decode": None, "out": [(1, 1)]})
    put(ts, (None, "codec", "junk"), {"encode": "return object() if value == 7 else value",
                                      "decode": None, "out": [(1, 1)]})
    put(ts, (None, "conv", "g", "loop"), {"codec": "loop"})
    put(ts, (None, "conv", "g", "junk"), {"codec": "junk"})
    conv = ts.converter("g")
    start = time.monotonic()
    with pytest.raises(CodeTimeoutError,
                       match="the encoder :n.codec.loop did not finish within 0.3 seconds"):
        conv.encode(("loop",), 7)
    assert time.monotonic() - start < 2
    assert conv.encode(("loop",), 1) == 1
    with pytest.raises(ValueError, match="The codec :n.codec.junk returned a object, "
                                         "which can't be stored"):
        conv.encode(("junk",), 7)
    err = bad_record(ts, (None, "codec", "bad"), {"encode": "return {1, 2}", "decode": None,
                                                  "out": [(1, 1)]})
    assert "returned a set, which can't be stored" in str(err)


def test_codec_gets_entry_data_and_conv(ts: TypeSystem):
    put(ts, (None, "codec", "c"), {
        "encode": "return (value, data['extra'], conv and conv.path, entry is None)",
        "decode": None, "extra": "X", "out": [(1, (1, "X", None, True))]})
    put(ts, (None, "conv", "g", "+"), {"codec": "c"})
    assert ts.converter("g").encode(("a",), 5) == (5, "X", (None, "conv", "g", "+"), True)


def test_users_converter(ts: TypeSystem):
    user = (None, "auth", "_test", "user", "con")
    put(ts, user, {})
    assert converter_for_user(ts, user) is None
    put(ts, (*user, "conv"), {"key": "foo"})
    conv = converter_for_user(ts, user)
    assert conv is not None and conv.name == "foo"
    put(ts, (*user, "conv"), {"key": 5})
    assert converter_for_user(ts, user) is None


# --- the CLI ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    with auth_server(init=123) as server:
        yield server.ports[0]


cli = client_cli


def test_cli_floatval_tutorial(port: int, tmp_path: Any):
    assert cli(port, "codec", "set", "-i", '"12.5"', "12.5", "-o", "13.25", '"13.25"',
               "float.str", input="return str(value)\n\nreturn float(value)\n") == (0, "", "")
    assert cli(port, "codec", "convert", "-c", "float.str", "floatval",
               "monitor.#.value") == (0, "floatval monitor.#.value: float.str\n", "")
    assert cli(port, "codec", "convert", "floatval", "monitor.#.value") == (0, "float.str\n", "")
    assert cli(port, "codec", "convert", "-l", "floatval") == (
        0, "monitor.#.value : float.str\n", "")
    assert cli(port, "codec", "convert", "-l", "-") == (0, "floatval\n", "")
    assert cli(port, "codec", "list", ":") == (0, "float str\n", "")
    enc, dec = tmp_path / "enc.py", tmp_path / "dec.py"
    assert cli(port, "codec", "get", "float.str", "-e", str(enc), "-d", str(dec)) == (
        0, "in:\n- - '12.5'\n  - 12.5\nout:\n- - 13.25\n  - '13.25'\n", "")
    assert (enc.read_text(), dec.read_text()) == ("return str(value)\n", "return float(value)\n")
    assert cli(port, "codec", "convert", "-d", "floatval", "monitor.#.value") == (
        0, "floatval monitor.#.value: removed\n", "")
    code, out, err = cli(port, "codec", "convert", "floatval", "monitor.#.value")
    assert (code, err) == (1, "Error: Group floatval converts nothing at monitor.#.value.\n")


def test_cli_codec_errors(port: int):
    code, out, err = cli(port, "codec", "set", "-o", "1", "'1'", "c1",
                         input="return str(value)\n\nreturn int(value)\n")
    assert code == 2 and "The decoder needs examples (-i)" in err
    code, out, err = cli(port, "codec", "set", "-i", "'x'", "1", "-o", "1", "'1'", "c1",
                         input="return str(value)\n\nreturn int(value)\n")
    assert code == 1
    inner = "ValueError(\"invalid literal for int() with base 10: 'x'\")"
    text = f"failed decoder at :n.codec.c1 on 'x' with {inner}"
    assert err == f"ServerError: {ValueError(text)!r}\n"


# --- a user's converter on writes that are not set_value -------------------------------------

ROOT = ("-a", "_test name=root")
CON = ("-a", "_test name=con")


@pytest.fixture
def con_port() -> Iterator[int]:
    """A server whose user ``con`` has converter group ``foo`` (``inty.#`` -> codec ``int``)."""
    with auth_server(init=123) as server:
        port = server.ports[0]
        for name in ("root", "con"):
            assert cli(port, "auth", "-m", "_test", "user", "add", f"name={name}")[0] == 0
        assert cli(port, "auth", "-m", "_test", "init")[0] == 0
        assert cli(port, *ROOT, "codec", "set", "-i", '"1"', "1", "-o", "1", '"1"', "int",
                   input="return str(value)\n\n"
                         "assert isinstance(value, str)\nreturn int(value)\n") == (0, "", "")
        assert cli(port, *ROOT, "codec", "convert", "-c", "int", "foo", "inty.#")[0] == 0
        assert cli(port, *ROOT, "auth", "user", "param", "con", "conv", "foo")[0] == 0
        yield port


def test_cli_update_decodes_like_set(con_port: int, tmp_path: Any):
    fn = tmp_path / "recs.mp"
    fn.write_bytes(packb({"path": P("ten"), "value": "10"})
                   + packb({"path": P("ten.deep"), "value": "12"}))
    assert cli(con_port, *CON, "data", "inty", "update", "-i", str(fn)) == (0, "", "")
    assert cli(con_port, *ROOT, "data", "inty", "get", "-rd_") == (
        0, "ten:\n  _: 10\n  deep:\n    _: 12\n", "")
    assert cli(con_port, *CON, "data", "inty.ten") == (0, "'10'\n", "")
    # the stored form, as a save file holds it, is not what con writes
    fn.write_bytes(packb({"path": P("eleven"), "value": 11}))
    assert cli(con_port, *CON, "data", "inty", "update", "-i", str(fn)) == (
        1, "", "ServerError: AssertionError()\n")
    assert cli(con_port, *ROOT, "data", "inty.eleven") == (0, "", "No data at inty.eleven\n")


def test_update_action_decodes_like_set(con_port: int):
    async def main() -> None:
        cfg = {"host": "127.0.0.1", "port": con_port}
        async with open_client(connect={**cfg, "auth": "_test name=con"}) as con:
            tock = await con.get_tock()
            chain = {"node": "elsewhere", "tick": 1, "prev": None}
            await con._request("update", path=P("inty.twelve"), value="12", chain=chain,
                               tock=tock)
            assert (await con.get(P("inty.twelve"))).value == "12"
            with pytest.raises(ServerError, match=r"^AssertionError\(\)$"):
                await con._request("update", path=P("inty.thirteen"), value=13,
                                   chain={**chain, "tick": 2}, tock=tock + 1)
            # outside the converter's paths values are stored as given
            await con._request("update", path=P("plain"), value="12",
                               chain={**chain, "tick": 3}, tock=tock + 2)
        async with open_client(connect={**cfg, "auth": "_test name=root"}) as root:
            assert (await root.get(P("inty.twelve"))).value == 12
            assert "value" not in await root.get(P("inty.thirteen"))
            assert (await root.get(P("plain"))).value == "12"

    anyio.run(main)
