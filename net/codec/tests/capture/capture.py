#!/usr/bin/env python3
"""Captures raw request frames from real Kafka clients, as golden fixtures.

A tiny broker stand-in listens on 127.0.0.1, records every request frame it
receives (the bytes after the 4-byte size prefix) and answers just enough for
a producer to get through: ApiVersions, Metadata and Produce. Responses are
encoded from Kafka's message JSON schemas (extracted by net/codegen/regen.sh,
never committed), so whatever version a client picks can be answered.

Each client then produces three records to topic `golden`, partition 0, in one
batch. The first frame of each (api, version) per client is written to
`<out>/<client>/<api>_v<version>.bin`.

Usage:
  pip install kafka-python==3.0.12 confluent-kafka==2.16.1; apt-get install -y kcat
  capture.py --schemas /tmp/sluice-kafka-schemas-4.4.0/common/message \
             --out net/codec/tests/golden
"""

import argparse
import glob
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time

TOPIC = "golden"
TOPIC_ID = bytes(range(1, 17))
API_NAMES = {0: "Produce", 3: "Metadata", 18: "ApiVersions"}
RECORDS_PER_CLIENT = 3
# GetTelemetrySubscriptions and PushTelemetry.
TELEMETRY_API_KEYS = (71, 72)


def strip_comments(text):
    return "\n".join(l for l in text.splitlines() if not l.strip().startswith("//"))


def vrange(text):
    if text is None or text == "none":
        return None
    if text.endswith("+"):
        return int(text[:-1]), 1 << 15
    if "-" in text:
        lo, hi = text.split("-")
        return int(lo), int(hi)
    return int(text), int(text)


def in_range(text, v):
    r = vrange(text)
    return r is not None and r[0] <= v <= r[1]


class Schemas:
    def __init__(self, directory):
        self.by_name = {}
        for path in glob.glob(os.path.join(directory, "*.json")):
            with open(path) as f:
                d = json.loads(strip_comments(f.read()))
            self.by_name[d["name"]] = d

    def message(self, api_key, kind):
        for d in self.by_name.values():
            if d.get("apiKey") == api_key and d["type"] == kind:
                return d
        raise KeyError((api_key, kind))


def uvarint(n):
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


class Encoder:
    """Encodes a value (dicts keyed by schema field name) at one version."""

    def __init__(self, schema, version):
        self.version = version
        self.flexible = in_range(schema.get("flexibleVersions", "none"), version)
        self.structs = {}
        self.collect(schema.get("fields", []))
        for cs in schema.get("commonStructs", []):
            self.structs[cs["name"]] = cs["fields"]
            self.collect(cs["fields"])

    def collect(self, fields):
        for f in fields:
            if "fields" in f:
                self.structs[f["type"].lstrip("[]")] = f["fields"]
                self.collect(f["fields"])

    def struct(self, fields, value):
        out = bytearray()
        for f in fields:
            if not in_range(f["versions"], self.version):
                continue
            if in_range(f.get("taggedVersions"), self.version):
                continue  # tagged fields stay at their defaults: not written
            out += self.field(f, f["type"], value.get(f["name"]), in_range(f.get("nullableVersions"), self.version))
        if self.flexible:
            out += uvarint(0)
        return bytes(out)

    def length(self, n, wide):
        if self.flexible:
            return uvarint(0 if n is None else n + 1)
        return struct.pack(">i" if wide else ">h", -1 if n is None else n)

    def field(self, f, ty, value, nullable):
        fixed = {"int8": ">b", "int16": ">h", "int32": ">i", "int64": ">q", "uint16": ">H", "float64": ">d"}
        if ty in fixed:
            if value is None:
                d = f.get("default", 0)
                value = int(d, 0) if isinstance(d, str) else d
            return struct.pack(fixed[ty], value)
        if ty == "bool":
            if value is None:
                value = str(f.get("default", "false")).lower() == "true"
            return b"\x01" if value else b"\x00"
        if ty == "uuid":
            return value if value is not None else bytes(16)
        if ty == "string":
            if value is None and not nullable:
                value = ""
            raw = None if value is None else value.encode()
            return self.length(None if raw is None else len(raw), False) + (raw or b"")
        if ty in ("bytes", "records"):
            if value is None and not nullable:
                value = b""
            return self.length(None if value is None else len(value), True) + (value or b"")
        if ty.startswith("[]"):
            inner = ty[2:]
            if value is None and not nullable:
                value = []
            if value is None:
                return self.length(None, True)
            out = bytearray(self.length(len(value), True))
            for item in value:
                out += self.field({}, inner, item, False)
            return bytes(out)
        # A struct.
        fields = self.structs[ty]
        body = self.struct(fields, value or {})
        if nullable:
            return (b"\x01" + body) if value is not None else b"\xff"
        return body


