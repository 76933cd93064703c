"""The server half of SPDY/3.1 framing, as much of it as ``kubectl port-forward`` speaks.

kubectl (client-go over moby/spdystream) tunnels a SPDY session through a WebSocket
(subprotocol ``SPDY/3.1+portforward.k8s.io``): every binary message is a slice of the SPDY
byte stream. The client opens streams with SYN_STREAM (header blocks zlib-compressed against
the SPDY/3 dictionary, one compression context per direction for the whole session), sends
DATA frames (FIN half-closes a stream) and PINGs; the server answers each stream with a
SYN_REPLY, echoes PINGs and sends DATA back. spdystream does no flow control, so neither do we.
This module only parses and builds frames; portforward.py decides what they mean.
"""
from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, PING, GOAWAY, HEADERS, WINDOW_UPDATE = 1, 2, 3, 4, 6, 7, 8, 9
FLAG_FIN = 0x01
VERSION = 3
MAX_FRAME = 1 << 24

# The SPDY/3 header compression dictionary (draft-mbelshe-httpbis-spdy-00, section 2.6.10.1).
DICTIONARY = bytes.fromhex(
    "000000076f7074696f6e73000000046865616400000004706f7374000000037075740000000664656c65746500000005"
    "7472616365000000066163636570740000000e6163636570742d636861727365740000000f6163636570742d656e636f"
    "64696e670000000f6163636570742d6c616e67756167650000000d6163636570742d72616e6765730000000361676500"
    "000005616c6c6f770000000d617574686f72697a6174696f6e0000000d63616368652d636f6e74726f6c0000000a636f"
    "6e6e656374696f6e0000000c636f6e74656e742d6261736500000010636f6e74656e742d656e636f64696e6700000010"
    "636f6e74656e742d6c616e67756167650000000e636f6e74656e742d6c656e67746800000010636f6e74656e742d6c6f"
    "636174696f6e0000000b636f6e74656e742d6d64350000000d636f6e74656e742d72616e67650000000c636f6e74656e"
    "742d74797065000000046461746500000004657461670000000665787065637400000007657870697265730000000466"
    "726f6d00000004686f73740000000869662d6d617463680000001169662d6d6f6469666965642d73696e63650000000d"
    "69662d6e6f6e652d6d617463680000000869662d72616e67650000001369662d756e6d6f6469666965642d73696e6365"
    "0000000d6c6173742d6d6f646966696564000000086c6f636174696f6e0000000c6d61782d666f727761726473000000"
    "06707261676d610000001270726f78792d61757468656e7469636174650000001370726f78792d617574686f72697a61"
    "74696f6e0000000572616e676500000007726566657265720000000b72657472792d6166746572000000067365727665"
    "7200000002746500000007747261696c6572000000117472616e736665722d656e636f64696e67000000077570677261"
    "64650000000a757365722d6167656e74000000047661727900000003766961000000077761726e696e67000000107777"
    "772d61757468656e746963617465000000066d6574686f64000000036765740000000673746174757300000006323030"
    "204f4b0000000776657273696f6e00000008485454502f312e310000000375726c000000067075626c69630000000a73"
    "65742d636f6f6b69650000000a6b6565702d616c697665000000066f726967696e313030313031323031323032323035"
    "323036333030333032333033333034333035333036333037343032343035343036343037343038343039343130343131"
    "343132343133343134343135343136343137353032353034353035323033204e6f6e2d417574686f7269746174697665"
    "20496e666f726d6174696f6e323034204e6f20436f6e74656e74333031204d6f766564205065726d616e656e746c7934"
    "303020426164205265717565737434303120556e617574686f72697a656434303320466f7262696464656e343034204e"
    "6f7420466f756e6435303020496e7465726e616c20536572766572204572726f72353031204e6f7420496d706c656d65"
    "6e746564353033205365727669636520556e617661696c61626c654a616e20466562204d617220417072204d6179204a"
    "756e204a756c204175672053657074204f6374204e6f76204465632030303a30303a3030204d6f6e2c205475652c2057"
    "65642c205468752c204672692c205361742c2053756e2c20474d546368756e6b65642c746578742f68746d6c2c696d61"
    "67652f706e672c696d6167652f6a70672c696d6167652f6769662c6170706c69636174696f6e2f786d6c2c6170706c69"
    "636174696f6e2f7868746d6c2b786d6c2c746578742f706c61696e2c746578742f6a6176617363726970742c7075626c"
    "6963707269766174656d61782d6167653d677a69702c6465666c6174652c73646368636861727365743d7574662d3863"
    "6861727365743d69736f2d383835392d312c7574662d2c2a2c656e713d302e"
)


