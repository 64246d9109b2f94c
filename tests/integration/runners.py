"""How the orchestrator drives each client program (one subprocess per step).

Every runner offers create_topics / produce / consume / offsets_for_times with
the record content of clients/common.py. kcat is driven directly from here
(its topics are created through confluent-kafka's admin API).
"""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "clients"))
import common  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache"
CLIENTS_DIR = Path(__file__).resolve().parent / "clients"
STEP_TIMEOUT = float(os.environ.get("SLUICE_IT_STEP_TIMEOUT", "180"))


class ClientError(AssertionError):
    pass


def run(argv, timeout=STEP_TIMEOUT, input=None, what=None):
    """Run one client step; raise ClientError with its output on failure or time-out."""
    what = what or " ".join(map(str, argv[:6]))
    try:
        r = subprocess.run(argv, capture_output=True, timeout=timeout, input=input)
    except subprocess.TimeoutExpired as e:
        raise ClientError(f"{what}: timed out after {timeout}s\n"
                          f"stdout: {_tail(e.stdout)}\nstderr: {_tail(e.stderr)}") from None
    if r.returncode != 0:
        raise ClientError(f"{what}: exit {r.returncode}\nstdout: {_tail(r.stdout)}\n"
                          f"stderr: {_tail(r.stderr)}")
    return r.stdout.decode(errors="replace")


def _tail(b, n=3000):
    if not b:
        return ""
    s = b.decode(errors="replace") if isinstance(b, bytes) else b
    return s[-n:]


