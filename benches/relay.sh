#!/usr/bin/env bash
# benches/relay.sh -- end-to-end relay benchmark (a benchmark, not a CI test):
#
#   smtp-source -> postern (client in relay_networks) -> smtp-sink
#
# N messages of L bytes over S sessions (default 20000 x 5 KB x 20). Prints
# accepted msg/s (until smtp-source has had its last 250), end-to-end msg/s
# (until the sink has counted all N) and postern's peak RSS. When
# ../shared/peers is present (RUN_POSTFIX=1, the default) it then runs, in
# the same run on the same machine, Postfix's own tools: the tools' ceiling
# (smtp-source -> smtp-sink directly) and Postfix relaying the same load, and
# prints the ratios. Debian's postfix package provides smtp-source and
# smtp-sink; it is installed if missing, and the system Postfix is never
# started (the peers scripts run a private instance on loopback).
#
# BASELINE=REV (a commit, tag or branch) also builds that revision (in a
# temporary git worktree, release profile, target dir target/bench-baseline)
# and runs the same load against it in the same run, ROUNDS times
# alternating baseline and current, then prints the best end-to-end figure
# of each and their ratio: how a change moved the figure.
#
# Env: N, S, L, PORT (postern, 2535), SINK_PORT (2536), PAR (postern's
# max_per_destination, 20), THREADS (postern's [server] worker_threads:
# 0 = one per core, the default; 1 = one event loop), RUN_POSTFIX (1),
# TIMEOUT (900 s), BASELINE (none), ROUNDS (2 with a baseline, else 1).
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
N=${N:-20000}; S=${S:-20}; L=${L:-5120}
PORT=${PORT:-2535}; SINK_PORT=${SINK_PORT:-2536}; PAR=${PAR:-20}; THREADS=${THREADS:-0}
RUN_POSTFIX=${RUN_POSTFIX:-1}; TIMEOUT=${TIMEOUT:-900}; BASELINE=${BASELINE:-}
ROUNDS=${ROUNDS:-$([[ -n $BASELINE ]] && echo 2 || echo 1)}
PEERS=${PEERS:-$(cd "$ROOT/../shared/peers" 2>/dev/null && pwd)}

if ! command -v smtp-source >/dev/null || ! command -v smtp-sink >/dev/null; then
  echo "# installing Debian's postfix package for smtp-source/smtp-sink (the service is not started)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  apt-get install -y -q --no-install-recommends postfix >/dev/null || { echo "cannot install postfix"; exit 1; }
fi

echo "# building postern (release)"
cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml" || exit 1
BIN=$ROOT/target/release/postern

