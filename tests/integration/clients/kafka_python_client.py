"""kafka-python client program for the integration tests (pure Python).

python kafka_python_client.py --bootstrap H:P create-topics|produce|consume|offsets-for-times|stream ...
"""
import argparse
import json
import logging
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from kafka import KafkaConsumer, KafkaProducer, TopicPartition  # noqa: E402
from kafka.admin import KafkaAdminClient, NewTopic  # noqa: E402

CLIENT = "kafka-python"


def create_topics(a):
    admin = KafkaAdminClient(bootstrap_servers=a.bootstrap, request_timeout_ms=30000)
    admin.create_topics([NewTopic(t, num_partitions=a.partitions, replication_factor=1)
                         for t in a.topics], timeout_ms=30000)
    admin.close()
    print(json.dumps({"created": a.topics}))


def produce(a):
    acked = [0]
    failed = []
    for topic, codec in common.parse_topic_codecs(a.specs):
        p = KafkaProducer(
            bootstrap_servers=a.bootstrap,
            compression_type=None if codec == "none" else codec,
            linger_ms=5,
            batch_size=256 * 1024,
            enable_idempotence=True,
            acks="all",
            request_timeout_ms=15000,
            max_block_ms=30000,
        )

        def ok(_md):
            acked[0] += 1

        def err(e):
            failed.append(repr(e))

        for i in range(a.start, a.start + a.count):
            p.send(topic, key=common.key(i), value=common.value(CLIENT, codec, i),
                   headers=[(n, v) for n, v in common.headers(CLIENT, codec, i)],
                   timestamp_ms=common.timestamp(a.base_ts, i)).add_callback(ok).add_errback(err)
        p.flush(timeout=60)
        p.close(timeout=10)
    n = a.count * len(a.specs)
    if acked[0] + len(failed) != n:
        failed.append(f"only {acked[0]} acked and {len(failed)} failed of {n}")
    print(json.dumps({"acked": acked[0], "failed": len(failed), "errors": failed[:5]}))
    return 1 if failed else 0


def consume(a):
    c = KafkaConsumer(bootstrap_servers=a.bootstrap, group_id=None, enable_auto_commit=False,
                      fetch_max_bytes=16 * 1024 * 1024,
                      max_partition_fetch_bytes=4 * 1024 * 1024, request_timeout_ms=15000)
    tps = [TopicPartition(t, p) for t in a.topics for p in range(a.partitions)]
    c.assign(tps)
    c.seek_to_beginning(*tps)
    files = {t: open(os.path.join(a.out_dir, t + ".tsv"), "w") for t in a.topics}
    got = dict.fromkeys(a.topics, 0)
    need = a.count * len(a.topics)
    total = 0
    deadline = time.monotonic() + a.timeout
    while total < need and time.monotonic() < deadline:
        for tp, recs in c.poll(timeout_ms=500, max_records=20000).items():
            f = files[tp.topic]
            for m in recs:
                f.write(common.dump_line(m.partition, m.offset, m.timestamp, m.key, m.value,
                                         m.headers))
            got[tp.topic] += len(recs)
            total += len(recs)
    c.close()
    for f in files.values():
        f.close()
    print(json.dumps({"consumed": got}))
    return 0 if total >= need else 1


def offsets_for_times(a):
    c = KafkaConsumer(bootstrap_servers=a.bootstrap, group_id=None, enable_auto_commit=False)
    qs = common.parse_queries(a.queries)
    for t, p, ts in qs:  # one call per query: several may name the same partition
        r = c.offsets_for_times({TopicPartition(t, p): ts}, timeout_ms=20000).get(TopicPartition(t, p))
        print(f"{t} {p} {ts} {r.offset if r is not None else -1}")
    c.close()


def stream(a):
    """The failover tests' producer, as the Java client's "stream": a paced,
    numbered acks=all idempotent stream (record seq: key "<seq>", value
    "seq-%012d-" padded with '.' to 100 bytes); each acknowledged record is a
    line "partition offset seq" of the acks file. Runs until the stop file
    exists or --seconds pass, then waits for what is in flight."""
    p = KafkaProducer(bootstrap_servers=a.bootstrap, acks="all", enable_idempotence=True,
                      linger_ms=5, request_timeout_ms=15000, max_block_ms=120000,
                      reconnect_backoff_max_ms=500)
    lock = threading.Lock()
    counts = {"acked": 0, "failed": 0}
    errors = []
    out = open(a.acks_file, "w")

    def ok(seq):
        def cb(md):
            with lock:
                counts["acked"] += 1
                out.write(f"{md.partition} {md.offset} {seq}\n")
        return cb

    def err(e):
        with lock:
            counts["failed"] += 1
            errors.append(repr(e))

    t0 = time.monotonic()
    end, next_check, sent = t0 + a.seconds, t0, 0
    while time.monotonic() < end:
        now = time.monotonic()
        if now >= next_check:
            with lock:
                out.flush()
            if a.stop_file and os.path.exists(a.stop_file):
                break
            next_check = now + 0.1
        if sent >= int((now - t0) * a.rate):
            time.sleep(0.001)
            continue
        seq, sent = sent, sent + 1
        v = f"seq-{seq:012d}-".encode()
        p.send(a.topic, key=str(seq).encode(), value=v + b"." * (100 - len(v))) \
            .add_callback(ok(seq)).add_errback(err)
    p.flush(timeout=60)
    p.close(timeout=10)
    with lock:
        out.close()
        print(json.dumps({"sent": sent, "acked": counts["acked"], "failed": counts["failed"],
                          "errors": errors[:3]}))
    return 0


def main():
    logging.basicConfig(level=logging.ERROR)
    a = common.add_common_args(argparse.ArgumentParser(), stream=True).parse_args()
    rc = {"create-topics": create_topics, "produce": produce, "consume": consume,
          "offsets-for-times": offsets_for_times, "stream": stream}[a.cmd](a)
    sys.exit(rc or 0)


if __name__ == "__main__":
    main()
