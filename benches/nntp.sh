#!/usr/bin/env bash
# benches/nntp.sh -- NNTP benchmark (a benchmark, not a CI test), Postern
# against INN 2.7's innd/nnrpd on the same machine in the same run:
#
#   1. streaming feed: N articles of L octets (default 100000 x 2 KB) as
#      MODE STREAM + TAKETHIS, pipelined on one connection
#      (benches/nntp_load.py feed), from a peer each server accepts feeds
#      from; prints articles accepted per second (first TAKETHIS to last 239).
#      Postern acknowledges an article only once it is fsynced (SPEC §13.1);
#      Debian's INN does not fsync articles at all by default.
#   2. OVER of the group's last OVER_N (default 100000) numbers, after the
#      feed filled it (benches/nntp_load.py over): the time from the command
#      to the end of its answer.
#
# Then the ratios Postern / INN (goal: >= 1 for the feed rate, <= 1 for the
# OVER time). INN runs from tests/peers/inn-feed.sh (root; it patches
# /etc/news) on 127.0.0.1:10119, group bench.over (created if missing; INN
# keeps what earlier runs fed it, and OVER takes the newest OVER_N).
#
# RUNS (default 3) rounds of both, in one invocation: each Postern round
# has a data directory of its own, and all of them are removed only at the
# end. (Removing 100,000 article files just before the next round starts
# would tax that round: ext4 passes over recently freed inodes when it
# allocates new ones, and INN's spool is never removed between rounds.)
#
# Env: N (100000), L (2048), OVER_N (100000), RUNS (3), PORT (postern's
# NNTP, 2219), RUN_INN (1), TIMEOUT (1800 s per step), BIN (a postern
# binary to run instead of building target/release/postern).
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
N=${N:-100000}; L=${L:-2048}; OVER_N=${OVER_N:-100000}; PORT=${PORT:-2219}; RUNS=${RUNS:-3}
RUN_INN=${RUN_INN:-1}; TIMEOUT=${TIMEOUT:-1800}
LOAD="$ROOT/benches/nntp_load.py"
INN="$ROOT/tests/peers/inn-feed.sh"
GROUP=bench.over

if [[ -z ${BIN:-} ]]; then
  echo "# building postern (release)"
  cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml" || exit 1
  BIN=$ROOT/target/release/postern
fi

WORK=$(mktemp -d /tmp/postern-nntp.XXXXXX)
cleanup() {
  [[ -n ${PID:-} ]] && kill "$PID" 2>/dev/null; wait 2>/dev/null
  [[ -n ${INN_STARTED:-} ]] && "$INN" down >/dev/null 2>&1
  rm -rf "$WORK"
}
trap cleanup EXIT
wait_port() { for _ in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.05; done; return 1; }
field() { awk -v k="$1" '{for (i=1;i<NF;i++) if ($i==k) print $(i+1)}'; }

echo "# N=$N L=$L OVER_N=$OVER_N RUNS=$RUNS ($(nproc) cores, $(date -u +%FT%TZ))"

round() {
  cat > "$WORK/postern.toml" <<CONF
[server]
hostname = "postern.bench.test"
data_dir = "$WORK/data$RUN"
local_domains = ["bench.test"]

[[virtual_server]]
name = "news"
protocol = "nntp"
listen = ["127.0.0.1:$PORT"]
tls = "none"

[[news_peer]]
name = "bench.feeder"
accept_from = ["127.0.0.0/8"]
groups = ["*"]

[control]
socket = "$WORK/control$RUN.sock"

[log]
level = "warn"
CONF

  TAG=b$(date +%s)

  "$BIN" --config "$WORK/postern.toml" group add "$GROUP" >/dev/null || { echo "postern group add $GROUP failed"; exit 1; }
  "$BIN" --config "$WORK/postern.toml" serve >"$WORK/out" 2>"$WORK/err" & PID=$!
  wait_port "$PORT" || { echo "postern did not start:"; cat "$WORK/err"; exit 1; }
  p_feed=$(timeout "$TIMEOUT" python3 "$LOAD" feed 127.0.0.1 "$PORT" "$N" "$L" "$GROUP" "p$TAG") || { echo "postern feed failed: $p_feed"; exit 1; }
  echo "postern feed: $p_feed"
  rss=$(awk '/VmHWM/ {print $2}' "/proc/$PID/status")
  p_over=$(timeout "$TIMEOUT" python3 "$LOAD" over 127.0.0.1 "$PORT" "$GROUP" "$OVER_N") || { echo "postern OVER failed: $p_over"; exit 1; }
  echo "postern OVER: $p_over; peak RSS $(( rss / 1024 )) MiB"
  kill "$PID"; wait "$PID" 2>/dev/null; PID=

  if [[ $RUN_INN == 1 ]]; then
    [[ -x /usr/lib/news/bin/innd ]] || { echo "INN (inn2) is not installed: no comparison (.ci/run installs it)"; exit 1; }
    if [[ -z ${INN_STARTED:-} ]]; then "$INN" up >/dev/null || exit 1; INN_STARTED=1; fi
    grep -q "^$GROUP " "$(/usr/lib/news/bin/innconfval pathdb)/active" ||
      su news -s /bin/sh -c "/usr/lib/news/bin/ctlinnd -s newgroup $GROUP y bench"
    i_feed=$(timeout "$TIMEOUT" python3 "$LOAD" feed 127.0.0.1 10119 "$N" "$L" "$GROUP" "i$TAG") || { echo "INN feed failed: $i_feed"; exit 1; }
    echo "INN innd feed: $i_feed"
    i_over=$(timeout "$TIMEOUT" python3 "$LOAD" over 127.0.0.1 10119 "$GROUP" "$OVER_N") || { echo "INN OVER failed: $i_over"; exit 1; }
    echo "INN nnrpd OVER: $i_over"
    awk -v pr="$(echo "$p_feed" | field rate)" -v ir="$(echo "$i_feed" | field rate)" \
        -v po="$(echo "$p_over" | field seconds)" -v io="$(echo "$i_over" | field seconds)" 'BEGIN{
      printf "ratios: feed rate postern/INN = %.2fx (goal >= 1); OVER time INN/postern = %.2fx (goal >= 1)\n", pr/ir, io/po }'
  fi
}

for RUN in $(seq "$RUNS"); do
  echo "## round $RUN"
  round || exit 1
done
