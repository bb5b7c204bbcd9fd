"""Auth methods (06): the ``-a`` syntax, password hashing, login throttling, logins and
user management against a server, and ``distkv client auth …``."""

from __future__ import annotations

import getpass
import hashlib
from collections.abc import Iterator
from typing import Any

import anyio
import nacl.secret
import pytest
from authsrv import FAST_HASHER, auth_server
from procs import run_cli

from distkv.acl import UserACL
from distkv.auth import gen_auth, loader, parse_auth_args
from distkv.auth.password import PasswordHasher, pack_password, unpack_password
from distkv.auth.server import LoginThrottle, ServerAuth, SessionAuth, auth_methods
from distkv.client import open_client
from distkv.core import Store
from distkv.exceptions import (
    ClientAuthError,
    ClientAuthMethodError,
    ClientAuthRequiredError,
    ClientChainError,
    ClientError,
    DistKVError,
    NoAuthError,
    NoAuthModuleError,
    ServerError,
)
from distkv.util.path import P

# --- the -a syntax ------------------------------------------------------------------------


def test_plain_specs():
    assert gen_auth("root").ident == "*"
    u = gen_auth("_test name=joe")
    assert (u._auth_method, u.ident) == ("_test", "joe")
    p = gen_auth("password name=joe password=12345")
    assert p.params == {"name": "joe", "password": "12345"}  # a string (15 #31)
    assert gen_auth(p) is p  # already built


def test_numbers_become_ints_unless_the_method_says_string():
    assert parse_auth_args(["n=12", "s=12", "x=1.5", "e=a=b"], strings={"s"}) == {
        "n": 12, "s": "12", "x": "1.5", "e": "a=b"}


def test_prompts_read_without_echo(monkeypatch: pytest.MonkeyPatch):
    asked = []

    def fake_getpass(prompt: str = "Password: ", stream: Any = None) -> str:
        asked.append(prompt)
        return "typed secret"

    monkeypatch.setattr(getpass, "getpass", fake_getpass)
    u = gen_auth("password name=joe password?=Code")
    assert u.params["password"] == "typed secret"
    gen_auth("password name=joe password?")
    assert asked == ["Code: ", "password? "]


def test_auth_files_and_maps(tmp_path: Any):
    f = tmp_path / "auth.yaml"
    f.write_text("type: password\nname: joe\npassword: '12345'\n")
    assert gen_auth(f"={f}").params == {"name": "joe", "password": "12345"}
    assert gen_auth({"type": "_test", "name": "amy"}).ident == "amy"


@pytest.mark.parametrize(
    ("spec", "text"),
    [
        ("_test", "Auth method '_test': 'name' is a required property"),
        ("_test name=9lives", "Auth method '_test': name: '9lives' does not match"),
        ("_test name=joe extra=1",
         "Additional properties are not allowed ('extra' was unexpected)"),
        ("password name=joe password=s3", "password: does not satisfy 'minLength' 5"),
        ("root name=x", "Auth method 'root': Additional properties are not allowed"),
        ("password name=joe hunter2secret", "Auth parameter 2: expected KEY=VALUE"),
    ],
)
def test_bad_specs_fail_before_connecting_and_hide_secrets(spec: str, text: str):
    with pytest.raises(ClientAuthError) as err:
        gen_auth(spec)
    assert text in str(err.value)
    assert "hunter2" not in str(err.value)


@pytest.mark.parametrize("method", ["nope", "base", "dh", "os.path", "a-b", ""])
def test_unknown_methods(method: str):
    with pytest.raises((NoAuthModuleError, ClientAuthError)):
        gen_auth(f"{method} x=1" if method else "")
    with pytest.raises(NoAuthModuleError):
        loader(method)


def test_short_password_error_does_not_show_it():
    with pytest.raises(ClientAuthError) as err:
        gen_auth("password name=joe password=abcd")
    assert "abcd" not in str(err.value)


# --- passwords ----------------------------------------------------------------------------