class Stub:
    def __init__(self, schemas, port):
        self.schemas = schemas
        self.port = port
        self.frames = []  # (api_key, version, frame)
        self.lock = threading.Lock()
        self.produced = threading.Event()
        self.offset = 0
        # Advertise what Kafka 4.4 does (clients pick record formats and
        # features from the whole list) except client telemetry, which would
        # need answers of its own. Only the three APIs above are answered.
        advertised = []
        for req in sorted(schemas.by_name.values(), key=lambda d: d.get("apiKey", -1)):
            key = req.get("apiKey")
            if req["type"] != "request" or key in TELEMETRY_API_KEYS or vrange(req["validVersions"]) is None:
                continue
            if req.get("listeners") and "broker" not in req["listeners"]:
                continue
            lo, hi = vrange(req["validVersions"])
            if req.get("latestVersionUnstable"):
                hi -= 1
            advertised.append({"ApiKey": key, "MinVersion": lo, "MaxVersion": hi})
        self.advertised = advertised

    def respond(self, api_key, version, correlation_id, body_value):
        schema = self.schemas.message(api_key, "response")
        enc = Encoder(schema, version)
        header = struct.pack(">i", correlation_id)
        if enc.flexible and api_key != 18:
            header += uvarint(0)
        payload = header + enc.struct(schema["fields"], body_value)
        return struct.pack(">i", len(payload)) + payload

    def handle(self, frame):
        api_key, version, correlation_id = struct.unpack(">hhi", frame[:8])
        with self.lock:
            self.frames.append((api_key, version, frame))
        if api_key == 18:
            ours = next(a for a in self.advertised if a["ApiKey"] == 18)
            if version > ours["MaxVersion"]:
                return self.respond(18, 0, correlation_id, {"ErrorCode": 35, "ApiKeys": self.advertised})
            return self.respond(18, version, correlation_id, {"ErrorCode": 0, "ApiKeys": self.advertised})
        if api_key == 3:
            partition = {"ErrorCode": 0, "PartitionIndex": 0, "LeaderId": 1, "LeaderEpoch": 0,
                         "ReplicaNodes": [1], "IsrNodes": [1], "OfflineReplicas": []}
            topic = {"ErrorCode": 0, "Name": TOPIC, "TopicId": TOPIC_ID, "IsInternal": False,
                     "Partitions": [partition], "TopicAuthorizedOperations": -2147483648}
            body = {"ThrottleTimeMs": 0,
                    "Brokers": [{"NodeId": 1, "Host": "127.0.0.1", "Port": self.port, "Rack": None}],
                    "ClusterId": "sluice-capture", "ControllerId": 1, "Topics": [topic],
                    "ClusterAuthorizedOperations": -2147483648, "ErrorCode": 0}
            return self.respond(3, version, correlation_id, body)
        if api_key == 0:
            acks = self.produce_acks(version, frame)
            self.produced.set()
            if acks == 0:
                return None
            partition = {"Index": 0, "ErrorCode": 0, "BaseOffset": self.offset, "LogAppendTimeMs": -1,
                         "LogStartOffset": 0, "RecordErrors": [], "ErrorMessage": None}
            self.offset += RECORDS_PER_CLIENT
            body = {"Responses": [{"Name": TOPIC, "TopicId": TOPIC_ID, "PartitionResponses": [partition]}],
                    "ThrottleTimeMs": 0}
            return self.respond(0, version, correlation_id, body)
        return None

    @staticmethod
    def produce_acks(version, frame):
        flexible = version >= 9
        pos = 8
        (client_len,) = struct.unpack(">h", frame[pos:pos + 2])
        pos += 2 + max(client_len, 0)
        if flexible:
            pos += 1  # empty tagged-field section in the header
            n = frame[pos]  # compact transactional id length (clients send null: 0)
            pos += 1 + max(n - 1, 0)
        else:
            (n,) = struct.unpack(">h", frame[pos:pos + 2])
            pos += 2 + max(n, 0)
        (acks,) = struct.unpack(">h", frame[pos:pos + 2])
        return acks

    def serve_connection(self, conn):
        with conn:
            buf = b""
            while True:
                try:
                    chunk = conn.recv(65536)
                except OSError:
                    return
                if not chunk:
                    return
                buf += chunk
                while len(buf) >= 4:
                    (size,) = struct.unpack(">i", buf[:4])
                    if len(buf) < 4 + size:
                        break
                    frame, buf = buf[4:4 + size], buf[4 + size:]
                    reply = self.handle(frame)
                    if reply is not None:
                        conn.sendall(reply)


