#!/usr/bin/env bash
# Replicated: three sluice nodes against three Apache Kafka 4.4.0 nodes, replication
# factor 3, on this one machine (issue #9's benchmark).
#
# Usage: perf/compare-cluster.sh [--quick] [--duration SECS] [--fsync] [--out DIR]
#                                [--broker-cpus LIST] [--client-cpus LIST]
#   --quick          4 s per timed run (a smoke test of the harness)
#   --duration SECS  length of each timed run (default 15)
#   --fsync          Kafka log.flush.interval.messages=1 against sluice flush=always;
#                    default: Kafka's default flush against sluice flush=never (both
#                    acknowledge acks=all once every in-sync replica has the batch
#                    in memory / written, not fsynced)
#   --out DIR        where the report goes (default perf/results)
#   --broker-cpus LIST  CPUs every node is pinned to (taskset list, default 0)
#   --client-cpus LIST  CPUs the client is pinned to (default 1); --broker-cpus 0,1
#                    --client-cpus 0,1 lets three JVMs spread over both cores
#                    (fairer to Kafka, whose three nodes starve on one core)
# Env: SLUICE_BIN (default $CARGO_TARGET_DIR or target, /release/sluice),
#      KAFKA_LIB (default .cache/kafka/lib, from scripts/install-test-deps).
#
# Each cluster runs alone: nodes 1-3 on 127.0.0.1-3, each a broker and a controller
# voter (KRaft combined mode for Kafka, --controller-voters for sluice), all
# pinned to CPU 0 (taskset -c 0) by default, as the single broker of
# perf/compare.sh is; the client (sluice bench) is pinned to CPU 1. Topics: 6 partitions, replication
# factor 3, min.insync.replicas 2 on both. Workloads as in compare.sh: W1 100-byte
# messages, acks=all, maximum throughput; W2 1 KiB messages at half of Kafka's W1
# bytes per second (latency); W5 end to end at 20,000 msg/s.
# Writes perf/results/<date>-compare-cluster[-fsync][-brokers-on-CPUS].md and .svg
# via perf-report.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"

DURATION=15; OUT="$ROOT/perf/results"; MODE=full; PAIRING=default
BROKER_CPUS=0; CLIENT_CPUS=1
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) MODE=quick; DURATION=4; shift ;;
    --duration) DURATION="$2"; shift 2 ;;
    --fsync) PAIRING=fsync; shift ;;
    --out) OUT="$2"; shift 2 ;;
    --broker-cpus) BROKER_CPUS="$2"; shift 2 ;;
    --client-cpus) CLIENT_CPUS="$2"; shift 2 ;;
    -h|--help) sed -n '2,29p' "$0"; exit 0 ;;
    *) echo "compare-cluster.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
SLUICE="${SLUICE_BIN:-$TARGET/release/sluice}"
REPORT_BIN="$TARGET/release/perf-report"
KAFKA_LIB="${KAFKA_LIB:-$ROOT/.cache/kafka/lib}"
SPORT=29292; KPORT=29392   # client ports; controller / replication ports above them
[ -x "$SLUICE" ] || { echo "compare-cluster.sh: no $SLUICE: cargo build --release -p sluice" >&2; exit 1; }
[ -d "$KAFKA_LIB" ] || { echo "compare-cluster.sh: no $KAFKA_LIB: scripts/install-test-deps" >&2; exit 1; }
echo "compare-cluster.sh: building perf-report" >&2
CARGO_TARGET_DIR="$TARGET" cargo build --release -q -p perf --bin perf-report

WORK="$(mktemp -d "${TMPDIR:-/tmp}/sluice-compare-cluster.XXXXXX")"
RAW="$WORK/raw"; mkdir -p "$RAW"
MANIFEST="$RAW/manifest.tsv"; : > "$MANIFEST"
LOADS="$RAW/loads.txt"; : > "$LOADS"
PIDS=()
STAMP="$(date -u +%Y-%m-%d)"
STARTED="$(date -u +%FT%TZ)"; T0=$SECONDS

cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do
    for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$p" 2>/dev/null || true
  done
  PIDS=()
}
trap cleanup EXIT

log() { echo "compare-cluster.sh [$((SECONDS - T0))s]: $*" >&2; }
load1() { cut -d' ' -f1 /proc/loadavg; }
port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# run_client BROKER WORKLOAD FILE CMD...: as compare.sh's (pinned to the client CPUs).
run_client() {
  local broker="$1" w="$2" file="$3"; shift 3
  local l; l="$(load1)"
  echo "$PAIRING $broker $w $(uptime)" >> "$LOADS"
  log "$broker $w, load $l"
  local rc=0
  taskset -c "$CLIENT_CPUS" "$@" > "$RAW/$file" 2> "$RAW/$file.err" || rc=$?
  [ $rc -eq 0 ] || log "  exit $rc: $(tail -n 3 "$RAW/$file.err" | tr '\n' ' ')"
  local cmd; cmd="taskset -c $CLIENT_CPUS $*"; cmd="${cmd//$ROOT\//}"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "rf3-$PAIRING" "$broker" "$w" sluice-bench "$file" "$l" "$cmd" >> "$MANIFEST"
}