def test_password_box_round_trip():
    key = b"k" * 32
    blob = pack_password(key, "secret1")
    assert len(blob) == 72
    assert unpack_password(key, blob) == hashlib.sha256(b"secret1").digest()
    # what upstream's client sends: SecretBox(key).encrypt(sha256(password))
    upstream = nacl.secret.SecretBox(key).encrypt(hashlib.sha256(b"secret1").digest())
    assert unpack_password(key, bytes(upstream)) == hashlib.sha256(b"secret1").digest()
    with pytest.raises(ValueError, match="cannot be opened"):
        unpack_password(b"x" * 32, blob)
    with pytest.raises(ValueError, match="Diffie-Hellman"):
        unpack_password(None, blob)
    with pytest.raises(ValueError, match="as bytes"):
        unpack_password(key, "text")


def test_password_hashes_are_salted_and_slow_hashes():
    h = FAST_HASHER
    digest = hashlib.sha256(b"secret1").digest()
    a, b = h.hash(digest), h.hash(digest)
    assert a != b and a.startswith(b"$argon2id$") and digest not in a
    assert h.verify(a, digest) and h.verify(b, digest)
    assert not h.verify(a, hashlib.sha256(b"secret2").digest())
    assert h.verify(digest, digest)  # a raw digest stored by an upstream server
    assert not h.verify(hashlib.sha256(b"x").digest(), digest)
    assert not h.verify(None, digest) and not h.verify(b"$garbage", digest)
    assert PasswordHasher().hash(digest).startswith(b"$argon2id$v=19$m=19456,t=2,p=1$")


# --- throttling ---------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_throttle_delays_grow_and_are_bounded():
    clock = Clock()
    t = LoginThrottle(base=0.25, factor=2, max_delay=2, clock=clock)
    waits = []
    for _ in range(6):
        w = t.delay("joe")
        waits.append(w)
        clock.now += w
        t.failed("joe")
    assert waits == [0, 0.25, 0.5, 1, 2, 2]
    assert t.delay("amy") == 0  # other names are not affected
    assert t.delay("amy", conn_failures=3) == 1  # but a connection with failures is
    clock.now += 1.5
    assert t.delay("joe") == 0.5  # the time since the failure counts
    t.succeeded("joe")
    assert t.delay("joe") == 0 and t.failures("joe") == 0


def test_throttle_forgets_and_bounds_memory():
    clock = Clock()
    t = LoginThrottle(forget=60, max_names=3, clock=clock)
    for name in "abcde":
        t.failed(name)
    assert [t.failures(n) for n in "abcde"] == [0, 0, 1, 1, 1]
    clock.now += 61
    assert t.delay("e") == 0 and t.failures("e") == 0


def test_session_permissions():
    store = Store("t")
    st = SessionAuth(ServerAuth(store, hasher=FAST_HASHER), need_login=True)
    with pytest.raises(NoAuthError, match="You need to log in before 'get_value'"):
        st.require_login("get_value")
    with pytest.raises(ClientError, match="Not allowed to change auth data"):
        st.require_auth_write()  # not before the login
    st.need_login = False
    st.require_auth_write()  # the built-in root user when no login is needed
    st.acl = UserACL(store, "foo")
    with pytest.raises(ClientError, match="Not allowed to read auth data"):
        st.require_auth_read()
    assert auth_methods(store) is None
    store.local_change(store.follow((None, "auth"), create=True), {"current": "nope"})
    store.follow((None, "auth", "_test"), create=True)
    assert auth_methods(store) == [None, "_test"]


# --- against a server ---------------------------------------------------------------------


class Waits:
    """The server's login sleeps, on a fake clock."""

    def __init__(self) -> None:
        self.clock = Clock()
        self.waits: list[float] = []

    async def sleep(self, t: float) -> None:
        self.waits.append(round(t, 3))
        self.clock.now += t


@pytest.fixture(scope="module")
def server() -> Iterator[Any]:
    with auth_server(init=123) as srv:
        yield srv