def listen():
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    sock.settimeout(0.2)
    return sock


def run_client(name, bootstrap):
    client_id = f"sluice-golden-{name}"
    if name == "kcat":
        data = "".join(f"k{i}:golden-{i}\n" for i in range(RECORDS_PER_CLIENT))
        subprocess.run(["kcat", "-P", "-b", bootstrap, "-t", TOPIC, "-p", "0", "-K:",
                        "-X", f"client.id={client_id}", "-X", "linger.ms=200",
                        "-X", "enable.idempotence=false", "-X", "request.required.acks=1"],
                       input=data.encode(), timeout=30, check=True)
    elif name == "confluent":
        code = f"""
import confluent_kafka
p = confluent_kafka.Producer({{"bootstrap.servers": "{bootstrap}", "client.id": "{client_id}",
    "linger.ms": 200, "enable.idempotence": False, "acks": 1}})
for i in range({RECORDS_PER_CLIENT}):
    p.produce("{TOPIC}", key=f"k{{i}}".encode(), value=f"golden-{{i}}".encode(), partition=0)
assert p.flush(20) == 0
"""
        subprocess.run([sys.executable, "-c", code], timeout=30, check=True)
    elif name == "kafka-python":
        code = f"""
import kafka
p = kafka.KafkaProducer(bootstrap_servers="{bootstrap}", client_id="{client_id}",
    linger_ms=200, acks=1, enable_idempotence=False)
futures = [p.send("{TOPIC}", key=f"k{{i}}".encode(), value=f"golden-{{i}}".encode(), partition=0)
           for i in range({RECORDS_PER_CLIENT})]
p.flush(20)
for f in futures:
    f.get(timeout=5)
p.close(5)
"""
        subprocess.run([sys.executable, "-c", code], timeout=30, check=True)
    else:
        raise ValueError(name)


def capture(schemas, out_dir, name):
    sock = listen()
    port = sock.getsockname()[1]
    stub = Stub(schemas, port)
    stop = threading.Event()

    def accept_loop():
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except socket.timeout:
                continue
            threading.Thread(target=stub.serve_connection, args=(conn,), daemon=True).start()

    t = threading.Thread(target=accept_loop, daemon=True)
    t.start()
    try:
        run_client(name, f"127.0.0.1:{port}")
    finally:
        stop.set()
        t.join()
        sock.close()
    if not stub.produced.is_set():
        raise RuntimeError(f"{name} sent no Produce request")
    target = os.path.join(out_dir, name)
    os.makedirs(target, exist_ok=True)
    seen = set()
    for api_key, version, frame in stub.frames:
        if (api_key, version) in seen:
            continue
        seen.add((api_key, version))
        path = os.path.join(target, f"{API_NAMES.get(api_key, api_key)}_v{version}.bin")
        with open(path, "wb") as f:
            f.write(frame)
        print(f"{name}: {os.path.basename(path)} ({len(frame)} bytes)")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--schemas", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--clients", default="kcat,confluent,kafka-python")
    args = ap.parse_args()
    schemas = Schemas(args.schemas)
    for name in args.clients.split(","):
        capture(schemas, args.out, name)


if __name__ == "__main__":
    main()
