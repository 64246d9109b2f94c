#!/usr/bin/env bash
# sluice against Apache Kafka 4.4.0, side by side (issue #7).
#
# Usage: perf/compare.sh [--quick] [--duration SECS] [--w3-gib N | --w3-5gib]
#                        [--pairings default,fsync] [--out DIR] [--keep]
#   --quick          4 s per timed run, W3 on 256 MiB (about 4-5 minutes in all)
#   --duration SECS  length of each timed run (default 15)
#   --w3-gib N       GiB written then read back for W3 (default 2); --w3-5gib = 5
#   --pairings LIST  default (Kafka default flush vs sluice flush=never) and/or
#                    fsync (Kafka log.flush.interval.messages=1 vs sluice flush=always)
#   --out DIR        where the report goes (default perf/results)
#   --keep           keep the raw outputs and broker dirs (default: raw outputs
#                    are kept under $TMPDIR/sluice-compare.*, broker data deleted)
# Env: SLUICE_BIN (default $CARGO_TARGET_DIR or target, /release/sluice),
#      KAFKA_LIB (default .cache/kafka/lib, from scripts/install-test-deps).
#
# One broker at a time, pinned to CPU 0 (`taskset -c 0`): sluice with one shard
# on a fresh temp dir, or Kafka through scripts/kafka-broker run on its own
# temp dir. Every client (sluice bench, kafka-producer-perf-test,
# kafka-consumer-perf-test) is pinned to CPU 1. Page caches are dropped
# (needs root) before each catch-up read. Kafka runs first in each pairing:
# W2's rate is half of Kafka's W1 MB/s there, in 1 KiB messages.
# Writes perf/results/<date>-compare.md and <date>-compare.svg via perf-report.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"

DURATION=15; W3_GIB=2; W3_MIB=""; PAIRINGS="default,fsync"; OUT="$ROOT/perf/results"; KEEP=0; MODE=full
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) MODE=quick; DURATION=4; W3_MIB=256; shift ;;
    --duration) DURATION="$2"; shift 2 ;;
    --w3-gib) W3_GIB="$2"; W3_MIB=""; shift 2 ;;
    --w3-5gib) W3_GIB=5; W3_MIB=""; shift ;;
    --pairings) PAIRINGS="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --keep) KEEP=1; shift ;;
    -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
    *) echo "compare.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
W3_MIB="${W3_MIB:-$((W3_GIB * 1024))}"
W3_MESSAGES=$((W3_MIB * 1024))   # 1 KiB values
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
SLUICE="${SLUICE_BIN:-$TARGET/release/sluice}"
REPORT_BIN="$TARGET/release/perf-report"
KAFKA_LIB="${KAFKA_LIB:-$ROOT/.cache/kafka/lib}"
SPORT=29092; KPORT=29192
[ -x "$SLUICE" ] || { echo "compare.sh: no $SLUICE: cargo build --release -p sluice" >&2; exit 1; }
[ -d "$KAFKA_LIB" ] || { echo "compare.sh: no $KAFKA_LIB: scripts/install-test-deps" >&2; exit 1; }
echo "compare.sh: building perf-report" >&2
CARGO_TARGET_DIR="$TARGET" cargo build --release -q -p perf --bin perf-report

WORK="$(mktemp -d "${TMPDIR:-/tmp}/sluice-compare.XXXXXX")"
RAW="$WORK/raw"; mkdir -p "$RAW"
MANIFEST="$RAW/manifest.tsv"; : > "$MANIFEST"
LOADS="$RAW/loads.txt"; : > "$LOADS"
BROKER_PID=""
STAMP="$(date -u +%Y-%m-%d)"
STARTED="$(date -u +%FT%TZ)"; T0=$SECONDS
# What used CPU as the run began (a 1 s sample; builds beside it show here).
BUSY_AT_START="$(top -b -n 2 -d 1 -w 200 | awk '/^top -/ { n++ } n == 2 && $1 ~ /^[0-9]+$/ && $9 + 0 >= 5 { printf "%s %s%%; ", $12, $9 }')"

