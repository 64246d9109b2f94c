"""Checks of the client scenario: everything produced comes back exactly.

A dump (clients/common.py format) is checked against the deterministic records
0..count-1 of (client, codec): value bytes, keys, headers, timestamps (when the
client sets them), dense offsets read in order per partition, records of a
partition in production order, and each key in exactly one partition.
"""
import bisect
from collections import defaultdict

import common

MAX_EXAMPLES = 5


class Record:
    __slots__ = ("partition", "offset", "ts", "key", "value", "headers")

    def __init__(self, partition, offset, ts, key, value, headers):
        self.partition, self.offset, self.ts = partition, offset, ts
        self.key, self.value, self.headers = key, value, headers


def _unhex(s):
    return None if s == "-" else bytes.fromhex(s)


def load_dump(path):
    """Records in the order the consumer delivered them."""
    out = []
    with open(path) as f:
        for line in f:
            p, o, ts, k, v, h = line.rstrip("\n").split("\t")
            hdrs = []
            if h:
                for item in h.split(";"):
                    n, _, x = item.partition("=")
                    hdrs.append((n, _unhex(x)))
            out.append(Record(int(p), int(o), int(ts), _unhex(k), _unhex(v), hdrs))
    return out


class Problems:
    def __init__(self, label):
        self.label = label
        self.counts = defaultdict(int)
        self.examples = defaultdict(list)

    def add(self, kind, example):
        self.counts[kind] += 1
        if len(self.examples[kind]) < MAX_EXAMPLES:
            self.examples[kind].append(example)

    def __bool__(self):
        return bool(self.counts)

    def __str__(self):
        if not self.counts:
            return f"{self.label}: ok"
        lines = [f"{self.label}:"]
        for k, n in sorted(self.counts.items()):
            lines.append(f"  {k}: {n}  e.g. {self.examples[k]}")
        return "\n".join(lines)


def index_of(client, codec, rec):
    """The record index i, read from the value prefix "<client>-<codec>-<i>-"."""
    if rec.value is None:
        return None
    prefix = f"{client}-{codec}-".encode()
    if not rec.value.startswith(prefix):
        return None
    num = rec.value[len(prefix):].split(b"-", 1)[0]
    return int(num) if num.isdigit() else None


def check_records(records, client, codec, count, base_ts=None, header_names=("src", "idx")):
    """Returns Problems (falsy when all is well)."""
    pr = Problems(f"{client}/{codec}")
    seen = {}
    key_parts = defaultdict(set)
    last_off = {}
    last_idx = {}
    for r in records:
        i = index_of(client, codec, r)
        if i is None or not 0 <= i < count:
            pr.add("unknown value", (r.partition, r.offset, r.value[:40] if r.value else None))
            continue
        if i in seen:
            pr.add("duplicate", (i, seen[i], (r.partition, r.offset)))
            continue
        seen[i] = (r.partition, r.offset)
        if r.value != common.value(client, codec, i):
            pr.add("value bytes differ", (i, r.value))
        if r.key != common.key(i):
            pr.add("key differs", (i, r.key))
        want_h = [(n, v) for n, v in common.headers(client, codec, i) if n in header_names]
        if r.headers != want_h:
            pr.add("headers differ", (i, r.headers, want_h))
        if base_ts is not None and r.ts != common.timestamp(base_ts, i):
            pr.add("timestamp differs", (i, r.ts, common.timestamp(base_ts, i)))
        key_parts[r.key].add(r.partition)
        p = r.partition
        # Delivered in offset order, densely (no control records in these topics).
        want_off = last_off.get(p, -1) + 1
        if r.offset != want_off:
            pr.add("offset not dense/in order", (p, r.offset, want_off))
        last_off[p] = r.offset
        # Within a partition, records appear in production order.
        if i <= last_idx.get(p, -1):
            pr.add("out of production order", (p, r.offset, i, last_idx[p]))
        last_idx[p] = i
    missing = count - len(seen)
    if missing:
        pr.add("missing", f"{missing} of {count}, first: "
               f"{[i for i in range(count) if i not in seen][:MAX_EXAMPLES]}")
    for k, ps in key_parts.items():
        if len(ps) > 1:
            pr.add("key in several partitions", (k, sorted(ps)))
    return pr


def time_queries(topic, records, partitions=6):
    """ListOffsets-by-timestamp queries with the answer Kafka must give, computed
    from what was read back: [((topic, partition, ts), expected_offset)].
    For each partition: a record's exact timestamp, one ms after it, before
    everything (-> first offset), and after everything (-> -1)."""
    by_p = defaultdict(list)
    for r in records:
        by_p[r.partition].append((r.offset, r.ts))
    out = []
    for p in sorted(by_p)[:partitions]:
        rows = sorted(by_p[p])
        # First offset at/after ts: with timestamps not monotonic in general, the
        # minimum offset among records with timestamp >= ts.
        suffix_min = [0] * len(rows)
        ts_sorted = sorted((ts, off) for off, ts in rows)
        tss = [t for t, _ in ts_sorted]
        best = None
        for j in range(len(ts_sorted) - 1, -1, -1):
            off = ts_sorted[j][1]
            best = off if best is None else min(best, off)
            suffix_min[j] = best

        def first_at_or_after(ts):
            j = bisect.bisect_left(tss, ts)
            return suffix_min[j] if j < len(tss) else -1

        mid_ts = rows[(len(rows) * (p + 1)) // (partitions + 1)][1]
        for ts in (mid_ts, mid_ts + 1, rows[0][1] - 1000, max(tss) + 1):
            out.append(((topic, p, ts), first_at_or_after(ts)))
    return out
