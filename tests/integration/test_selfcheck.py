"""The checks themselves must catch what they claim to (no broker needed)."""
import common
import checker
import verify


def _records(client, codec, n, base_ts=1_000_000, partitions=3):
    recs, next_off = [], {}
    for i in range(n):
        k = common.key(i)
        p = sum(k) % partitions
        o = next_off.get(p, 0)
        next_off[p] = o + 1
        recs.append(verify.Record(p, o, common.timestamp(base_ts, i), k,
                                  common.value(client, codec, i), common.headers(client, codec, i)))
    return recs


def test_verify_accepts_good_data():
    assert not verify.check_records(_records("java", "lz4", 3000), "java", "lz4", 3000, 1_000_000)


def test_verify_catches_each_fault():
    def problems(mutate):
        recs = _records("java", "zstd", 3000)
        mutate(recs)
        return set(verify.check_records(recs, "java", "zstd", 3000, 1_000_000).counts)

    def flip_value(r):
        r[10].value = r[10].value[:-1] + b"X"

    def drop(r):
        del r[-1]

    def dup(r):
        r.append(r[5])

    def bad_key(r):
        r[7].key = b"key-x"

    def bad_header(r):
        r[9].headers = r[9].headers[:1]

    def bad_ts(r):
        r[11].ts += 1

    def swap(r):
        a, b = [j for j, x in enumerate(r) if x.partition == r[0].partition][:2]
        r[a].value, r[b].value = r[b].value, r[a].value
        r[a].key, r[b].key = r[b].key, r[a].key
        r[a].headers, r[b].headers = r[b].headers, r[a].headers
        r[a].ts, r[b].ts = r[b].ts, r[a].ts

    assert "value bytes differ" in problems(flip_value)
    assert "missing" in problems(drop)
    assert "duplicate" in problems(dup)
    assert "key differs" in problems(bad_key)
    assert "headers differ" in problems(bad_header)
    assert "timestamp differs" in problems(bad_ts)
    assert "out of production order" in problems(swap)


def test_time_queries():
    recs = _records("java", "none", 600)
    qs = dict(verify.time_queries("t", recs, 3))
    for (t, p, ts), want in qs.items():
        in_p = sorted((r.offset, r.ts) for r in recs if r.partition == p)
        firsts = [o for o, x in in_p if x >= ts]
        assert want == (firsts[0] if firsts else -1)


def test_dump_round_trip(tmp_path):
    f = tmp_path / "d.tsv"
    f.write_text(common.dump_line(1, 2, 3, None, b"v", [("h", None), ("g", b"\x00")])
                 + common.dump_line(0, 0, 5, b"k", None, []))
    a, b = verify.load_dump(f)
    assert (a.partition, a.offset, a.ts, a.key, a.value, a.headers) == (1, 2, 3, None, b"v", [("h", None), ("g", b"\x00")])
    assert (b.key, b.value, b.headers) == (b"k", None, [])


def test_checker():
    acked = [(0, 0, 0), (0, 1, 1), (1, 0, 2), (1, 1, 3)]
    assert checker.check(acked, acked).ok
    r = checker.check(acked, [(0, 0, 0), (1, 0, 3), (1, 1, 2), (1, 2, 2)])
    assert r.lost == [(0, 1, 0, 1)]
    assert len(r.duplicated) == 1 and r.reordered and r.offset_mismatch
    r = checker.check(acked, [(0, 0, 0), (0, 1, 1), (1, 0, 2), (1, 1, 3), (1, 1, 3), (1, 2, 9)])
    assert r.redelivered and r.unacked_present == 1 and not r.lost
    # Streams are independent.
    two = [(0, 0, 0, "a"), (0, 1, 0, "b"), (0, 2, 1, "a")]
    assert checker.check(two, two).ok
