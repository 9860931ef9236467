#!/usr/bin/env bash
# The whole agent through an OTLP backend outage, one command (docs/BENCHMARKS.md,
# "Disk queue under an outage"):
#
#   bash benches/outage/run.sh
#
# A synthetic /proc of 2,000 processes on /dev/shm, kept live (phoenix-sim synth --interval,
# a tick every interval, so counters move and processes come and go), scraped by two release
# agents at a 10 s interval, each with one OTLP/gRPC exporter pointing at a port where
# nothing listens, for 10 minutes:
#
#   disk    sending_queue.storage on (default max_megabytes, 256), directory under OUT
#   memory  the memory queue only (default queue_size, 100)
#
# Every 30 s it samples each agent's VmRSS and VmHWM (/proc/PID/status), the size of the
# queue directory, and the exporter's self-metrics; at the end, CPU seconds. Raw samples in
# OUT/samples.tsv, the summary on stdout.
#
# Knobs (environment): PROCESSES (2000), MINUTES (10), INTERVAL (10s), SAMPLE (30, seconds),
# MODES ("disk memory"), MAX_MEGABYTES (256), RECEIVER (shipped: the metrics and attributes
# of configs/agent.yaml, command lines off; defaults: the receiver's defaults, command lines
# on), OUT (<target>/outage), BUILD (1; 0 uses the binaries already built), DEAD_PORT (14317),
# TELEMETRY_BASE (18890).
set -euo pipefail

cd "$(dirname "$0")/../.."
PROCESSES=${PROCESSES:-2000}
MINUTES=${MINUTES:-10}
INTERVAL=${INTERVAL:-10s}
SAMPLE=${SAMPLE:-30}
MODES=${MODES:-disk memory}
MAX_MEGABYTES=${MAX_MEGABYTES:-256}
RECEIVER=${RECEIVER:-shipped}
TARGET=${CARGO_TARGET_DIR:-target}
OUT=${OUT:-$TARGET/outage}
BUILD=${BUILD:-1}
DEAD_PORT=${DEAD_PORT:-14317}
TELEMETRY_BASE=${TELEMETRY_BASE:-18890}
BIN=$TARGET/release

say() { printf 'outage: %s\n' "$*" >&2; }

# The queue directory must be absolute and free of symbolic links (the agent refuses them).
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd -P)
SYNTH_DIR=/dev/shm/phoenix-outage-$$

# Everything this script starts is stopped on exit, by its own pid only.
STARTED=()
cleanup() {
    for pid in "${STARTED[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${STARTED[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$SYNTH_DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ "$BUILD" = 1 ]; then
    say "building release binaries"
    cargo build --release -q -p phoenix-agent --bin phoenix-agent -p phoenix-benches --bin phoenix-sim
fi

# The outage: nothing may listen on the exporter's port.
if (exec 3<>"/dev/tcp/127.0.0.1/$DEAD_PORT") 2>/dev/null; then
    say "something listens on 127.0.0.1:$DEAD_PORT; set DEAD_PORT to a free port"
    exit 1
fi

say "writing a live synthetic /proc of $PROCESSES processes in $SYNTH_DIR"
"$BIN/phoenix-sim" synth --out "$SYNTH_DIR" --processes "$PROCESSES" --interval "$INTERVAL" \
    >"$OUT/synth.log" 2>&1 &
STARTED+=("$!")
for _ in $(seq 1 600); do
    [ -e "$SYNTH_DIR/proc/stat" ] && [ -e "$SYNTH_DIR/etc/passwd" ] && break
    sleep 0.1
done
[ -e "$SYNTH_DIR/proc/stat" ] || { cat "$OUT/synth.log" >&2; say "no synthetic tree"; exit 1; }

case $RECEIVER in
    shipped) procfs="
    metrics:
      process.cpu.utilization: { enabled: true }
      process.thread.count: { enabled: true }
      process.unix.file_descriptor.count: { enabled: true }
    resource_attributes:
      process.command_line: { enabled: false }" ;;
    defaults) procfs= ;;
    *) say "RECEIVER must be shipped or defaults"; exit 2 ;;
esac

declare -A PID TELEMETRY QUEUE
i=0
for mode in $MODES; do
    port=$((TELEMETRY_BASE + i))
    i=$((i + 1))
    queue=$OUT/queue-$mode
    rm -rf "$queue"
    storage=
    if [ "$mode" = disk ]; then
        storage="
      storage: { directory: $queue, max_megabytes: $MAX_MEGABYTES }"
    fi
    cat >"$OUT/agent-$mode.yaml" <<EOF