cleanup() {
  if [ -n "$BROKER_PID" ] && kill -0 "$BROKER_PID" 2>/dev/null; then
    kill -TERM "$BROKER_PID" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$BROKER_PID" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$BROKER_PID" 2>/dev/null || true
  fi
  BROKER_PID=""
}
trap cleanup EXIT

log() { echo "compare.sh [$((SECONDS - T0))s]: $*" >&2; }
load1() { cut -d' ' -f1 /proc/loadavg; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
drop_caches() {
  sync
  if ! echo 3 > /proc/sys/vm/drop_caches 2>/dev/null; then
    log "WARNING: cannot drop page caches (not root?)"; echo "drop_caches failed" >> "$RAW/notes.txt"
  fi
  sleep 1
}

# run_client PAIRING BROKER WORKLOAD CLIENT FILE CMD...: runs CMD pinned to
# CPU 1, output to FILE, and records it in the manifest (failed runs too).
run_client() {
  local pairing="$1" broker="$2" w="$3" client="$4" file="$5"; shift 5
  local l; l="$(load1)"
  echo "$pairing $broker $w $client $(uptime)" >> "$LOADS"
  log "$pairing $broker $w ($client), load $l"
  local rc=0
  taskset -c 1 "$@" > "$RAW/$file" 2> "$RAW/$file.err" || rc=$?
  [ $rc -eq 0 ] || log "  exit $rc: $(tail -n 3 "$RAW/$file.err" | tr '\n' ' ')"
  local cmd; cmd="taskset -c 1 $*"
  cmd="${cmd//$ROOT\//}"; cmd="${cmd//$KAFKA_LIB/.cache\/kafka\/lib}"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$pairing" "$broker" "$w" "$client" "$file" "$l" "$cmd" >> "$MANIFEST"
  return 0
}


start_sluice() { # PAIRING
  local flush=never; [ "$1" = fsync ] && flush=always
  local d="$WORK/sluice-$1"; mkdir -p "$d/data"
  SLUICE_CMD="taskset -c 0 target/release/sluice serve --shards 1 --data-dir DIR --listen 127.0.0.1:$SPORT --flush $flush --num-partitions 6"
  taskset -c 0 "$SLUICE" serve --shards 1 --data-dir "$d/data" --listen "127.0.0.1:$SPORT" \
    --flush "$flush" --num-partitions 6 > "$d/server.out" 2>&1 &
  BROKER_PID=$!
  for _ in $(seq 1 150); do port_open $SPORT && return 0; kill -0 $BROKER_PID 2>/dev/null || break; sleep 0.2; done
  tail -n 20 "$d/server.out" >&2; echo "compare.sh: sluice did not start" >&2; exit 1
}

start_kafka() { # PAIRING
  local d="$WORK/kafka-$1"; mkdir -p "$d"
  { echo "num.partitions=6"; [ "$1" = fsync ] && echo "log.flush.interval.messages=1"; true; } > "$WORK/kafka-$1.props"
  KAFKA_CMD="KAFKA_EXTRA_PROPS=<$(tr '\n' ' ' < "$WORK/kafka-$1.props")> taskset -c 0 scripts/kafka-broker run --port $KPORT --dir DIR"
  KAFKA_EXTRA_PROPS="$WORK/kafka-$1.props" KAFKA_LIB="$KAFKA_LIB" \
    taskset -c 0 "$ROOT/scripts/kafka-broker" run --port $KPORT --dir "$d" > "$d/run.out" 2>&1 &
  BROKER_PID=$!
  for _ in $(seq 1 300); do
    if port_open $KPORT && grep -q "Kafka Server started" "$d/logs/server.log" 2>/dev/null; then return 0; fi
    kill -0 $BROKER_PID 2>/dev/null || break; sleep 0.2
  done
  tail -n 20 "$d/run.out" >&2; echo "compare.sh: Kafka did not start" >&2; exit 1
}

stop_broker() { cleanup; sleep 1; }

# raw_read PAIRING BROKER: the physical limit for W3 in the same run: the W3
# topic's segment files read back with O_DIRECT in 1 MiB reads (dd, one file
# after another, on the client CPU), caches dropped first.
raw_read() {
  local files bytes t0 t1
  mapfile -t files < <(find "$WORK/$2-$1" -path '*/w3-[0-9]*' -name '*.log' -size +0 | sort)
  [ "${#files[@]}" -gt 0 ] || return 0
  drop_caches
  bytes=$(du -cb "${files[@]}" | tail -n 1 | cut -f1)
  t0=$(date +%s.%N)
  for f in "${files[@]}"; do taskset -c 1 dd if="$f" of=/dev/null bs=1M iflag=direct status=none; done
  t1=$(date +%s.%N)
  echo "$1 $2 raw W3 read $3 $(awk -v b="$bytes" -v a="$t0" -v z="$t1" 'BEGIN { printf "%.0f MB/s (%.0f MB)", b / 1e6 / (z - a), b / 1e6 }')" >> "$RAW/notes.txt"
}

# workloads PAIRING BROKER BOOTSTRAP
workloads() {
  local p="$1" b="$2" boot="$3" tag="$1-$2"
  local D="${DURATION}s"
  run_client "$p" "$b" W1 sluice-bench "w1-$tag.json" "$SLUICE" bench produce --bootstrap "$boot" \
    --topic w1 --partitions 6 --acks all --message-size 100 --batch-size 256KiB --connections 4 \
    --duration "$D" --json --quiet
  if [ "$b" = kafka ]; then
    # W2 rate: half of Kafka's W1 bytes per second, as 1 KiB messages.
    W2_RATE="$(jq -r '(.produce.mb_per_sec * 1e6 / 2 / 1024) | floor' "$RAW/w1-$tag.json" 2>/dev/null || echo 50000)"
    [ "$W2_RATE" -gt 0 ] 2>/dev/null || W2_RATE=50000
    echo "$p W2 rate $W2_RATE msg/s" >> "$RAW/notes.txt"
    # kafka-producer-perf-test W1 count: Kafka's W1 rate (at most 1M/s) x duration.
    KW1_RECORDS="$(jq -r "([.produce.msgs_per_sec, 1000000] | min) * $DURATION | floor" "$RAW/w1-$tag.json" 2>/dev/null || echo 0)"
    [ "$KW1_RECORDS" -gt 0 ] 2>/dev/null || KW1_RECORDS=$((DURATION * 200000))
    echo "$p kafka-producer-perf-test W1 records $KW1_RECORDS" >> "$RAW/notes.txt"
  fi
  run_client "$p" "$b" W2 sluice-bench "w2-$tag.json" "$SLUICE" bench produce --bootstrap "$boot" \
    --topic w2 --partitions 6 --acks all --message-size 1024 --rate "$W2_RATE" --linger 1ms \
    --connections 4 --duration "$D" --json --quiet
  run_client "$p" "$b" W3-fill sluice-bench "w3fill-$tag.json" "$SLUICE" bench produce --bootstrap "$boot" \
    --topic w3 --partitions 6 --acks all --message-size 1024 --batch-size 256KiB --connections 4 \
    --messages "$W3_MESSAGES" --json --quiet
  # The raw limit right before the read and again after it (raw_read drops
  # caches first): the virtio disk swings by a third from minute to minute.
  raw_read "$p" "$b" before
  run_client "$p" "$b" W3 sluice-bench "w3-$tag.json" "$SLUICE" bench consume --bootstrap "$boot" \
    --topic w3 --from earliest --connections 1 --fetch-size 1MiB --json --quiet
  drop_caches
  run_client "$p" "$b" W3 kafka-consumer-perf "kw3-$tag.txt" java -Xms256m -Xmx1g -cp "$KAFKA_LIB/*" \
    org.apache.kafka.tools.ConsumerPerformance --bootstrap-server "$boot" --topic w3 \
    --num-records "$W3_MESSAGES" --timeout 60000
  raw_read "$p" "$b" after
  run_client "$p" "$b" W4 sluice-bench "w4-$tag.json" "$SLUICE" bench produce --bootstrap "$boot" \
    --topic w4 --partitions 64 --acks all --message-size 100 --connections 64 \
    --duration "$D" --json --quiet
  sync; sleep 3   # let write-back settle before the latency run
  run_client "$p" "$b" W5 sluice-bench "w5-$tag.json" "$SLUICE" bench e2e --bootstrap "$boot" \
    --topic w5 --partitions 6 --acks all --message-size 100 --rate 20000 --linger 1ms \
    --duration "$D" --json --quiet
  # Kafka's own producer as the client: W1 (a count fixed per pairing) and W2.
  # Bounded by timeout; a cut-short run reports its last interim line.
  run_client "$p" "$b" W1 kafka-producer-perf "kw1-$tag.txt" timeout $((DURATION * 4 + 60)) \
    java -Xms256m -Xmx1g -cp "$KAFKA_LIB/*" org.apache.kafka.tools.ProducerPerformance \
    --bootstrap-server "$boot" --topic kw1 --num-records "$KW1_RECORDS" --record-size 100 \
    --throughput -1 --command-property acks=all batch.size=262144 linger.ms=5
  run_client "$p" "$b" W2 kafka-producer-perf "kw2-$tag.txt" timeout $((DURATION * 3 + 60)) \
    java -Xms256m -Xmx1g -cp "$KAFKA_LIB/*" org.apache.kafka.tools.ProducerPerformance \
    --bootstrap-server "$boot" --topic kw2 --num-records $((W2_RATE * DURATION)) --record-size 1024 \
    --throughput "$W2_RATE" --command-property acks=all linger.ms=1
}

W2_RATE=50000; KW1_RECORDS=$((DURATION * 200000))
HEAD_AT_START="$(git rev-parse --short HEAD)"
DIRTY_AT_START="$(git diff --name-only HEAD -- . ':!perf' | tr '\n' ' ')"
IFS=',' read -r -a PAIR_LIST <<< "$PAIRINGS"
for p in "${PAIR_LIST[@]}"; do
  case "$p" in default|fsync) ;; *) echo "compare.sh: unknown pairing $p" >&2; exit 2 ;; esac
  log "pairing $p: Kafka"
  start_kafka "$p"; echo "$p kafka: $KAFKA_CMD" >> "$RAW/brokers.txt"
  workloads "$p" kafka "127.0.0.1:$KPORT"
  stop_broker
  [ "$KEEP" = 1 ] || rm -rf "$WORK/kafka-$p/data"
  sync; sleep 2
  log "pairing $p: sluice"
  start_sluice "$p"; echo "$p sluice: $SLUICE_CMD" >> "$RAW/brokers.txt"
  workloads "$p" sluice "127.0.0.1:$SPORT"
  stop_broker
  [ "$KEEP" = 1 ] || rm -rf "$WORK/sluice-$p/data"
  sync; sleep 2
