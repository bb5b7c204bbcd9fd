"""A raw-socket load generator that speaks distkv's client protocol.

It talks msgpack over TCP directly (no client library), so the same code
drives upstream distkv 0.65.0, our server and the storage-less bound server
(:mod:`bound_server`) alike. Everything here is blocking and single-threaded:
one socket per role, bounded by socket timeouts and deadlines.

Measurements:

* :func:`sequential` / :func:`pipelined` — request rates (one in flight, or
  a window of outstanding requests);
* :func:`fill` — write N small entries as fast as the server takes them;
* :func:`get_tree` — time until a whole subtree has arrived;
* :func:`watch_latency` — write-send to notification-receive, per write.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import msgpack

__all__ = [
    "BenchError",
    "Conn",
    "Path",
    "RateResult",
    "fill",
    "fill_key",
    "get_tree",
    "get_value_req",
    "pipelined",
    "sequential",
    "set_value_req",
    "watch_latency",
]

PATH_EXT = 3
BIGINT_EXT = 2
CLIENT_QLEN = 10  # what upstream's client answers to the greeting


class BenchError(RuntimeError):
    """The server misbehaved (error reply, lost connection, wrong data)."""


class Path(tuple):
    """A path element tuple that packs as msgpack ext type 3."""

    __slots__ = ()


def _pack_default(obj: object) -> object:
    # strict_types: subclasses land here, so that a Path is not packed as a plain array.
    if type(obj) is Path:
        return msgpack.ExtType(PATH_EXT, b"".join(_elem_packer.pack(e) for e in obj))
    if isinstance(obj, tuple):
        return list(obj)
    if isinstance(obj, dict):
        return dict(obj)
    if isinstance(obj, int):
        return msgpack.ExtType(BIGINT_EXT, obj.to_bytes((obj.bit_length() + 7) // 8, "big"))
    raise TypeError(f"cannot pack {obj!r}")


def _ext_hook(code: int, data: bytes) -> object:
    if code == PATH_EXT:
        up = msgpack.Unpacker(raw=False, use_list=False, strict_map_key=False, ext_hook=_ext_hook)
        up.feed(data)
        return tuple(up)
    if code == BIGINT_EXT:
        return int.from_bytes(data, "big")
    return msgpack.ExtType(code, data)


_packer = msgpack.Packer(use_bin_type=True, strict_types=True, default=_pack_default)
# A Packer is not re-entrant: path elements are packed by a second one.
_elem_packer = msgpack.Packer(use_bin_type=True, strict_types=True, default=_pack_default)
packb = _packer.pack


def fill_key(i: int) -> Path:
    """The path of the i-th entry written by :func:`fill`."""
    return Path(("fill", f"k{i}"))


class Conn:
    """One client connection: greeting read, window negotiated like upstream's client."""

    __slots__ = ("sock", "unpacker", "seq", "greeting", "window")

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 30.0,
                 negotiate: bool = True):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.unpacker = msgpack.Unpacker(raw=False, use_list=False, strict_map_key=False,
                                         ext_hook=_ext_hook, max_buffer_size=64 << 20)
        self.seq = 0
        self.greeting = self.recv()
        if self.greeting.get("seq") != 0:
            raise BenchError(f"expected a greeting, got {self.greeting!r}")
        self.window = 0
        qlen = self.greeting.get("qlen")
        if negotiate and qlen:
            self.window = min(qlen, CLIENT_QLEN)
            self.sock.sendall(packb({"seq": 0, "qlen": self.window}))

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def send(self, msg: dict) -> int:
        """Send one request (``seq`` is assigned here); return its seq."""
        seq = msg["seq"] = self.next_seq()
        self.sock.sendall(packb(msg))
        return seq

    def messages(self) -> Iterator[dict]:
        """Yield incoming messages forever (until the peer closes or times out)."""
        while True:
            yield from self.unpacker
            data = self.sock.recv(1 << 18)
            if not data:
                raise BenchError("server closed the connection")
            self.unpacker.feed(data)

    def recv(self) -> dict:
        return next(self.messages())

    def request(self, action: str, **fields: object) -> dict:
        """One single-reply request; returns the reply, raises on an error reply."""
        seq = self.send({"action": action, **fields})
        for msg in self.messages():
            if msg.get("seq") == seq:
                if "error" in msg:
                    raise BenchError(f"{action}: {msg['error']}")
                return msg
            if "seq" not in msg and "error" in msg:
                raise BenchError(f"{action}: fatal {msg['error']}")
        raise AssertionError("unreachable")

    def ack(self, seq: int, wseq: int, last: int) -> int:
        """Acknowledge stream messages as upstream's client does; returns the new last ack."""
        if self.window and wseq - last > self.window // 3:
            self.sock.sendall(packb({"seq": seq, "state": "ack", "ack": wseq}))
            return wseq
        return last

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> Conn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# Request builders: (index, seq) -> encoded request.
RequestMaker = Callable[[int, int], bytes]


