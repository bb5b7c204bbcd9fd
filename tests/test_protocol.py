"""The pure protocol pieces: message framing and stream windows."""

from __future__ import annotations

import pytest

from distkv.codec import packb
from distkv.protocol import MessageReader, ProtocolError, RecvWindow, SendWindow


def test_reader_splits_concatenated_maps_across_chunks():
    data = b"".join(packb({"seq": i, "action": "get_value"}) for i in range(1, 6))
    r = MessageReader()
    got = r.feed(data[:7]) + r.feed(data[7:30]) + r.feed(data[30:])
    assert [m["seq"] for m in got] == [1, 2, 3, 4, 5]


def test_reader_limit_is_per_message_not_per_chunk():
    msgs = [packb({"seq": i, "value": "x" * 50}) for i in range(100)]
    r = MessageReader(max_message=100)
    got = r.feed(b"".join(msgs))  # 6 kB in one chunk, each message < 100 bytes
    assert len(got) == 100


def test_reader_refuses_an_oversized_message():
    r = MessageReader(max_message=100)
    with pytest.raises(ProtocolError, match="larger than 100 bytes"):
        r.feed(packb({"seq": 1, "value": "x" * 500}))


def test_reader_refuses_non_maps_and_garbage():
    with pytest.raises(ProtocolError, match="expected a map, got int"):
        MessageReader().feed(packb(5))
    with pytest.raises(ProtocolError, match="malformed msgpack"):
        MessageReader().feed(b"\xc1")


def test_send_window_allows_window_minus_one_unacked():
    w = SendWindow(4)
    sent = 0
    while w.can_send():
        w.next_wseq()
        sent += 1
    assert sent == 3
    w.ack(2)
    assert w.can_send()


def test_recv_window_acks_after_a_third_of_the_window():
    r = RecvWindow(10)
    acks = [r.received(n) for n in range(1, 10)]
    assert acks == [None, None, None, 4, None, None, None, 8, None]
    assert RecvWindow(0).received(5) is None