bootstrap() { echo "127.0.0.1:$1,127.0.0.2:$1,127.0.0.3:$1"; }

start_sluice() {
  local flush=never; [ "$PAIRING" = fsync ] && flush=always
  local voters="1@127.0.0.1:$((SPORT + 1)),2@127.0.0.2:$((SPORT + 1)),3@127.0.0.3:$((SPORT + 1))"
  local n
  for n in 1 2 3; do
    local d="$WORK/sluice-$n"; mkdir -p "$d/data"
    taskset -c "$BROKER_CPUS" "$SLUICE" serve --node-id "$n" --controller-voters "$voters" --shards 1 \
      --data-dir "$d/data" --listen "127.0.0.$n:$SPORT" --replication-port $((SPORT + 2)) \
      --metrics-listen off --flush "$flush" --num-partitions 6 > "$d/server.out" 2>&1 &
    PIDS+=($!)
  done
  echo "sluice: taskset -c $BROKER_CPUS target/release/sluice serve --node-id N --controller-voters $voters --shards 1 --listen 127.0.0.N:$SPORT --flush $flush" >> "$RAW/brokers.txt"
  for n in 1 2 3; do
    for _ in $(seq 1 300); do port_open "127.0.0.$n" $SPORT && break; sleep 0.2; done
    port_open "127.0.0.$n" $SPORT || { tail -n 20 "$WORK/sluice-$n/server.out" >&2; echo "compare-cluster.sh: sluice node $n did not start" >&2; exit 1; }
  done
  # A listening port is not a registered broker: creating an RF3 topic
  # before all three registered fails (INVALID_REPLICATION_FACTOR).
  for _ in $(seq 1 150); do
    [ "$("$SLUICE" cluster describe -b "127.0.0.1:$SPORT" --timeout-ms 2000 2>/dev/null | grep -c ' live ')" -ge 3 ] && return 0
    sleep 0.2
  done
  echo "compare-cluster.sh: three sluice brokers did not register" >&2; exit 1
}

start_kafka() {
  local voters="1@127.0.0.1:$((KPORT + 1)),2@127.0.0.2:$((KPORT + 1)),3@127.0.0.3:$((KPORT + 1))"
  { echo "num.partitions=6"; echo "default.replication.factor=3"; echo "min.insync.replicas=2"
    [ "$PAIRING" = fsync ] && echo "log.flush.interval.messages=1"; true; } > "$WORK/kafka.props"
  local n
  for n in 1 2 3; do
    local d="$WORK/kafka-$n"; mkdir -p "$d"
    KAFKA_EXTRA_PROPS="$WORK/kafka.props" KAFKA_LIB="$KAFKA_LIB" KAFKA_HEAP="-Xms256m -Xmx768m" \
      taskset -c "$BROKER_CPUS" "$ROOT/scripts/kafka-broker" run --host "127.0.0.$n" --node-id "$n" \
      --voters "$voters" --port $KPORT --dir "$d" > "$d/run.out" 2>&1 &
    PIDS+=($!)
  done
  echo "kafka: KAFKA_EXTRA_PROPS=<$(tr '\n' ' ' < "$WORK/kafka.props")> taskset -c $BROKER_CPUS scripts/kafka-broker run --host 127.0.0.N --node-id N --voters $voters --port $KPORT" >> "$RAW/brokers.txt"
  for n in 1 2 3; do
    local ok=0
    for _ in $(seq 1 600); do
      if port_open "127.0.0.$n" $KPORT && grep -q "Kafka Server started" "$WORK/kafka-$n/logs/server.log" 2>/dev/null; then ok=1; break; fi
      sleep 0.2
    done
    [ $ok = 1 ] || { tail -n 20 "$WORK/kafka-$n/run.out" >&2; echo "compare-cluster.sh: Kafka node $n did not start" >&2; exit 1; }
  done
}

