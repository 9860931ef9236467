#!/usr/bin/env bash
# Phoenix against peers, whole processes, one command (docs/BENCHMARKS.md, "Against peers"):
#
#   bash benches/peer/run.sh
#
# 1. On one population of 2,000 real processes (phoenix-sim --profile high-cardinality),
#    the same number of scrapes each: the Phoenix procfs receiver, the floor reader, and
#    prometheus-process-exporter (Debian's package, installed if missing) configured to track
#    every process individually; CPU per scrape and per process, RSS, ratios.
# 2. The whole phoenix-agent with the baseline and five template pipelines
#    (configs/compare-templates.yaml, 10 s interval) on that population: CPU share and RSS.
# 3. The receiver (and the floor) on synthetic /proc trees of 10,000 and 100,000 processes
#    on /dev/shm: cost per process against N.
#
# Knobs (environment): SCRAPES (20), AGENT_SECONDS (60), SYNTH ("10000 100000"; "" skips),
# OUT (target/peer), PE_PORT (19256), AGENT_TELEMETRY (127.0.0.1:18888).
set -euo pipefail

cd "$(dirname "$0")/../.."
SCRAPES=${SCRAPES:-20}
AGENT_SECONDS=${AGENT_SECONDS:-60}
SYNTH=${SYNTH-10000 100000}
OUT=${OUT:-target/peer}
PE_PORT=${PE_PORT:-19256}
AGENT_TELEMETRY=${AGENT_TELEMETRY:-127.0.0.1:18888}
BIN=target/release
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
RESULTS=$OUT/results.txt
: >"$RESULTS"

say() { printf 'peer: %s\n' "$*" >&2; }

