"""confluent-kafka (librdkafka) client program for the integration tests.

python confluent_client.py --bootstrap H:P create-topics|produce|consume|offsets-for-times ...
(subcommands in common.add_common_args). Also creates kcat's topics.
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

CLIENT = "confluent"


def create_topics(a):
    admin = AdminClient({"bootstrap.servers": a.bootstrap, "socket.timeout.ms": 10000})
    futs = admin.create_topics(
        [NewTopic(t, num_partitions=a.partitions, replication_factor=1) for t in a.topics],
        request_timeout=30,
    )
    for t, f in futs.items():
        f.result(timeout=30)
    print(json.dumps({"created": list(futs)}))


def produce(a):
    failed = []
    acked = [0]

    def on_delivery(err, msg):
        if err is not None:
            failed.append(str(err))
        else:
            acked[0] += 1

    for topic, codec in common.parse_topic_codecs(a.specs):
        p = Producer({
            "bootstrap.servers": a.bootstrap,
            "compression.type": codec,
            "linger.ms": 5,
            "batch.size": 1000000,
            "enable.idempotence": True,
            "queue.buffering.max.messages": 200000,
            "message.timeout.ms": 60000,
        })
        for i in range(a.start, a.start + a.count):
            kw = dict(
                key=common.key(i),
                value=common.value(CLIENT, codec, i),
                headers=common.headers(CLIENT, codec, i),
                timestamp=common.timestamp(a.base_ts, i),
                on_delivery=on_delivery,
            )
            while True:
                try:
                    p.produce(topic, **kw)
                    break
                except BufferError:
                    p.poll(0.05)
            if i % 1000 == 0:
                p.poll(0)
        left = p.flush(60)
        if left:
            failed.append(f"{left} records not delivered after flush(60)")
    print(json.dumps({"acked": acked[0], "failed": len(failed), "errors": failed[:5]}))
    return 1 if failed else 0


def consume(a):
    c = Consumer({
        "bootstrap.servers": a.bootstrap,
        "group.id": "sluice-it-unused",  # required by the client; never joined (assign only)
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "fetch.max.bytes": 16 * 1024 * 1024,
        "max.partition.fetch.bytes": 4 * 1024 * 1024,
    })
    c.assign([TopicPartition(t, p, -2) for t in a.topics for p in range(a.partitions)])
    files = {t: open(os.path.join(a.out_dir, t + ".tsv"), "w") for t in a.topics}
    got = dict.fromkeys(a.topics, 0)
    need = a.count * len(a.topics)
    total = 0
    deadline = time.monotonic() + a.timeout
    while total < need and time.monotonic() < deadline:
        for m in c.consume(num_messages=10000, timeout=0.5):
            if m.error():
                print(f"consume error: {m.error()}", file=sys.stderr)
                continue
            t = m.topic()
            files[t].write(common.dump_line(m.partition(), m.offset(), m.timestamp()[1],
                                            m.key(), m.value(), m.headers()))
            got[t] += 1
            total += 1
    c.close()
    for f in files.values():
        f.close()
    print(json.dumps({"consumed": got}))
    return 0 if total >= need else 1


def offsets_for_times(a):
    c = Consumer({"bootstrap.servers": a.bootstrap, "group.id": "sluice-it-unused",
                  "enable.auto.commit": False})
    qs = common.parse_queries(a.queries)
    for t, p, ts in qs:  # one call per query: several may name the same partition
        r = c.offsets_for_times([TopicPartition(t, p, ts)], timeout=20)[0]
        if r.error:
            raise KafkaException(r.error)
        print(f"{t} {p} {ts} {r.offset if r.offset >= 0 else -1}")
    c.close()


def main():
    a = common.add_common_args(argparse.ArgumentParser()).parse_args()
    rc = {"create-topics": create_topics, "produce": produce, "consume": consume,
          "offsets-for-times": offsets_for_times}[a.cmd](a)
    sys.exit(rc or 0)


if __name__ == "__main__":
    main()