def set_value_req(prefix: tuple, modulo: int | None = None) -> RequestMaker:
    """set_value of ``prefix + ("k<i>",)`` to ``i`` (keys cycle through ``modulo``)."""
    def make(i: int, seq: int) -> bytes:
        k = i % modulo if modulo else i
        return packb({"action": "set_value", "path": Path((*prefix, f"k{k}")), "value": i,
                      "nchain": 0, "seq": seq})
    return make


def get_value_req(prefix: tuple, modulo: int) -> RequestMaker:
    """get_value of ``prefix + ("k<i % modulo>",)``."""
    def make(i: int, seq: int) -> bytes:
        return packb({"action": "get_value", "path": Path((*prefix, f"k{i % modulo}")),
                      "nchain": 0, "seq": seq})
    return make


@dataclass(slots=True)
class RateResult:
    ops: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.ops / self.seconds if self.seconds else 0.0


def _check(msg: dict) -> None:
    if "error" in msg:
        raise BenchError(f"error reply: {msg['error']}")


def sequential(conn: Conn, make: RequestMaker, duration: float, start: int = 0) -> RateResult:
    """One request at a time for ``duration`` seconds."""
    sock, up = conn.sock, conn.unpacker
    t0 = time.perf_counter()
    deadline = t0 + duration
    i = start
    while True:
        seq = conn.next_seq()
        sock.sendall(make(i, seq))
        i += 1
        got = None
        while got is None:
            for msg in up:
                if msg.get("seq") == seq or "seq" not in msg:
                    got = msg
                    break
            else:
                data = sock.recv(1 << 16)
                if not data:
                    raise BenchError("server closed the connection")
                up.feed(data)
        _check(got)
        now = time.perf_counter()
        if now >= deadline:
            return RateResult(i - start, now - t0)


def pipelined(conn: Conn, make: RequestMaker, *, duration: float | None = None,
              count: int | None = None, window: int = 64, start: int = 0) -> RateResult:
    """Keep ``window`` requests outstanding; stop after ``duration`` s or ``count`` requests.

    Replies are counted, not matched: every request here gets exactly one
    reply, and any error reply aborts the run.
    """
    sock, up = conn.sock, conn.unpacker
    limit = start + count if count is not None else None
    t0 = time.perf_counter()
    deadline = t0 + duration if duration is not None else None
    i = start

    def batch(n: int) -> bytes:
        nonlocal i
        if limit is not None:
            n = min(n, limit - i)
        parts = []
        for _ in range(n):
            parts.append(make(i, conn.next_seq()))
            i += 1
        return b"".join(parts)

    sock.sendall(batch(window))
    done = 0
    sending = True
    while done < i - start:
        data = sock.recv(1 << 18)
        if not data:
            raise BenchError("server closed the connection")
        up.feed(data)
        n = 0
        for msg in up:
            if "error" in msg:
                raise BenchError(f"error reply: {msg['error']}")
            n += 1
        done += n
        if sending and n:
            if deadline is not None and time.perf_counter() >= deadline:
                sending = False
            elif limit is not None and i >= limit:
                sending = False
            else:
                sock.sendall(batch(n))
    return RateResult(done, time.perf_counter() - t0)