def _last_json(out):
    for line in reversed(out.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    return {}


class Runner:
    """A client program that implements the common subcommands."""

    name = "?"               # the client name inside record values
    codecs = common.CODECS
    sets_timestamps = True   # record i carries timestamp base_ts + 2i
    header_names = ("src", "idx")

    def argv(self, bootstrap):
        raise NotImplementedError

    def create_topics(self, bootstrap, topics, partitions=6):
        run(self.argv(bootstrap) + ["create-topics", "--partitions", str(partitions), *topics],
            timeout=60, what=f"{self.name} create-topics")

    def produce(self, bootstrap, specs, start, count, base_ts):
        out = run(self.argv(bootstrap) + ["produce", "--start", str(start), "--count", str(count),
                                          "--base-ts", str(base_ts)]
                  + [f"{t}={c}" for t, c in specs], what=f"{self.name} produce")
        return _last_json(out)

    def consume(self, bootstrap, topics, count, out_dir, partitions=6, timeout=90):
        out = run(self.argv(bootstrap) + ["consume", "--count", str(count), "--partitions",
                                          str(partitions), "--out-dir", str(out_dir),
                                          "--timeout", str(timeout), *topics],
                  timeout=timeout + 60, what=f"{self.name} consume")
        return {t: Path(out_dir) / f"{t}.tsv" for t in topics}

    def offsets_for_times(self, bootstrap, queries):
        """queries: [(topic, partition, ts)] -> [offset or -1]"""
        out = run(self.argv(bootstrap) + ["offsets-for-times"]
                  + [f"{t}:{p}:{ts}" for t, p, ts in queries],
                  timeout=90, what=f"{self.name} offsets-for-times")
        res = {}
        for line in out.splitlines():
            f = line.split()
            if len(f) == 4:
                res[(f[0], int(f[1]), int(f[2]))] = int(f[3])
        return [res.get(q) for q in queries]


    def start_stream(self, bootstrap, topic, acks_file, stop_file, rate, log_file, max_seconds=120):
        """The failover tests' producer (acks=all, idempotent, numbered records; Java
        and franz-go), in the background until stop_file exists: the Popen. Each
        acknowledged record is a line "partition offset seq" of acks_file."""
        argv = self.argv(bootstrap) + ["stream", "--topic", topic, "--acks-file", str(acks_file),
                                       "--stop-file", str(stop_file), "--seconds", str(max_seconds),
                                       "--rate", str(rate)]
        return subprocess.Popen(argv, stdout=open(log_file, "wb"), stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)


class PythonRunner(Runner):
    def __init__(self, name, module):
        self.name, self.module = name, module

    def argv(self, bootstrap):
        return [sys.executable, str(CLIENTS_DIR / self.module), "--bootstrap", bootstrap]


class JavaRunner(Runner):
    name = "java"
    main_class = "sluice.it.ClientMain"

    @staticmethod
    def classpath():
        return f"{CACHE}/java/target/classes:{CACHE}/java/lib/*"

    def argv(self, bootstrap):
        return ["java", "-Xmx768m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
                "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
                "-cp", self.classpath(), self.main_class, "--bootstrap", bootstrap]


class FranzRunner(Runner):
    name = "franz-go"

    def argv(self, bootstrap):
        return [str(CACHE / "bin/franz-client"), "--bootstrap", bootstrap]


class KcatRunner(Runner):
    """kcat (librdkafka 2.0 in Debian's build): no per-record headers or timestamps
    from its input, so its records carry only the static header "src" and the
    producer's clock as timestamp."""

    name = "kcat"
    sets_timestamps = False
    header_names = ("src",)

    def __init__(self):
        self.admin = PythonRunner("confluent", "confluent_client.py")

    def create_topics(self, bootstrap, topics, partitions=6):
        self.admin.create_topics(bootstrap, topics, partitions)

    def produce(self, bootstrap, specs, start, count, base_ts):
        for topic, codec in specs:
            data = b"".join(common.key(i) + b"\t" + common.value(self.name, codec, i) + b"\n"
                            for i in range(start, start + count))
            run(["kcat", "-P", "-b", bootstrap, "-t", topic, "-K", "\t", "-z", codec,
                 "-H", f"src={self.name}-{codec}", "-X", "enable.idempotence=true",
                 "-X", "linger.ms=5", "-X", "batch.size=1000000",
                 "-X", "queue.buffering.max.messages=200000", "-X", "message.timeout.ms=60000"],
                input=data, what=f"kcat produce {topic}")
        return {}

    def consume(self, bootstrap, topics, count, out_dir, partitions=6, timeout=90):
        paths = {}
        for t in topics:
            deadline = time.monotonic() + timeout
            raw = subprocess.run(
                ["kcat", "-C", "-b", bootstrap, "-t", t, "-o", "beginning", "-c", str(count),
                 "-e", "-q", "-f", "%p\t%o\t%T\t%k\t%s\t%h\n"],
                capture_output=True, timeout=max(deadline - time.monotonic(), 1))
            if raw.returncode != 0:
                raise ClientError(f"kcat consume {t}: exit {raw.returncode}: {_tail(raw.stderr)}")
            paths[t] = Path(out_dir) / f"{t}.tsv"
            with open(paths[t], "w") as f:
                for line in raw.stdout.split(b"\n"):
                    if not line:
                        continue
                    p, o, ts, k, v, h = line.split(b"\t", 5)
                    hdrs = [tuple(x.split(b"=", 1)) for x in h.split(b",")] if h else []
                    f.write(common.dump_line(int(p), int(o), int(ts), k, v,
                                             [(n.decode(), x) for n, x in hdrs]))
        return paths

    def offsets_for_times(self, bootstrap, queries):
        res = []
        for t, p, ts in queries:  # one call per query: kcat folds repeats of a partition
            out = run(["kcat", "-Q", "-b", bootstrap, "-t", f"{t}:{p}:{ts}"], timeout=30,
                      what="kcat -Q")
            off = None
            for line in out.splitlines():
                if line.startswith(f"{t} [{p}] offset "):
                    off = int(line.rsplit(" ", 1)[1])
            res.append(off)
        return res


RUNNERS = {
    "kcat": KcatRunner(),
    "confluent": PythonRunner("confluent", "confluent_client.py"),
    "kafka-python": PythonRunner("kafka-python", "kafka_python_client.py"),
    "java": JavaRunner(),
    "franz-go": FranzRunner(),
}