W2_RATE=50000
workloads() { # BROKER BOOTSTRAP
  local b="$1" boot="$2" D="${DURATION}s"
  local common=(--partitions 6 --replication-factor 3 --acks all)
  run_client "$b" W1 "w1-$b.json" "$SLUICE" bench produce --bootstrap "$boot" --topic w1 \
    "${common[@]}" --message-size 100 --batch-size 256KiB --connections 4 --duration "$D" --json --quiet
  if [ "$b" = kafka ]; then
    W2_RATE="$(jq -r '(.produce.mb_per_sec * 1e6 / 2 / 1024) | floor' "$RAW/w1-$b.json" 2>/dev/null || echo 50000)"
    [ "$W2_RATE" -gt 0 ] 2>/dev/null || W2_RATE=50000
    echo "W2 rate $W2_RATE msg/s" >> "$RAW/notes.txt"
  fi
  run_client "$b" W2 "w2-$b.json" "$SLUICE" bench produce --bootstrap "$boot" --topic w2 \
    "${common[@]}" --message-size 1024 --rate "$W2_RATE" --linger 1ms --connections 4 --duration "$D" --json --quiet
  sync; sleep 3
  run_client "$b" W5 "w5-$b.json" "$SLUICE" bench e2e --bootstrap "$boot" --topic w5 \
    "${common[@]}" --message-size 100 --rate 20000 --linger 1ms --duration "$D" --json --quiet
}

HEAD_AT_START="$(git rev-parse --short HEAD)"
log "Kafka, three nodes"
start_kafka
workloads kafka "$(bootstrap $KPORT)"
cleanup; rm -rf "$WORK"/kafka-*/data; sync; sleep 2
log "sluice, three nodes"
start_sluice
workloads sluice "$(bootstrap $SPORT)"
cleanup; rm -rf "$WORK"/sluice-*/data

MAXLOAD="$(awk '{ for (i = 1; i <= NF; i++) if ($i == "average:") { v = $(i + 1); sub(",", "", v); print v } }' "$LOADS" | sort -g | tail -n 1)"
{
  echo "Run: $STARTED to $(date -u +%FT%TZ) ($((SECONDS - T0)) s), mode **$MODE**, pairing **$PAIRING**: $DURATION s per timed run."
  echo
  if awk -v m="${MAXLOAD:-0}" 'BEGIN { exit !(m > 1.5) }'; then
    echo "**Load average (1 min) reached $MAXLOAD before a run (2 cores). Three brokers, and for Kafka three JVMs with their GC and network threads, share CPUs $BROKER_CPUS, which accounts for much of it; other work on the machine would add to it (see the uptime lines below).**"
    echo
  fi
  echo "## Setup"
  echo
  echo "- Three nodes of each system on 127.0.0.1-3, every node a broker and a controller voter, all three pinned to CPUs $BROKER_CPUS; the client (\`sluice bench\`) pinned to CPUs $CLIENT_CPUS. Kafka runs first."
  echo "- Topics: 6 partitions, replication factor 3, \`min.insync.replicas\` 2, produced with acks=all: a batch is acknowledged once every in-sync replica has it."
  echo "- Pairing **$PAIRING**: $([ "$PAIRING" = fsync ] && echo "Kafka \`log.flush.interval.messages=1\` vs sluice \`flush=always\` (each replica fsyncs before it counts)" || echo "Kafka default flush (page cache) vs sluice \`flush=never\` (written with O_DIRECT, not fsynced)")."
  echo "- W2 rate = half of Kafka's W1 MB/s in 1 KiB messages: $(grep 'W2 rate' "$RAW/notes.txt" | tr '\n' ' ')."
  echo "- Brokers:"
  echo '```'
  sed 's/^/  /' "$RAW/brokers.txt"
  echo '```'
  echo
  echo "## Machine"
  echo
  echo '```'
  echo "kernel: $(uname -sr); CPUs: $(nproc) ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'))"
  echo "java: $(java -version 2>&1 | head -n 1); Kafka: $(ls "$KAFKA_LIB" | grep -m1 '^kafka_2.13-' || echo '?')"
  echo "sluice: binary built $(stat -c %y "$SLUICE" | cut -d. -f1); HEAD at run start $HEAD_AT_START"
  echo "uptime before each run:"
  sed 's/^/  /' "$LOADS"
  echo '```'
} > "$RAW/preamble.md"

mkdir -p "$OUT"
# One report per setup: -fsync for that pairing, -brokers-on-CPUS when not on CPU 0.
TAG=""; [ "$PAIRING" = fsync ] && TAG="-fsync"
[ "$BROKER_CPUS" = 0 ] || TAG="$TAG-brokers-on-${BROKER_CPUS//,/-}"
MD="$OUT/$STAMP-compare-cluster$TAG.md"; SVG="$OUT/$STAMP-compare-cluster$TAG.svg"
"$REPORT_BIN" "$RAW" "$MD" "$SVG" "sluice vs Apache Kafka 4.4.0, three nodes, replication factor 3 ($STAMP, $MODE)"
log "done: $MD; raw outputs in $RAW"