@dataclass
class Frame:
    type: int  # 0 for DATA, else the control frame type
    stream_id: int = 0
    flags: int = 0
    data: bytes = b""
    headers: dict[str, list[str]] = field(default_factory=dict)
    value: int = 0  # PING id, RST/GOAWAY status

    @property
    def fin(self) -> bool:
        return bool(self.flags & FLAG_FIN)


class ProtocolError(Exception):
    pass


class Session:
    """Frames in (``feed``), frames out (``syn_reply``, ``data``, ...) as bytes to send."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._inflate = zlib.decompressobj(zdict=DICTIONARY)
        self._deflate = zlib.compressobj(9, zdict=DICTIONARY)

    def feed(self, chunk: bytes) -> list[Frame]:
        self._buf += chunk
        frames = []
        while len(self._buf) >= 8:
            length = int.from_bytes(self._buf[5:8], "big")
            if len(self._buf) < 8 + length:
                break
            head = int.from_bytes(self._buf[0:4], "big")
            flags = self._buf[4]
            payload = bytes(self._buf[8:8 + length])
            del self._buf[:8 + length]
            if not head & 0x80000000:
                frames.append(Frame(0, head & 0x7FFFFFFF, flags, payload))
                continue
            ftype = head & 0xFFFF
            if (head >> 16) & 0x7FFF != VERSION:
                raise ProtocolError(f"unsupported SPDY version {(head >> 16) & 0x7FFF}")
            if ftype == SYN_STREAM:
                sid = int.from_bytes(payload[0:4], "big") & 0x7FFFFFFF
                frames.append(Frame(ftype, sid, flags, headers=self._headers(payload[10:])))
            elif ftype in (SYN_REPLY, HEADERS):
                sid = int.from_bytes(payload[0:4], "big") & 0x7FFFFFFF
                frames.append(Frame(ftype, sid, flags, headers=self._headers(payload[4:])))
            elif ftype in (RST_STREAM, WINDOW_UPDATE):
                sid, value = struct.unpack(">II", payload[:8])
                frames.append(Frame(ftype, sid & 0x7FFFFFFF, flags, value=value))
            elif ftype == PING:
                frames.append(Frame(ftype, flags=flags, value=struct.unpack(">I", payload[:4])[0]))
            elif ftype == GOAWAY:
                frames.append(Frame(ftype, struct.unpack(">I", payload[:4])[0] & 0x7FFFFFFF, flags))
            else:  # SETTINGS and anything unknown: nothing to do
                frames.append(Frame(ftype, flags=flags, data=payload))
        return frames

    def _headers(self, block: bytes) -> dict[str, list[str]]:
        raw = self._inflate.decompress(block)
        try:
            (n,), off, out = struct.unpack(">I", raw[:4]), 4, {}
            for _ in range(n):
                (ln,) = struct.unpack(">I", raw[off:off + 4])
                name = raw[off + 4:off + 4 + ln].decode()
                off += 4 + ln
                (lv,) = struct.unpack(">I", raw[off:off + 4])
                out[name.lower()] = raw[off + 4:off + 4 + lv].decode().split("\0")
                off += 4 + lv
        except (struct.error, UnicodeDecodeError) as e:
            raise ProtocolError(f"bad SPDY header block: {e}") from None
        return out

    @staticmethod
    def _control(ftype: int, flags: int, payload: bytes) -> bytes:
        return struct.pack(">HHI", 0x8000 | VERSION, ftype, (flags << 24) | len(payload)) + payload

    def syn_reply(self, stream_id: int, headers: dict[str, str] | None = None, *, fin: bool = False) -> bytes:
        h = headers or {}
        block = struct.pack(">I", len(h)) + b"".join(
            struct.pack(">I", len(k)) + k.encode() + struct.pack(">I", len(v)) + v.encode() for k, v in h.items())
        packed = self._deflate.compress(block) + self._deflate.flush(zlib.Z_SYNC_FLUSH)
        return self._control(SYN_REPLY, FLAG_FIN if fin else 0, struct.pack(">I", stream_id) + packed)

    @staticmethod
    def data(stream_id: int, data: bytes = b"", *, fin: bool = False) -> bytes:
        out = b""
        for i in range(0, max(len(data), 1), MAX_FRAME - 1):
            chunk = data[i:i + MAX_FRAME - 1]
            last = i + MAX_FRAME - 1 >= len(data)
            out += struct.pack(">II", stream_id & 0x7FFFFFFF, ((FLAG_FIN if fin and last else 0) << 24) | len(chunk)) + chunk
        return out

    def ping(self, ping_id: int) -> bytes:
        return self._control(PING, 0, struct.pack(">I", ping_id))

    def rst_stream(self, stream_id: int, status: int) -> bytes:
        return self._control(RST_STREAM, 0, struct.pack(">II", stream_id, status))