def connect(server: Any, auth: Any = None) -> Any:
    conn: dict = {"host": "127.0.0.1", "port": server.ports[0]}
    if auth is not None:
        conn["auth"] = auth
    return open_client(connect=conn)


async def setup_users(server: Any) -> None:
    async with connect(server) as c:
        for method, params in (("password", {"name": "joe", "password": "secret1"}),
                               ("_test", {"name": "std"}), ("_test", {"name": "aclix"}),
                               ("root", {})):
            maker = loader(method, make=True).build(params)
            maker.chain = None
            res = await maker.send(c)
            assert res["changed"] is True
        await c._request("set_internal", path=P("auth._test.user.aclix.acl"), value={"key": "foo"})
        await c._request("set_internal", path=P("acl.foo.one"), value="rxnca")
        assert (await c._request("set_auth_typ", typ="password"))["changed"] is True


def run(fn: Any, *args: Any) -> Any:
    return anyio.run(fn, *args)


def test_server_logins(server: Any):
    async def main() -> None:
        await setup_users(server)
        with pytest.raises(ClientAuthRequiredError, match="You need to log in using:"):
            async with connect(server):
                pass
        with pytest.raises(ClientAuthMethodError):
            async with connect(server, "_test name=std"):
                pass
        async with connect(server, "password name=joe password=secret1") as c:
            assert (await c.get(()))["value"] == 123
            assert (await c._request("test_acl", path=P("a.b")))["access"] is True
        texts = []
        for spec in ("password name=joe password=wrong1", "password name=nobody password=wrong1"):
            with pytest.raises(ServerError) as err:
                async with connect(server, spec):
                    pass
            texts.append(err.value.args[0].replace("nobody", "joe"))
            assert "wrong1" not in err.value.args[0]
        # an unknown user looks exactly like a wrong password
        assert texts == ["AuthFailedError('Password hashes do not match', 'joe')"] * 2
        stored = server.store.follow((None, "auth", "password", "user", "joe")).value
        assert stored["password"].startswith(b"$argon2id$")

    run(main)


def test_failed_logins_are_slowed(server: Any):
    fake = Waits()
    server.auth.sleep = fake.sleep
    server.auth.throttle = LoginThrottle(base=0.25, max_delay=2, clock=fake.clock)

    async def attempt(spec: str) -> bool:
        try:
            async with connect(server, spec):
                return True
        except ServerError:
            return False

    async def main() -> None:
        for _ in range(5):
            assert not await attempt("password name=joe password=wrong1")
        assert fake.waits == [0.25, 0.5, 1, 2]
        assert await attempt("password name=joe password=secret1")  # waits 2 s first
        assert fake.waits[-1] == 2
        fake.waits.clear()
        assert not await attempt("password name=joe password=wrong1")
        assert fake.waits == []  # a success clears the name's record
        # one connection trying several names is slowed, too
        async with connect(server, "password name=joe password=secret1") as c:
            fake.waits.clear()
            for name in ("ann", "bob", "cy", "dan"):
                with pytest.raises(ServerError):
                    await gen_auth(f"password name={name} password=wrong1").auth(c)
            assert fake.waits == [0.25, 0.5, 1]

    try:
        run(main)
    finally:
        server.auth.sleep = anyio.sleep
        server.auth.throttle = LoginThrottle(base=0.01, max_delay=0.05)