receivers:
  procfs:
    root_path: $SYNTH_DIR
    collection_interval: $INTERVAL$procfs
exporters:
  otlp_grpc:
    endpoint: http://127.0.0.1:$DEAD_PORT
    sending_queue:
      queue_size: 100$storage
service:
  pipelines:
    metrics: { receivers: [procfs], exporters: [otlp_grpc] }
  telemetry: { address: "127.0.0.1:$port" }
EOF
    "$BIN/phoenix-agent" --config "$OUT/agent-$mode.yaml" >"$OUT/agent-$mode.log" 2>&1 &
    PID[$mode]=$!
    STARTED+=("$!")
    TELEMETRY[$mode]=$port
    QUEUE[$mode]=$queue
    say "agent '$mode' pid ${PID[$mode]}, telemetry 127.0.0.1:$port"
done

status_kib() { # status_kib PID FIELD
    awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"
}
metric() { # metric MODE SERIES-PREFIX: the sum of the matching samples, 0 if none
    curl -s --max-time 5 "http://127.0.0.1:${TELEMETRY[$1]}/metrics" |
        awk -v s="$2" 'index($0, s) == 1 { sum += $NF } END { printf "%d\n", sum }'
}
dir_bytes() { # dir_bytes DIR: bytes of the files in it, 0 if missing
    find "$1" -type f -printf '%s\n' 2>/dev/null | awk '{ s += $1 } END { printf "%d\n", s }'
}
cpu_seconds() { # cpu_seconds PID: utime + stime
    awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); printf "%.2f\n", ($12 + $13) / hz }' \
        "/proc/$1/stat"
}

SAMPLES=$OUT/samples.tsv
printf 'seconds\tmode\trss_kib\thwm_kib\tqueue_dir_bytes\tdisk_batches\tdisk_bytes\tmemory_queue\tdropped\tdisk_full\n' \
    >"$SAMPLES"
START=$(date +%s)
END=$((START + MINUTES * 60))
say "outage for $MINUTES minutes; a sample every ${SAMPLE}s in $SAMPLES"
next=$START
while :; do
    now=$(date +%s)
    for mode in $MODES; do
        pid=${PID[$mode]}
        kill -0 "$pid" 2>/dev/null || { tail -20 "$OUT/agent-$mode.log" >&2; say "agent '$mode' died"; exit 1; }
        printf '%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' $((now - START)) "$mode" \
            "$(status_kib "$pid" VmRSS)" "$(status_kib "$pid" VmHWM)" \
            "$(dir_bytes "${QUEUE[$mode]}")" \
            "$(metric "$mode" phoenix_exporter_disk_queue_batches)" \
            "$(metric "$mode" phoenix_exporter_disk_queue_bytes)" \
            "$(metric "$mode" phoenix_exporter_queue_length)" \
            "$(metric "$mode" phoenix_exporter_dropped_batches_total)" \
            "$(metric "$mode" 'phoenix_exporter_disk_queue_dropped_batches_total{exporter="otlp_grpc",reason="disk_full"}')" \
            >>"$SAMPLES"
    done
    tail -n "$(echo $MODES | wc -w)" "$SAMPLES" >&2
    [ "$now" -ge "$END" ] && break
    next=$((next + SAMPLE))
    [ "$next" -gt "$END" ] && next=$END
    sleep $((next - $(date +%s) > 0 ? next - $(date +%s) : 0))
done

echo
echo "outage of $MINUTES min, $PROCESSES synthetic processes, receiver $RECEIVER, interval $INTERVAL, $(nproc) CPUs, $(uname -r)"
printf '%-7s %12s %12s %12s %14s %12s %8s %8s\n' mode 'RSS first' 'RSS last' 'VmHWM' 'queue on disk' 'disk batches' dropped 'CPU s'
for mode in $MODES; do
    pid=${PID[$mode]}
    awk -F'\t' -v m="$mode" -v cpu="$(cpu_seconds "$pid")" '
        $2 == m { if (!seen++) first = $3; last = $3; hwm = $4; dir = $5; batches = $6; dropped = $9 }
        END { printf "%-7s %9.1f MiB %8.1f MiB %8.1f MiB %10.1f MiB %12d %8d %8s\n",
              m, first / 1024, last / 1024, hwm / 1024, dir / 1048576, batches, dropped, cpu }
    ' "$SAMPLES"
done
if [[ " $MODES " == *" disk "* ]]; then
    awk -F'\t' '$2 == "disk" && $6 > 0 { b = $7 / $6 } END { if (b) printf "disk: %.2f MiB a batch (disk_queue_bytes / disk_queue_batches)\n", b / 1048576 }' "$SAMPLES"
fi
