"""Lost / duplicated / reordered check for crash and failover tests.

Inputs are plain tuples, so any producer and consumer can feed it:
  acked:    (partition, offset, seq[, stream]) for every record the producer saw
            ACKNOWLEDGED (offset -1 when the client does not report one)
  consumed: (partition, offset, seq[, stream]) for every record a consumer read,
            in the order the consumer delivered them
`seq` numbers a producer's records in send order; `stream` (default 0) tells
several producers apart (each numbers its own records from 0).

Reported (all must be zero for a passing run):
  lost              acked but never consumed
  duplicated        the same (stream, seq) consumed at more than one offset
  reordered         within a partition, a record of a stream at a higher offset
                    than a later-sent record of the same stream
  offset_mismatch   acked at (partition, offset) but something else is there
  redelivered       the consumer saw an offset again or went backwards in a
                    partition (a consumer-side or fetch bug)
Informational: unacked_present (written though never acknowledged: allowed).

    report = checker.check(load_acks(path), load_consumed(dump, seq_from_value))
    assert report.ok, report.summary()
"""
from collections import defaultdict
from dataclasses import dataclass, field

MAX_EXAMPLES = 10


@dataclass
class Report:
    acked: int = 0
    consumed: int = 0
    lost: list = field(default_factory=list)
    duplicated: list = field(default_factory=list)
    reordered: list = field(default_factory=list)
    offset_mismatch: list = field(default_factory=list)
    redelivered: list = field(default_factory=list)
    unacked_present: int = 0

    @property
    def ok(self):
        return not (self.lost or self.duplicated or self.reordered or self.offset_mismatch
                    or self.redelivered)

    def counts(self):
        return {"acked": self.acked, "consumed": self.consumed, "lost": len(self.lost),
                "duplicated": len(self.duplicated), "reordered": len(self.reordered),
                "offset_mismatch": len(self.offset_mismatch),
                "redelivered": len(self.redelivered), "unacked_present": self.unacked_present}

    def summary(self):
        lines = [" ".join(f"{k}={v}" for k, v in self.counts().items())]
        for name in ("lost", "duplicated", "reordered", "offset_mismatch", "redelivered"):
            xs = getattr(self, name)
            if xs:
                lines.append(f"  {name} e.g. {xs[:MAX_EXAMPLES]}")
        return "\n".join(lines)


def _norm(t):
    return (t[0], t[1], t[2], t[3] if len(t) > 3 else 0)


def check(acked, consumed) -> Report:
    acked = [_norm(a) for a in acked]
    consumed = [_norm(c) for c in consumed]
    rep = Report(acked=len(acked), consumed=len(consumed))

    # Consumer-side sanity: offsets strictly increase per partition as delivered.
    last = {}
    unique = {}
    for p, o, seq, st in consumed:
        if p in last and o <= last[p]:
            rep.redelivered.append((p, o, last[p]))
        last[p] = max(o, last.get(p, -1))
        unique[(p, o)] = (seq, st)

    # Duplicates: one (stream, seq) at several offsets.
    where = defaultdict(list)
    for (p, o), (seq, st) in unique.items():
        where[(st, seq)].append((p, o))
    rep.duplicated = sorted((st, seq, sorted(locs)) for (st, seq), locs in where.items()
                            if len(locs) > 1)[:10_000]

    # Lost and misplaced acknowledged records.
    acked_keys = set()
    for p, o, seq, st in acked:
        acked_keys.add((st, seq))
        if (st, seq) not in where:
            rep.lost.append((st, seq, p, o))
        elif o >= 0 and unique.get((p, o)) != (seq, st):
            rep.offset_mismatch.append((p, o, (st, seq), unique.get((p, o))))
    rep.lost.sort()
    rep.unacked_present = sum(1 for k in where if k not in acked_keys)

    # Order: per (partition, stream), seq increases with offset.
    by_ps = defaultdict(list)
    for (p, o), (seq, st) in unique.items():
        by_ps[(p, st)].append((o, seq))
    for (p, st), rows in by_ps.items():
        rows.sort()
        hi = -1
        for o, seq in rows:
            if seq < hi:
                rep.reordered.append((p, o, st, seq, hi))
            hi = max(hi, seq)
    return rep


def load_acks(path, stream=0):
    """Lines "partition offset seq" (the Java stream producer's acks file)."""
    out = []
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3:
                out.append((int(parts[0]), int(parts[1]), int(parts[2]), stream))
    return out


def seq_from_value(value: bytes) -> int:
    """The Java stream producer's values: b"seq-<12 digits>-....."."""
    return int(value[4:16])


def load_consumed(dump_path, seq_of=seq_from_value, stream=0):
    """A consumer dump (clients/common.py format) -> [(partition, offset, seq, stream)]."""
    out = []
    with open(dump_path) as f:
        for line in f:
            p, o, _ts, _k, v, _h = line.rstrip("\n").split("\t")
            out.append((int(p), int(o), seq_of(bytes.fromhex(v)), stream))
    return out