def test_other_methods_and_restricted_users(server: Any):
    async def main() -> None:
        async with connect(server, "password name=joe password=secret1") as c:
            await c._request("set_auth_typ", typ="_test")
        async with connect(server, "_test name=std") as c:
            assert (await c.get(()))["value"] == 123
            res = await c._request("auth_get", typ="_test", ident="std")
            assert (res["ident"], res["name"]) == ("std", "std")
            # credentials of another method can be checked; identity stays
            await gen_auth("password name=joe password=secret1").auth(c)
            await gen_auth("root").auth(c)
        with pytest.raises(ServerError, match=r"AuthFailedError\('Unknown user', 'ghost'\)"):
            async with connect(server, "_test name=ghost"):
                pass
        async with connect(server, "_test name=aclix") as c:
            assert (await c._request("test_acl", path=P("one")))["access"] == "rxnca"
            assert (await c._request("test_acl", path=P("two")))["access"] is False
            for action, kw in (("auth_list", {"ident": "std"}), ("auth_get", {"ident": "std"}),
                               ("auth_set", {"ident": "x"}), ("set_auth_typ", {})):
                with pytest.raises(DistKVError, match="Not allowed"):
                    await c._request(action, typ="_test", **kw)
        async with connect(server, "_test name=std") as c:
            await c._request("set_auth_typ", typ="password")

    run(main)


def test_user_management(server: Any):
    async def main() -> None:
        async with connect(server, "password name=joe password=secret1") as c:
            cls = loader("password", make=True)
            u = await cls.recv(c, "joe")
            assert u.export() == {"name": "joe"} and u.chain["node"] == "test_0"
            idents = [r["ident"] async for r in await c._request(
                "auth_list", iter=True, typ="password", kind="user")]
            assert idents == ["joe"]
            one = await c._request("auth_list", typ="password", ident="joe", nchain=1)
            assert set(one) == {"name", "typ", "kind", "ident", "chain", "seq", "tock"}
            # a change without a new password keeps the old one
            u2 = cls.build(u.export(), initial=False)
            u2.chain = u.chain
            await u2.send(c)
            with pytest.raises(ClientAuthError, match="'password' is a required property"):
                cls.build({"name": "new"})
            with pytest.raises(ClientChainError,
                               match="Entry already exists at :n.auth.password.user.joe"):
                fresh = cls.build({"name": "joe", "password": "other1"})
                fresh.chain = None  # "must be new": joe exists
                await fresh.send(c)
            with pytest.raises(DistKVError, match="You didn't configure this method yet: nope"):
                await c._request("set_auth_typ", typ="nope")
            server.store.follow((None, "auth", "base", "user", "x"), create=True).value = {}
            with pytest.raises(ServerError, match=r"NoAuthModuleError\('base'\)"):
                await c._request("set_auth_typ", typ="base")
            with pytest.raises(DistKVError, match="Can't call dh twice"):
                await c._request("diffie_hellman", pubkey=b"\x05", length=1024)
            with pytest.raises(DistKVError, match="There is no user 'ghost'"):
                await c._request("auth_get", typ="password", ident="ghost")
        async with connect(server, "password name=joe password=secret1"):
            pass  # still the old password

    run(main)


def test_login_without_key_exchange(server: Any):
    async def main() -> None:
        async with connect(server, "password name=joe password=secret1") as c:
            await c._request("set_auth_typ", typ=None)
        async with connect(server) as c:
            blob = pack_password(b"k" * 32, "secret1")
            with pytest.raises(ServerError, match="Password hashes do not match"):
                async for _ in await c._request("auth", iter=True, typ="password",
                                                ident="joe", password=blob):
                    pass
            with pytest.raises(ServerError, match="public key is not valid"):
                await c._request("diffie_hellman", pubkey=b"\x01", length=1024)
            with pytest.raises(DistKVError, match="'length' must be between 1 and 4096"):
                await c._request("diffie_hellman", pubkey=b"\x05", length=100000)
            await c._request("set_auth_typ", typ="password")

    run(main)


# --- the CLI ------------------------------------------------------------------------------


