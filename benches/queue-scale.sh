#!/usr/bin/env bash
# benches/queue-scale.sh -- the queue at scale (a benchmark, not a CI test).
#
# For each size in SIZES (default 10000 100000 1000000) it fills a fresh
# queue with that many messages of L bytes (default 2 KB) that are deferred:
# the only connector is a smarthost on a loopback port where nothing listens
# (connection refused, so every first attempt fails at once and the message
# waits for its next attempt, hours away). Then it prints, for that size:
#
#   ingest      msg/s while filling, and msg/s of 5,000 more once the queue
#               is that full
#   summary     wall time of `postern queue summary` (over the control socket)
#   list        `postern queue list --json`: time to the first line, time to
#               the last, the CLI's peak RSS
#   server RSS  (VmRSS full - VmRSS empty) / messages
#   restart     SIGTERM, start again: time to the first 220 banner, and time
#               to "queue manager started" in the log (the queue index rebuilt)
#   disk        bytes of data_dir per queued message
#   drain       a sink is started on the smarthost port, `queue retry --all`,
#               time until the queue is empty, and the disk left afterwards
#               (and how much of it is the message-tracking log, data_dir/track,
#               which is kept for [log] tracking_retention, not for the queue)
#
# Uses Postfix's smtp-source and smtp-sink (Debian's postfix package; it is
# installed if missing and never started) and GNU time.
#
# Env: SIZES, L, S (smtp-source sessions, 20), PORT (2545), DEAD_PORT (2546),
# TIMEOUT per phase in seconds (3600), BIN (a postern binary to use instead of
# building the release one).
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SIZES=${SIZES:-"10000 100000 1000000"}; L=${L:-2048}; S=${S:-20}
PORT=${PORT:-2545}; DEAD_PORT=${DEAD_PORT:-2546}; TIMEOUT=${TIMEOUT:-3600}

if ! command -v smtp-source >/dev/null || ! command -v smtp-sink >/dev/null; then
  echo "# installing Debian's postfix package for smtp-source/smtp-sink (the service is not started)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  apt-get install -y -q --no-install-recommends postfix >/dev/null || { echo "cannot install postfix"; exit 1; }
fi
[[ -x /usr/bin/time ]] || { echo "GNU time (/usr/bin/time, Debian package time) is needed for the CLI's peak RSS"; exit 1; }

if [[ -z ${BIN:-} ]]; then
  echo "# building postern (release)"
  cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml" || exit 1
  BIN=$ROOT/target/release/postern
fi

