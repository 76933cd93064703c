"""SPDY/3 framing for port-forward: what spdystream (kubectl's side) sends parses, and what we
send back is what spdystream expects — checked against a client-side encoder written here."""
import struct
import zlib

import pytest

from nanokube.kubelet import spdy


class Client:
    """The client half, enough to talk to Session: SYN_STREAM out, SYN_REPLY in."""

    def __init__(self):
        self.deflate = zlib.compressobj(9, zdict=spdy.DICTIONARY)
        self.inflate = zlib.decompressobj(zdict=spdy.DICTIONARY)

    def syn_stream(self, sid, headers, fin=False):
        block = struct.pack(">I", len(headers)) + b"".join(
            struct.pack(">I", len(k)) + k.encode() + struct.pack(">I", len(v)) + v.encode() for k, v in headers.items())
        packed = self.deflate.compress(block) + self.deflate.flush(zlib.Z_SYNC_FLUSH)
        payload = struct.pack(">IIBB", sid, 0, 0, 0) + packed
        return struct.pack(">HHI", 0x8003, spdy.SYN_STREAM, ((1 if fin else 0) << 24) | len(payload)) + payload


def test_streams_data_and_ping_round_trip():
    c, s = Client(), spdy.Session()
    wire = c.syn_stream(1, {"streamType": "error", "port": "80", "requestID": "0"})
    wire += c.syn_stream(3, {"streamType": "data", "port": "80", "requestID": "0"})  # shares the zlib context
    wire += struct.pack(">II", 3, (1 << 24) | 5) + b"hello"
    wire += struct.pack(">HHII", 0x8003, spdy.PING, 4, 7)
    frames = []
    for i in range(0, len(wire), 7):  # arbitrary WebSocket message boundaries
        frames += s.feed(wire[i:i + 7])
    assert [f.type for f in frames] == [spdy.SYN_STREAM, spdy.SYN_STREAM, 0, spdy.PING]
    assert frames[0].headers == {"streamtype": ["error"], "port": ["80"], "requestid": ["0"]}
    assert frames[1].stream_id == 3 and frames[1].headers["streamtype"] == ["data"]
    assert frames[2].stream_id == 3 and frames[2].data == b"hello" and frames[2].fin
    assert frames[3].value == 7 and s.ping(7) == wire[-12:]

    reply = s.syn_reply(3)
    head, flags_len = struct.unpack(">II", reply[:8])
    assert head == (0x8003 << 16) | spdy.SYN_REPLY and flags_len == len(reply) - 8
    assert struct.unpack(">I", reply[8:12])[0] == 3
    assert c.inflate.decompress(reply[12:]) == b"\0\0\0\0"
    assert s.data(3, b"abc", fin=True) == struct.pack(">II", 3, (1 << 24) | 3) + b"abc"


def test_bad_version_is_refused():
    with pytest.raises(spdy.ProtocolError):
        spdy.Session().feed(struct.pack(">HHI", 0x8002, spdy.PING, 4) + b"\0\0\0\1")
