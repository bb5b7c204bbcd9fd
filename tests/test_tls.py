"""TLS for client connections: a real server with ``server.bind_default.ssl`` and clients
with ``connect.ssl``, using a throwaway CA made with the ``openssl`` command."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from procs import ServerProc

from distkv.client import open_client
from distkv.exceptions import ServerConnectionError

OPENSSL = "/usr/bin/openssl"


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run([OPENSSL, *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_ca(d: Path, name: str) -> None:
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2",
            "-subj", f"/CN=distkv test {name}",
            # the extensions a real CA has (Python >= 3.13 verifies strictly)
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            "-addext", "subjectKeyIdentifier=hash", cwd=d)


def make_cert(d: Path, name: str, ca: str, san: str) -> None:
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=d)
    (d / f"{name}.ext").write_text(
        f"subjectAltName={san}\n"
        "basicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=serverAuth,clientAuth\n"
        "authorityKeyIdentifier=keyid,issuer\n"
        "subjectKeyIdentifier=hash\n"
    )
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
            "-CAcreateserial", "-out", f"{name}.pem", "-days", "2",
            "-extfile", f"{name}.ext", cwd=d)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("pki")
    make_ca(d, "ca")
    make_ca(d, "other")  # a CA that signed nothing we use
    make_cert(d, "server", "ca", "IP:127.0.0.1,DNS:localhost")
    make_cert(d, "client", "ca", "DNS:client")
    return d


@pytest.fixture(scope="module")
def tls_server(pki: Path) -> Iterator[ServerProc]:
    srv = ServerProc(["-I", "secure", "test1"], global_args=[
        "-C", f"server.bind_default.ssl.cert={str(pki / 'server.pem')!r}",
        "-C", f"server.bind_default.ssl.key={str(pki / 'server.key')!r}",
    ])
    with srv:
        yield srv


def get_root(port: int, ssl: object, host: str = "127.0.0.1") -> object:
    async def main() -> object:
        async with open_client(connect={"host": host, "port": port, "ssl": ssl,
                                        "init_timeout": 5}) as c:
            return (await c.get(())).value

    return anyio.run(main)


def test_client_verifies_the_server_with_a_ca(tls_server: ServerProc, pki: Path):
    assert get_root(tls_server.port, {"ca": str(pki / "ca.pem")}) == "secure"
    assert get_root(tls_server.port, {"ca": str(pki / "ca.pem")}, host="localhost") == "secure"


def test_client_certificate_is_sent(tls_server: ServerProc, pki: Path):
    ssl = {"ca": str(pki / "ca.pem"), "cert": str(pki / "client.pem"),
           "key": str(pki / "client.key")}
    assert get_root(tls_server.port, ssl) == "secure"


def test_wrong_ca_is_refused(tls_server: ServerProc, pki: Path):
    with pytest.raises(ServerConnectionError, match="TLS failed: CERTIFICATE_VERIFY_FAILED"):
        get_root(tls_server.port, {"ca": str(pki / "other.pem")})
    # the system CAs don't know our throwaway CA either
    with pytest.raises(ServerConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
        get_root(tls_server.port, True)


def test_plain_client_against_tls_server_fails_cleanly(tls_server: ServerProc, pki: Path):
    async def main() -> None:
        async with open_client(connect={"host": "127.0.0.1", "port": tls_server.port,
                                        "init_timeout": 1}):
            pass

    with pytest.raises(TimeoutError, match="took more than 1 seconds"):
        anyio.run(main)  # the server waits for a TLS hello that never comes
    assert get_root(tls_server.port, {"ca": str(pki / "ca.pem")}) == "secure"  # unharmed


def test_bad_client_ssl_settings(tls_server: ServerProc, pki: Path):
    with pytest.raises(ServerConnectionError, match="connect.ssl: .*No such file"):
        get_root(tls_server.port, {"ca": str(pki / "missing.pem")})
    with pytest.raises(ServerConnectionError, match="unknown keys \\['cafile'\\]"):
        get_root(tls_server.port, {"cafile": "x"})


def test_cli_over_tls(tls_server: ServerProc, pki: Path):
    ca = str(pki / "ca.pem")
    res = tls_server.client("data", ":", global_args=["-C", f"connect.ssl.ca={ca!r}"])
    assert (res.returncode, res.stdout, res.stderr) == (0, "'secure'\n", "")
