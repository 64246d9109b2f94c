"""A tiny raw-socket ApiVersions probe: is something on host:port speaking Kafka?

Sends ApiVersions v3 (request header v2) and reads the answer (response header
v0, as every ApiVersions answer uses). Used as the readiness check of every
broker target, and usable alone: python probe.py 127.0.0.1:9092
"""
import socket
import struct
import sys

API_VERSIONS = 18
UNSUPPORTED_VERSION = 35


def _compact_str(s: bytes) -> bytes:
    return bytes([len(s) + 1]) + s  # uvarint; the strings here are < 127 bytes


def api_versions(host: str, port: int, timeout: float = 2.0, version: int = 3,
                 correlation_id: int = 0x51CE) -> dict:
    """Returns {"error_code": int, "api_keys": {key: (min, max)}}; raises OSError/ValueError."""
    client_id = b"sluice-probe"
    header = struct.pack(">hhih", API_VERSIONS, version, correlation_id, len(client_id)) + client_id
    if version >= 3:
        header += b"\x00"  # header tagged fields
        body = _compact_str(b"sluice-probe") + _compact_str(b"1") + b"\x00"
    else:
        body = b""
    msg = header + body
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.settimeout(timeout)
        s.sendall(struct.pack(">i", len(msg)) + msg)
        size = struct.unpack(">i", _recv_exact(s, 4))[0]
        if not 6 <= size <= 1 << 20:
            raise ValueError(f"implausible ApiVersions response size {size}")
        resp = _recv_exact(s, size)
    corr, err = struct.unpack(">ih", resp[:6])
    if corr != correlation_id:
        raise ValueError(f"correlation id {corr} != {correlation_id}")
    keys = {}
    try:
        pos = 6
        if version >= 3 and err == 0:
            n, pos = _uvarint(resp, pos)
            n -= 1
            for _ in range(n):
                k, lo, hi = struct.unpack(">hhh", resp[pos:pos + 6])
                pos += 6
                tags, pos = _uvarint(resp, pos)  # per-key tagged fields (count; expect 0)
                keys[k] = (lo, hi)
        else:
            n = struct.unpack(">i", resp[pos:pos + 4])[0]
            pos += 4
            for _ in range(max(n, 0)):
                k, lo, hi = struct.unpack(">hhh", resp[pos:pos + 6])
                pos += 6
                keys[k] = (lo, hi)
    except (struct.error, IndexError):
        pass  # the error code is what readiness needs; a short key list is reported as is
    return {"error_code": err, "api_keys": keys}


def is_ready(host: str, port: int, timeout: float = 2.0) -> bool:
    """True when the port answers ApiVersions (any error code: it spoke Kafka)."""
    try:
        api_versions(host, port, timeout)
        return True
    except (OSError, ValueError, struct.error):
        return False


def _recv_exact(s, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed mid-response")
        buf += chunk
    return bytes(buf)


def _uvarint(b, pos):
    shift = result = 0
    while True:
        x = b[pos]
        pos += 1
        result |= (x & 0x7F) << shift
        if not x & 0x80:
            return result, pos
        shift += 7


if __name__ == "__main__":
    host, _, port = sys.argv[1].rpartition(":")
    r = api_versions(host or "127.0.0.1", int(port))
    print(f"error_code={r['error_code']} api_keys={len(r['api_keys'])}")
    for k, (lo, hi) in sorted(r["api_keys"].items()):
        print(f"  {k}: {lo}-{hi}")