WORK=$(mktemp -d /tmp/postern-relay.XXXXXX)
cleanup() {
  [[ -n ${PID:-} ]] && kill "$PID" 2>/dev/null; [[ -n ${SINK_PID:-} ]] && kill "$SINK_PID" 2>/dev/null; wait 2>/dev/null
  [[ -d $WORK/baseline ]] && git -C "$ROOT" worktree remove --force "$WORK/baseline" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT

if [[ -n $BASELINE ]]; then
  echo "# building the baseline $BASELINE (release, target/bench-baseline)"
  BASE_REV=$(git -C "$ROOT" rev-parse --short "$BASELINE") || { echo "BASELINE=$BASELINE is not a revision of this repository"; exit 1; }
  git -C "$ROOT" worktree add --detach -q "$WORK/baseline" "$BASE_REV" || exit 1
  CARGO_TARGET_DIR=$ROOT/target/bench-baseline cargo build --release --quiet --manifest-path "$WORK/baseline/Cargo.toml" || exit 1
  BASE_BIN=$ROOT/target/bench-baseline/release/postern
fi

cat > "$WORK/postern.toml" <<CONF
[server]
hostname = "relay.bench.test"
data_dir = "$WORK/data"
local_domains = ["bench.test"]
worker_threads = $THREADS

[[virtual_server]]
name = "mx"
protocol = "smtp"
listen = ["127.0.0.1:$PORT"]
relay_networks = ["127.0.0.0/8"]
max_connections_per_ip = 200

[[connector]]
name = "sink"
address_spaces = ["*"]
smarthost = "127.0.0.1:$SINK_PORT"
tls = "none"

[queue]
max_deliveries = 64
max_per_destination = $PAR

[control]
socket = "$WORK/control.sock"

[log]
level = "warn"
CONF

now() { date +%s.%N; }
wait_port() { for _ in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.05; done; return 1; }

# One run of the load against the binary $1, labelled $2; sets e2e.
run_postern() {
  rm -rf "$WORK/data" "$WORK/control.sock"
  SINK_LOG=$WORK/sink.log
  setsid smtp-sink -u nobody -c "127.0.0.1:$SINK_PORT" 1024 >"$SINK_LOG" 2>&1 </dev/null & SINK_PID=$!
  wait_port "$SINK_PORT" || { echo "smtp-sink did not start on $SINK_PORT"; exit 1; }
  "$1" --config "$WORK/postern.toml" serve >"$WORK/out" 2>"$WORK/err" & PID=$!
  wait_port "$PORT" || { echo "postern did not start:"; cat "$WORK/err"; exit 1; }

  sink_count() { tail -c 200 "$SINK_LOG" | tr '\r' '\n' | grep -o 'mesg=[0-9]*' | tail -1 | cut -d= -f2; }

  t0=$(now)
  timeout "$TIMEOUT" smtp-source -M localhost -f sender@example.com -t rcpt@example.net -s "$S" -m "$N" -l "$L" "127.0.0.1:$PORT"; rc=$?
  t1=$(now)
  deadline=$(( $(date +%s) + TIMEOUT ))
  while :; do
    c=$(sink_count); [[ -n $c ]] && (( c >= N )) && break
    (( $(date +%s) > deadline )) && { echo "TIMEOUT: the sink got ${c:-0}/$N"; break; }
    sleep 0.02
  done
  t2=$(now)
  rss=$(awk '/VmHWM/ {print $2}' "/proc/$PID/status")
  # utime + stime of the postern process, in clock ticks
  cpu_ticks=$(awk '{print $14 + $15}' "/proc/$PID/stat"); hz=$(getconf CLK_TCK)
  queue_left=$("$1" --config "$WORK/postern.toml" queue summary --json | wc -l)
  read -r acc e2e < <(awk -v n="$N" -v a="$t0" -v b="$t1" -v c="$t2" 'BEGIN{printf "%.0f %.0f\n", n/(b-a), n/(c-a)}')
  printf '%s relay: accept %.2f s = %s msg/s; end-to-end %.2f s = %s msg/s; peak RSS %d MiB; CPU %.1f s (%.0f us/msg); smtp-source rc=%d; destinations left in queue: %s\n' "$2" \
    "$(echo "$t1 - $t0" | bc)" "$acc" "$(echo "$t2 - $t0" | bc)" "$e2e" $(( rss / 1024 )) \
    "$(echo "$cpu_ticks / $hz" | bc -l)" "$(echo "$cpu_ticks / $hz * 1000000 / $N" | bc -l)" "$rc" "$queue_left"
  kill "$PID" "$SINK_PID" 2>/dev/null; wait "$PID" "$SINK_PID" 2>/dev/null; PID=; SINK_PID=
}

echo "# N=$N S=$S L=$L postern max_per_destination=$PAR worker_threads=$THREADS ($(nproc) cores, $(date -u +%FT%TZ))"
best=0; base_best=0
for round in $(seq "$ROUNDS"); do
  if [[ -n $BASELINE ]]; then
    run_postern "$BASE_BIN" "baseline $BASE_REV"; (( e2e > base_best )) && base_best=$e2e
  fi
  run_postern "$BIN" postern; (( e2e > best )) && best=$e2e
done
if [[ -n $BASELINE ]]; then
  awk -v p="$best" -v b="$base_best" -v r="$BASE_REV" 'BEGIN{printf "change: best end-to-end %d msg/s against %d msg/s for %s = %.2fx\n", p, b, r, p/b}'
fi
e2e=$best

if [[ $RUN_POSTFIX == 1 && -n $PEERS && -x $PEERS/bench-postfix-relay.sh ]]; then
  echo "# Postfix on the same machine, same load (../shared/peers/bench-postfix-relay.sh)"
  out=$(N=$N S=$S L=$L RUNS=1 MODE="ceiling relay" "$PEERS/bench-postfix-relay.sh" 2>&1)
  echo "$out" | grep -E "run|TIMEOUT|warning"
  ceil=$(echo "$out" | awk '/^ceiling run/ {print $6}' | tail -1)
  pf=$(echo "$out" | awk '/^relay +run/ {for (i=1;i<=NF;i++) if ($i=="end-to-end") print $(i+4)}' | tail -1)
  [[ -x $PEERS/postfix-down.sh ]] && "$PEERS/postfix-down.sh" >/dev/null 2>&1
  if [[ -n $ceil && -n $pf ]]; then
    awk -v p="$e2e" -v f="$pf" -v c="$ceil" 'BEGIN{printf "ratios: postern end-to-end / Postfix relay end-to-end = %.2fx (target >= 4); postern end-to-end / tools ceiling = %.2f (target >= 0.5)\n", p/f, p/c}'
  fi
fi