def fill(conn: Conn, n: int, start: int = 0, window: int = 64) -> RateResult:
    """Write entries ``fill_key(start) … fill_key(n-1)`` (value = index), pipelined."""
    if n <= start:
        return RateResult(0, 0.0)
    return pipelined(conn, set_value_req(("fill",)), count=n - start, window=window,
                     start=start)


def get_tree(conn: Conn, path: tuple, timeout: float) -> tuple[int, float]:
    """Dump a subtree; return (records received, seconds until the end marker)."""
    t0 = time.perf_counter()
    deadline = t0 + timeout
    seq = conn.send({"action": "get_tree", "path": Path(path), "nchain": 0})
    records = 0
    last_ack = 0
    for msg in conn.messages():
        if msg.get("seq") != seq:
            _check(msg)
            continue
        _check(msg)
        wseq = msg.get("wseq")
        if wseq is not None:
            last_ack = conn.ack(seq, wseq, last_ack)
        state = msg.get("state")
        if state == "end":
            break
        if state is None:
            records += 1
            if not records & 0xFFF and time.perf_counter() > deadline:
                raise BenchError(f"get_tree: not done after {timeout}s ({records} records)")
    return records, time.perf_counter() - t0


def watch_latency(watcher: Conn, writer: Conn, samples: int, timeout: float) -> list[float]:
    """Latencies (seconds) from sending a write to receiving its watch notification.

    ``watcher`` watches ``bench.watch``; ``writer`` sets ``bench.watch.x`` to
    the send timestamp (ns), one write at a time, and the notification that
    carries that value ends the sample.
    """
    path = ("bench", "watch")
    wseq_ = watcher.send({"action": "watch", "path": Path(path), "nchain": 0, "fetch": False})
    deadline = time.perf_counter() + timeout
    last_ack = 0

    def wait_for(value: int) -> int:
        nonlocal last_ack
        for msg in watcher.messages():
            if msg.get("seq") != wseq_:
                _check(msg)
                continue
            _check(msg)
            w = msg.get("wseq")
            if w is not None:
                last_ack = watcher.ack(wseq_, w, last_ack)
            if msg.get("state") == "end":
                raise BenchError("watch ended early")
            if msg.get("value") == value:
                return time.perf_counter_ns()
        raise AssertionError("unreachable")

    target = Path((*path, "x"))

    def write() -> tuple[int, int]:
        seq = writer.next_seq()
        t_send = time.perf_counter_ns()
        writer.sock.sendall(packb({"action": "set_value", "path": target, "value": t_send,
                                   "nchain": 0, "seq": seq}))
        return seq, t_send

    def reply(seq: int) -> None:
        for msg in writer.messages():
            if msg.get("seq") == seq:
                _check(msg)
                return

    # Upstream may start watching a moment after the request arrives: write
    # until a first notification shows that the watch is live.
    sock_timeout = watcher.sock.gettimeout()
    watcher.sock.settimeout(0.5)
    try:
        while True:
            if time.perf_counter() > deadline:
                raise BenchError("watch: no notification arrives")
            seq, t_send = write()
            reply(seq)
            try:
                wait_for(t_send)
                break
            except TimeoutError:
                continue
    finally:
        watcher.sock.settimeout(sock_timeout)

    out: list[float] = []
    for _ in range(samples):
        if time.perf_counter() > deadline:
            raise BenchError(f"watch: only {len(out)} samples after {timeout}s")
        seq, t_send = write()
        t_recv = wait_for(t_send)
        reply(seq)
        out.append((t_recv - t_send) / 1e9)
    watcher.request("stop", task=wseq_)
    return out