WORK=$(mktemp -d /tmp/postern-queue-scale.XXXXXX)
cleanup() {
  [[ -n ${PID:-} ]] && kill "$PID" 2>/dev/null; [[ -n ${SINK_PID:-} ]] && kill "$SINK_PID" 2>/dev/null; wait 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT

cat > "$WORK/postern.toml" <<CONF
[server]
hostname = "relay.bench.test"
data_dir = "$WORK/data"
local_domains = ["bench.test"]

[[virtual_server]]
name = "mx"
protocol = "smtp"
listen = ["127.0.0.1:$PORT"]
relay_networks = ["127.0.0.0/8"]
max_connections_per_ip = 200

[[connector]]
name = "dead"
address_spaces = ["*"]
smarthost = "127.0.0.1:$DEAD_PORT"
tls = "none"

[queue]
retry_schedule = ["6h"]
max_lifetime = "5d"
delay_warning_after = "0s"
max_deliveries = 64
max_per_destination = 20

[control]
socket = "$WORK/control.sock"

[log]
level = "info"
CONF

PG="$BIN --config $WORK/postern.toml"
now() { date +%s.%N; }
since() { echo "$(now) - $1" | bc; }
banner() { timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$PORT && head -c 3 <&3" 2>/dev/null; }
wait_banner() {
  local deadline=$(( $(date +%s) + TIMEOUT ))
  until [[ $(banner) == 220 ]]; do (( $(date +%s) > deadline )) && return 1; sleep 0.01; done
}
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$PID/status"; }
start() {
  "$BIN" --config "$WORK/postern.toml" serve >>"$WORK/out" 2>>"$WORK/err" & PID=$!
}
stop() { kill "$PID" 2>/dev/null; wait "$PID" 2>/dev/null; PID=; }
# queued messages, from the summary's counts
queued() { $PG queue summary --json 2>/dev/null | awk -F'"count":' 'NF > 1 {split($2, a, /[,}]/); n += a[1]} END {print n + 0}'; }
# every message has had its first attempt: nothing due before the retry
wait_deferred() {
  local n=$1 deadline=$(( $(date +%s) + TIMEOUT ))
  until (( $(grep -c 'deferred' "$WORK/err") >= n )); do
    (( $(date +%s) > deadline )) && { echo "TIMEOUT waiting for $n deferrals"; return 1; }
    sleep 0.5
  done
}

echo "# L=$L S=$S ($(nproc) cores, $(free -g | awk '/Mem/ {print $2}') GiB, $(date -u +%FT%TZ))"
printf '%-9s %10s %10s %9s %9s %9s %9s %10s %9s %9s %9s %9s %9s %11s\n' messages "fill/s" "full/s" summary "list1st" listall "listMiB" "B/msg RSS" restart reconcil "disk/msg" drain "disk left" "of it track"
for N in $SIZES; do
  rm -rf "$WORK/data" "$WORK/control.sock" "$WORK/out" "$WORK/err"
  start; wait_banner || { echo "postern did not start:"; cat "$WORK/err"; exit 1; }
  sleep 1; rss0=$(rss_kb)

  t0=$(now)
  timeout "$TIMEOUT" smtp-source -M localhost -f sender@example.com -t rcpt@example.net -s "$S" -m "$N" -l "$L" "127.0.0.1:$PORT" || echo "smtp-source failed"
  fill=$(echo "$N / $(since "$t0")" | bc)
  wait_deferred "$N"
  t0=$(now)
  smtp-source -M localhost -f sender@example.com -t rcpt@example.net -s "$S" -m 5000 -l "$L" "127.0.0.1:$PORT" || echo "smtp-source failed"
  full=$(echo "5000 / $(since "$t0")" | bc)
  total=$(( N + 5000 ))
  wait_deferred "$total"
  sleep 2
  rss1=$(rss_kb)
  per_msg=$(( (rss1 - rss0) * 1024 / total ))

  t0=$(now); $PG queue summary >/dev/null; summary=$(since "$t0")
  t0=$(now)
  first=$( { /usr/bin/time -f '%M' -o "$WORK/list.rss" $PG queue list --json | { IFS= read -r _; echo "$(now)"; cat >/dev/null; }; } )
  listall=$(since "$t0"); list1=$(echo "$first - $t0" | bc)
  list_mib=$(( $(cat "$WORK/list.rss") / 1024 ))

  disk=$(( $(du -sb "$WORK/data" | cut -f1) / total ))

  stop
  : >"$WORK/err"
  t0=$(now); start
  wait_banner || { echo "postern did not restart:"; cat "$WORK/err"; exit 1; }
  restart=$(since "$t0")
  until grep -q "queue manager started" "$WORK/err"; do sleep 0.01; done
  reconciled=$(since "$t0")

  setsid smtp-sink -u nobody -c "127.0.0.1:$DEAD_PORT" 1024 >"$WORK/sink.log" 2>&1 </dev/null & SINK_PID=$!
  sleep 0.5
  t0=$(now); $PG queue retry --all >/dev/null
  deadline=$(( $(date +%s) + TIMEOUT ))
  until [[ $(queued) == 0 ]]; do (( $(date +%s) > deadline )) && { echo "TIMEOUT draining"; break; }; sleep 1; done
  drain=$(since "$t0")
  kill "$SINK_PID" 2>/dev/null; wait "$SINK_PID" 2>/dev/null; SINK_PID=
  sleep 2
  left=$(du -sb "$WORK/data" | cut -f1)
  track=$(du -sb "$WORK/data/track" 2>/dev/null | cut -f1)
  stop

  printf '%-9s %10s %10s %8.3fs %8.3fs %8.2fs %9s %10s %8.2fs %8.2fs %9s %8.0fs %8sMB %9sMB\n' "$N" "$fill" "$full" "$summary" "$list1" "$listall" "$list_mib" "$per_msg" "$restart" "$reconciled" "$disk" "$drain" "$(( left / 1000000 ))" "$(( ${track:-0} / 1000000 ))"
done
echo "# goals (issue 13): summary < 1 s at 1M and within 3x of 1k; list < 64 MiB and first line at once;"
echo "#   <= 300 B RSS per message; restart listening < 2 s at 1M; disk returns near empty after draining"