# Everything this script starts is stopped on exit, by its own pid only.
STARTED=()
SYNTH_DIRS=()
cleanup() {
    for pid in "${STARTED[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${STARTED[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    for dir in "${SYNTH_DIRS[@]}"; do
        rm -rf "$dir"
    done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

stop() { # stop PID: end one process this script started
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

# --- 1. prometheus-process-exporter ------------------------------------------------------
if ! command -v prometheus-process-exporter >/dev/null; then
    say "installing prometheus-process-exporter (Debian package)"
    SUDO=
    [ "$(id -u)" -eq 0 ] || SUDO=sudo
    $SUDO apt-get update
    # The package's service would take port 9256; policy-rc.d or not, it is not what we measure.
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y prometheus-process-exporter
fi
PE=$(command -v prometheus-process-exporter)

# --- 2. release binaries -------------------------------------------------------------------
say "building release binaries"
cargo build --release -q -p phoenix-agent --bin phoenix-agent \
    -p phoenix-benches --bin phoenix-sim --bin peer-compare

# --- 3. the population ---------------------------------------------------------------------
say "starting phoenix-sim --profile high-cardinality (2,000 processes)"
"$BIN/phoenix-sim" --profile high-cardinality --duration 1h >"$OUT/sim-summary.yaml" 2>"$OUT/sim.log" &
SIM=$!
STARTED+=("$SIM")
# The simulator says "N processes running after Xs" once every child is up.
for _ in $(seq 1 240); do
    grep -qs 'processes running after' "$OUT/sim.log" && break
    kill -0 "$SIM" 2>/dev/null || { cat "$OUT/sim.log" >&2; say "phoenix-sim died"; exit 1; }
    sleep 0.5
done
grep -q 'processes running after' "$OUT/sim.log" || { say "phoenix-sim not up after 120 s"; exit 1; }
grep 'processes running after' "$OUT/sim.log" >&2
sleep 2 # let the children finish their exec and first allocation

{
    echo "# machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), Linux $(uname -r)"
    echo "# load before: $(cut -d' ' -f1-3 /proc/loadavg); processes in /proc: $(ls /proc | grep -c '^[0-9]')"
    echo "# process-exporter: $($PE -version 2>&1 | head -1)"
} | tee -a "$RESULTS" >&2

# --- 4. the same scrapes for every reader --------------------------------------------------
say "floor and phoenix receiver: $SCRAPES scrapes each"
"$BIN/peer-compare" scrape --reader floor --scrapes "$SCRAPES" | tee -a "$RESULTS" >&2
"$BIN/peer-compare" scrape --reader phoenix --scrapes "$SCRAPES" | tee -a "$RESULTS" >&2

# One group per process: the group name is the PID, every command line matches, children
# are not folded into their parent's group. Kernel threads have an empty command line, so
# they are not tracked (Phoenix's receiver skips them by default too).
cat >"$OUT/process-exporter.yaml" <<'EOF'
process_names:
  - name: '{{.Comm}}-{{.PID}}'
    cmdline: ['.+']
EOF
run_exporter() { # label, extra flags...
    local label=$1
    shift
    "$PE" -config.path "$OUT/process-exporter.yaml" -children=false \
        -web.listen-address "127.0.0.1:$PE_PORT" "$@" >"$OUT/$label.log" 2>&1 &
    local pid=$!
    STARTED+=("$pid")
    for _ in $(seq 1 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$PE_PORT") 2>/dev/null && break
        sleep 0.1
    done
    say "$label (flags: ${*:-as packaged}): $SCRAPES scrapes of /metrics"
    "$BIN/peer-compare" http --pid "$pid" --url "127.0.0.1:$PE_PORT/metrics" \
        --scrapes "$SCRAPES" --label "$label" | tee -a "$RESULTS" >&2
    stop "$pid"
}
# As packaged (per-thread-name metrics and smaps on by default), then its cheapest flags.
run_exporter process-exporter
run_exporter process-exporter-lean -threads=false -gather-smaps=false

# --- 5. the whole agent ----------------------------------------------------------------------
if [ "$AGENT_SECONDS" -gt 0 ]; then
    # Baseline + five templates, all shadow, console table; 10 s interval; own telemetry port.
    sed -e 's/collection_interval: .*/collection_interval: 10s/' configs/compare-templates.yaml \
        >"$OUT/agent.yaml"
    printf '  telemetry:\n    address: "%s"\n' "$AGENT_TELEMETRY" >"$OUT/telemetry.yaml"
    # service.telemetry goes under service:, before the experiment block.
    awk -v tel="$(cat "$OUT/telemetry.yaml")" \
        '/^experiment:/ && !done { print tel; print ""; done=1 } { print }' \
        "$OUT/agent.yaml" >"$OUT/agent.yaml.tmp" && mv "$OUT/agent.yaml.tmp" "$OUT/agent.yaml"
    "$BIN/phoenix-agent" validate --config "$OUT/agent.yaml" >&2
    say "phoenix-agent, six pipelines (baseline + five templates), ${AGENT_SECONDS}s after a 12 s warm-up"
    "$BIN/phoenix-agent" --config "$OUT/agent.yaml" >"$OUT/agent.out" 2>"$OUT/agent.log" &
    AGENT=$!
    STARTED+=("$AGENT")
    # Past the first interval: startup and the cold identity cache are not the steady state.
    sleep 12
    kill -0 "$AGENT" || { cat "$OUT/agent.log" >&2; say "phoenix-agent died"; exit 1; }
    "$BIN/peer-compare" watch --pid "$AGENT" --seconds "$AGENT_SECONDS" --label phoenix-agent \
        | tee -a "$RESULTS" >&2
    stop "$AGENT"
fi

stop "$SIM"

# --- 6. cost against N on synthetic /proc -------------------------------------------------
for n in $SYNTH; do
    dir=/dev/shm/phoenix-peer-synth-$n
    SYNTH_DIRS+=("$dir")
    say "synthetic /proc, $n processes, in $dir"
    "$BIN/phoenix-sim" synth --out "$dir" --processes "$n" --ticks 1 >&2
    # Fewer scrapes where one takes seconds; the per-process figure does not need more.
    s=$((n >= 50000 ? 5 : SCRAPES))
    for reader in floor phoenix; do
        "$BIN/peer-compare" scrape --reader "$reader" --root "$dir" --scrapes "$s" \
            --label "synth-$reader" | tee -a "$RESULTS" >&2
    done
    rm -rf "$dir"
done

echo
"$BIN/peer-compare" report "$RESULTS"
say "raw results: $RESULTS"