done

# The preamble: machine, build, settings, loads.
MAXLOAD="$(awk '{ for (i = 1; i <= NF; i++) if ($i == "average:") { v = $(i + 1); sub(",", "", v); print v } }' "$LOADS" | sort -g | tail -n 1)"
{
  echo "Run: $STARTED to $(date -u +%FT%TZ) ($((SECONDS - T0)) s), mode **$MODE**: $DURATION s per timed run, W3 on $W3_MIB MiB ($W3_MESSAGES x 1 KiB)."
  echo
  if awk -v m="${MAXLOAD:-0}" 'BEGIN { exit !(m > 1) }'; then
    echo "**Load average (1 min) reached $MAXLOAD before a run (see the load column; 2 cores).** The benchmark raises it itself: the kernel's disk workers (\`dio/vda\` kworkers, io_uring's \`iou-wrk\`) waiting on the disk count in it, and the last run's linger. Builds beside it would too: the \`busy at start\` line below lists what used CPU when the run began."
    echo
  fi
  [ "$MODE" = quick ] && { echo "Quick mode: runs are too short to pass segment rolls and too short for stable tails; a smoke test of the harness, not the comparison."; echo; }
  echo "## Setup"
  echo
  echo "- Pairings: **default** = Kafka default flush (page cache, no fsync per message) vs sluice \`flush=never\`; **fsync** = Kafka \`log.flush.interval.messages=1\` vs sluice \`flush=always\` (fsync before ack)."
  echo "- One broker at a time on a fresh temp dir, pinned to CPU 0; every client pinned to CPU 1. Kafka runs first in each pairing."
  echo "- W2 rate = half of Kafka's W1 MB/s in 1 KiB messages: $(grep 'W2 rate' "$RAW/notes.txt" | tr '\n' ';' | sed 's/;$//')."
  echo "- W3: the topic is filled (row W3-fill), caches dropped (\`sync; echo 3 > /proc/sys/vm/drop_caches\`), then read from the start by one \`sluice bench consume\` connection; caches dropped again, then read by \`kafka-consumer-perf-test\` (fetch rate, without group join). sluice reads with O_DIRECT, so dropping caches matters for Kafka only. The raw limit, measured on the same files right before the sluice-bench read and again after the Kafka-tool read (\`dd iflag=direct bs=1M\`, caches dropped): $(grep 'raw W3 read' "$RAW/notes.txt" | sed 's/ raw W3 read//' | tr '\n' ';' | sed 's/;$//')."
  echo "- \`kafka-producer-perf-test\` is one Java producer; W1: a fixed count per pairing, Kafka's sluice-bench W1 rate (at most 1M/s) x duration, as fast as possible ($(grep 'records' "$RAW/notes.txt" | tr '\n' ';' | sed 's/;$//')); W2: at the W2 rate. Each is bounded by a timeout; a run cut short shows its last interim figures. W4 and W5 have no Kafka-tool equivalent here."
  echo "- Latency: sluice bench counts from each message's intended send time (open loop); kafka-producer-perf-test from its actual send (closed loop, hides queueing), and gives no p99.99. MB = 10^6 bytes (Kafka tools' MiB converted)."
  echo "- Brokers:"
  echo '```'
  sed 's/^/  /' "$RAW/brokers.txt"
  echo '```'
  echo
  echo "## Machine"
  echo
  echo '```'
  echo "busy at start (>= 5% CPU): ${BUSY_AT_START:-nothing}"
  echo "kernel: $(uname -sr); CPUs: $(nproc) ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'))"
  echo "memory: $(free -m | awk '/Mem:/ { print $2 " MiB" }'); disk: $(df -h "$WORK" | awk 'NR==2 { print $1 " " $2 " " $5 " used" }')"
  echo "java: $(java -version 2>&1 | head -n 1); Kafka: $(ls "$KAFKA_LIB" | grep -m1 '^kafka_2.13-' || echo '?')"
  echo "sluice: binary built $(stat -c %y "$SLUICE" | cut -d. -f1) from the shared work tree; HEAD at run start $HEAD_AT_START"
  [ -z "$DIRTY_AT_START" ] || echo "  (the work tree had uncommitted changes by other sessions at run start: $DIRTY_AT_START)"
  echo "uptime before each run:"
  sed 's/^/  /' "$LOADS"
  [ -f "$RAW/notes.txt" ] && grep -v 'W2 rate\|records\|raw W3 read' "$RAW/notes.txt" | sed 's/^/note: /' || true
  echo '```'
} > "$RAW/preamble.md"

mkdir -p "$OUT"
MD="$OUT/$STAMP-compare.md"; SVG="$OUT/$STAMP-compare.svg"
"$REPORT_BIN" "$RAW" "$MD" "$SVG" "sluice vs Apache Kafka 4.4.0 ($STAMP, $MODE)"
log "done; raw outputs in $RAW"