def test_cli_auth_session():
    with auth_server(init="Root") as srv:
        port = srv.ports[0]

        def cli(*args: str, auth: str | None = None) -> tuple[int, str, str]:
            pre = ("-a", auth) if auth else ()
            res = run_cli(port, "client", *pre, *args)
            return res.returncode, res.stdout, res.stderr

        code, out, err = cli("auth", "user", "list")
        assert (code, err) == (2, "Usage: distkv client auth user list [OPTIONS]\nTry "
                                  "'distkv client auth user list --help' for help.\n\n"
                                  "Error: You need to set the auth method (-m METHOD).\n")
        assert cli("auth", "-m", "password", "user", "add", "name=joe",
                   "password=test123") == (0, "joe\n", "")
        code, out, err = cli("auth", "-m", "password", "user", "add", "name=amy")
        assert code == 1 and "'password' is a required property" in err
        assert cli("auth", "list") == (0, "password\n", "")
        assert cli("auth", "user", "list") == (0, "joe\n", "")  # the only method
        assert cli("auth", "user", "list", "-v") == (
            0, "name: joe\ntyp: password\nkind: user\nident: joe\n", "")
        assert cli("auth", "user", "get", "joe") == (0, "name: joe\n", "")
        assert cli("auth", "init") == (0, "Authorization switched to password\n", "")

        assert cli("data", ":") == (1, "", "ClientAuthRequiredError: You need to log in "
                                           "using: password\n")
        joe = "password name=joe password=test123"
        assert cli("data", ":", auth=joe) == (0, "'Root'\n", "")
        code, out, err = cli("data", ":", auth="password name=joe password=wrong99")
        assert (code, err) == (
            1, "ServerError: AuthFailedError('Password hashes do not match', 'joe')\n")
        code, out, err = cli("auth", "init", auth=joe)
        assert code == 2 and "already set up; use '-s'" in err

        assert cli("auth", "user", "mod", "joe", "password=new4567", auth=joe) == (0, "joe\n", "")
        assert cli("data", ":", auth="password name=joe password=new4567")[0] == 0
        joe = "password name=joe password=new4567"
        assert cli("auth", "user", "auth", "-a", joe, auth=joe) == (0, "OK.\n", "")

        assert cli("acl", "set", "ro", "pub", "-a", "r", auth=joe)[0] == 0
        assert cli("auth", "-m", "_test", "user", "add", "name=reader", auth=joe) == (
            0, "reader\n", "")
        assert cli("auth", "-m", "_test", "user", "param", "reader", "acl", "ro",
                   auth=joe) == (0, "reader acl ro\n", "")
        assert srv.store.follow(P(":n.auth._test.user.reader.acl")).value == {"key": "ro"}
        code, out, err = cli("auth", "-m", "_test", "user", "param", "nobody", "acl", "ro",
                             auth=joe)
        assert code == 2 and "There is no _test user 'nobody'" in err
        assert cli("auth", "-m", "_test", "user", "add", "name=admin", auth=joe)[0] == 0
        assert cli("auth", "-m", "_test", "init", "-s", auth=joe) == (
            0, "Authorization switched to _test\n", "")
        reader, admin = "_test name=reader", "_test name=admin"
        # the meta tree is closed to users with an ACL: reading the method fails already
        code, out, err = cli("auth", "user", "list", auth=reader)
        assert (code, err) == (1, "ACLError: ACL ro has no entry for :n.auth, needed: r\n")
        code, out, err = cli("auth", "-m", "_test", "user", "list", auth=reader)
        assert (code, err) == (1, "ClientError: Not allowed to read auth data\n")
        assert cli("acl", "test", "pub", auth=reader) == (0, "-\n", "")  # 'r' only, no 'a'
        assert cli("acl", "test", "-a", "ro", "-m", "r", "pub", auth=admin) == (0, "r\n", "")
        assert cli("auth", "-m", "-", "init", "-s", auth=reader) == (
            1, "", "ACLError: ACL ro has no entry for :n.auth, needed: r\n")
        code, out, err = cli("data", ":", auth=joe)
        assert (code, err) == (1, "ClientAuthMethodError: You cannot use 'password' auth "
                                  "('_test', 'password')\n")
        assert cli("auth", "user", "list", auth=admin) == (0, "reader\nadmin\n", "")
        assert cli("auth", "-m", "-", "init", "-s", auth=admin) == (
            0, "Authorization turned off.\n", "")
        assert cli("data", ":") == (0, "'Root'\n", "")
