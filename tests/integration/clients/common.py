"""Deterministic record content and the dump format shared by every client program.

Record i of client C and codec Z (so a verifier needs only the parameters):
  key       b"key-<i % 1000>"          (1000 keys: each must stay in one partition)
  value     f"{C}-{Z}-{i}-" + hex pattern, cut to VALUE_LEN bytes
  headers   [("src", b"C-Z"), ("idx", b"<i>")]   (kcat can only send "src")
  timestamp base_ts + 2*i                (CreateTime; kcat cannot set it)

Dump format written by every consumer, one record a line, tab-separated:
  partition offset timestamp key_hex value_hex headers
where headers is "name=valuehex;name=valuehex" ("" when none), a null key or
value or header value is "-". The Java and Go programs implement the same.
"""

VALUE_LEN = 100
NUM_KEYS = 1000
CODECS = ("none", "gzip", "snappy", "lz4", "zstd")


def key(i: int) -> bytes:
    return b"key-%d" % (i % NUM_KEYS)


def value(client: str, codec: str, i: int) -> bytes:
    head = f"{client}-{codec}-{i}-"
    pat = "%08x" % ((i * 2654435761) & 0xFFFFFFFF)
    return (head + pat * 13)[:VALUE_LEN].encode()


def headers(client: str, codec: str, i: int) -> list:
    return [("src", f"{client}-{codec}".encode()), ("idx", str(i).encode())]


def timestamp(base_ts: int, i: int) -> int:
    return base_ts + 2 * i


def _hex(b) -> str:
    return "-" if b is None else bytes(b).hex()


def dump_line(partition, offset, ts, k, v, hdrs) -> str:
    h = ";".join(f"{n}={_hex(x)}" for n, x in (hdrs or []))
    return f"{partition}\t{offset}\t{ts}\t{_hex(k)}\t{_hex(v)}\t{h}\n"


def parse_topic_codecs(specs):
    """["topic=codec", ...] -> [(topic, codec), ...]"""
    out = []
    for s in specs:
        t, _, c = s.rpartition("=")
        if not t or c not in CODECS:
            raise SystemExit(f"bad topic=codec spec: {s!r}")
        out.append((t, c))
    return out


def parse_queries(specs):
    """["topic:partition:ts", ...] -> [(topic, partition, ts), ...]"""
    out = []
    for s in specs:
        t, p, ts = s.rsplit(":", 2)
        out.append((t, int(p), int(ts)))
    return out


def add_common_args(parser, stream=False):
    """The subcommands every client program offers (see tests/integration/README.md),
    and with `stream` the failover tests' producer (runners.Runner.start_stream)."""
    parser.add_argument("--bootstrap", required=True)
    sub = parser.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("create-topics")
    c.add_argument("--partitions", type=int, default=6)
    c.add_argument("topics", nargs="+")
    p = sub.add_parser("produce")
    p.add_argument("--start", type=int, required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--base-ts", type=int, required=True)
    p.add_argument("specs", nargs="+", metavar="topic=codec")
    r = sub.add_parser("consume")
    r.add_argument("--count", type=int, required=True, help="records expected per topic")
    r.add_argument("--partitions", type=int, default=6)
    r.add_argument("--out-dir", required=True)
    r.add_argument("--timeout", type=float, default=60.0)
    r.add_argument("topics", nargs="+")
    o = sub.add_parser("offsets-for-times")
    o.add_argument("queries", nargs="+", metavar="topic:partition:ts")
    if stream:
        s = sub.add_parser("stream")
        s.add_argument("--topic", required=True)
        s.add_argument("--acks-file", required=True)
        s.add_argument("--rate", type=int, default=5000, help="records per second")
        s.add_argument("--stop-file")
        s.add_argument("--seconds", type=float, default=120.0, help="longest run")
    return parser
