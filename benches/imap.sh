#!/usr/bin/env bash
# benches/imap.sh -- IMAP benchmark (a benchmark, not a CI test): Postern
# (release build) against Dovecot (../shared/peers/dovecot-up.sh) in the same
# run, on the same machine, with the same mail and the same client
# (benches/imap_load.py, implicit TLS, the same RSA-2048 certificate for both):
#
#   1. mixed load: C concurrent clients for T seconds, each session LOGIN,
#      CAPABILITY, SELECT, FETCH 1:* (FLAGS ENVELOPE), 3 x FETCH BODY.PEEK[],
#      2 x SEARCH, 2 x STORE, APPEND, STORE \Deleted, EXPUNGE, LOGOUT on its
#      own user's INBOX of M messages: commands per second and the ratio
#      (goal: Postern >= 1.5 x Dovecot);
#   2. large mailbox: the same L messages (100,000) in one user's INBOX on
#      both (APPENDed to Postern, written into Dovecot's Maildir); the time to
#      SELECT INBOX and to FETCH 1:* (UID FLAGS), first and best of 3
#      (goal: Postern <= Dovecot);
#   3. memory per idle session: S (1,000) logged-in sessions with INBOX
#      selected; VmRSS (and Pss) of the server's process tree before and
#      after, per session (goal: Postern < 64 KB). Postern is restarted
#      first and warmed up with 2 x C sessions (every user logged in once:
#      Argon2id's memory, the login cache and the listings are in the
#      baseline), so that the difference is what open sessions hold and not
#      memory that earlier parts freed and the allocator hands out again.
#
# Fairness: both servers store Argon2id hashes with the same parameters
# (Postern's: m=19456 KiB, t=2, p=1; the `argon2` CLI makes Dovecot's, so a
# login costs both one such hash), Dovecot runs in its high-performance mode
# (login processes serve many connections, `service_count = 0`) with limits
# raised for the session counts, and the data of both lives in BENCH_DIR,
# by default on tmpfs (/dev/shm): fsync is then free for both, and the
# figures compare the servers' work rather than this machine's disk
# (DISK=1 puts both under /var/tmp instead). Postern remembers successful
# logins for an hour (src/auth/cache.rs); Dovecot's auth_cache is off, as
# it ships (turned on with auth_cache_size, it did not speed up LOGIN on
# this passwd-file user database in a trial).
#
# Env: C (10), T (20 s), M (200), L (100000), S (1000), ROUNDS (1; mixed
# load rounds, alternating), SKIP (space-separated parts to skip: mix large
# idle), BENCH_DIR, DISK, P_PORT (postern imaps, 12993), DC_BASE (Dovecot's
# ports are DC_BASE+143, +993, +110, +995; default 11000).
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
C=${C:-10}; T=${T:-20}; M=${M:-200}; L=${L:-100000}; S=${S:-1000}; ROUNDS=${ROUNDS:-1}; SKIP=${SKIP:-}
P_PORT=${P_PORT:-12993}; DC_BASE=${DC_BASE:-11000}
# the peers scripts: beside the repository (../shared/peers), or beside a
# worktree's parent; PEERS=DIR to say where
PEERS=${PEERS:-$(cd "$ROOT/../shared/peers" 2>/dev/null || cd "$ROOT/../../shared/peers" 2>/dev/null && pwd)}
LOAD="python3 $ROOT/benches/imap_load.py"
PW=password
if [[ -n ${DISK:-} ]]; then BENCH_DIR=${BENCH_DIR:-/var/tmp}; else BENCH_DIR=${BENCH_DIR:-/dev/shm}; fi
skip() { [[ " $SKIP " == *" $1 "* ]]; }

[[ -n $PEERS && -x $PEERS/dovecot-up.sh ]] || { echo "../shared/peers/dovecot-up.sh is missing"; exit 1; }
command -v dovecot >/dev/null || { echo "dovecot is not installed: run ../shared/peers/install-peers.sh"; exit 1; }
if ! command -v argon2 >/dev/null; then
  echo "# installing Debian's argon2 CLI (Dovecot's password hashes with Postern's parameters)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends argon2 >/dev/null || { echo "cannot install argon2"; exit 1; }
fi
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

echo "# building postern (release)"
cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml" || exit 1
BIN=$ROOT/target/release/postern

WORK=$(mktemp -d "$BENCH_DIR/postern-imap-bench.XXXXXX"); chmod 755 "$WORK"  # Dovecot's users read below it
export PEERS_RUN=$WORK/peers MAILROOT=$WORK/dovecot-mail
export DC_IMAP_PORT=$((DC_BASE + 143)) DC_IMAPS_PORT=$((DC_BASE + 993)) DC_POP3_PORT=$((DC_BASE + 110)) DC_POP3S_PORT=$((DC_BASE + 995))
cleanup() {
  [[ -n ${PID:-} ]] && kill "$PID" 2>/dev/null
  "$PEERS/dovecot-down.sh" >/dev/null 2>&1
  wait 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT
wait_port() { for _ in $(seq 300); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.05; done; return 1; }
result() { grep '^RESULT ' | tail -1 | sed 's/^RESULT //'; }
field() { python3 -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }

USERS=(); for i in $(seq "$C"); do USERS+=("load$i"); done
P_USERS=$(printf '%s@bench.test,' "${USERS[@]}"); P_USERS=${P_USERS%,}
D_USERS=$(IFS=,; echo "${USERS[*]}")

# ---------------------------------------------------------------- Dovecot
echo "# starting Dovecot ($(dovecot --version | cut -d' ' -f1)) on 127.0.0.1:$DC_IMAPS_PORT, data in $WORK"
DC_EXTRA_USERS="${USERS[*]} big" "$PEERS/dovecot-up.sh" >"$WORK/dovecot-up.log" 2>&1 </dev/null || { cat "$WORK/dovecot-up.log"; exit 1; }
. "$PEERS/env.sh"
DC_CONF=$DC_DIR/dovecot.conf
# the same Argon2id parameters as Postern's (argon2 crate defaults)
HASH=$(printf '%s' "$PW" | argon2 "$(head -c 12 /dev/urandom | base64 | tr -d '+/=')" -id -t 2 -k 19456 -p 1 -e)
sed -i -E "s|^([^:]+):[^:]*:|\1:{ARGON2ID}$HASH:|" "$DC_DIR/users"
cat >>"$DC_CONF" <<CONF
# benches/imap.sh: Dovecot's high-performance mode and limits for $S sessions
default_process_limit = $((S + 500))
default_client_limit = $((4 * S + 2000))
default_vsz_limit = 1G
service imap-login {
  service_count = 0
  client_limit = $((S + 500))
  process_min_avail = 2
}
service imap {
  process_limit = $((S + 500))
}
protocol imap {
  mail_max_userip_connections = $((S + 500))
}
CONF
old=$(cat "$DC_DIR/run/master.pid"); kill "$old"
for _ in $(seq 100); do kill -0 "$old" 2>/dev/null || break; sleep 0.1; done
dovecot -c "$DC_CONF" || { echo "dovecot did not start with the benchmark settings"; tail "$DC_DIR/dovecot.log"; exit 1; }
wait_port "$DC_IMAPS_PORT" || { echo "dovecot did not listen on $DC_IMAPS_PORT"; exit 1; }
DC_PID=$(cat "$DC_DIR/run/master.pid")

# ---------------------------------------------------------------- Postern
cat >"$WORK/postern.toml" <<CONF
[server]
hostname = "localhost"
data_dir = "$WORK/postern-data"
local_domains = ["bench.test"]

[tls.certificates.main]
cert = "$TLS_DIR/cert.pem"
key = "$TLS_DIR/key.pem"

[[virtual_server]]
name = "imaps"
protocol = "imap"
listen = ["127.0.0.1:$P_PORT"]
tls = "implicit"
certificates = ["main"]
max_connections = $((S + 500))
max_connections_per_ip = $((S + 500))

[control]
socket = "$WORK/control.sock"

# every session of the load comes from 127.0.0.1: the per-client login
# throttle (attempts in flight count against failure_limit) must not pace it
[auth]
failure_limit = 100000

[log]
level = "warn"
CONF
"$BIN" --config "$WORK/postern.toml" serve >"$WORK/postern.out" 2>"$WORK/postern.err" </dev/null & PID=$!
wait_port "$P_PORT" || { echo "postern did not start:"; cat "$WORK/postern.err"; exit 1; }
for u in "${USERS[@]}" big; do
  printf '%s\n' "$PW" | "$BIN" --config "$WORK/postern.toml" user add "$u@bench.test" --password-stdin >/dev/null ||
    { echo "postern user add $u failed"; exit 1; }
done

echo "# C=$C clients T=${T}s M=$M messages per user, L=$L, S=$S ($(nproc) cores, $(date -u +%FT%TZ), data on $(df --output=fstype "$WORK" | tail -1))"
echo "# filling: $M messages into each of $C users on both servers (APPEND)"
$LOAD fill --port "$P_PORT" --users "$P_USERS" --password "$PW" --n "$M" --label postern | grep -v '^RESULT'
$LOAD fill --port "$DC_IMAPS_PORT" --users "$D_USERS" --password "$PW" --n "$M" --label dovecot | grep -v '^RESULT'

# ---------------------------------------------------------------- 1. mixed load
if ! skip mix; then
  best_p=0; best_d=0
  for r in $(seq "$ROUNDS"); do
    out=$($LOAD mix --port "$P_PORT" --users "$P_USERS" --password "$PW" --clients "$C" --seconds "$T" --label postern)
    echo "$out" | grep -v '^RESULT'; v=$(field "$(echo "$out" | result)" ops_per_s)
    best_p=$(python3 -c "print(max($best_p, $v))")
    out=$($LOAD mix --port "$DC_IMAPS_PORT" --users "$D_USERS" --password "$PW" --clients "$C" --seconds "$T" --label dovecot)
    echo "$out" | grep -v '^RESULT'; v=$(field "$(echo "$out" | result)" ops_per_s)
    best_d=$(python3 -c "print(max($best_d, $v))")
  done
  python3 -c "print('ratio: mixed load, postern %.0f ops/s / dovecot %.0f ops/s = %.2fx (goal >= 1.5)' % ($best_p, $best_d, $best_p / $best_d))"
fi

# ---------------------------------------------------------------- 2. large mailbox
if ! skip large; then
  # the same L messages (1-4 KB) for both: APPENDed to Postern, written into
  # Dovecot's Maildir (its APPEND takes tens of ms each here); Dovecot
  # indexes them at the first SELECT, reported apart from the best of 3
  echo "# filling: $L messages into big's INBOX on both servers"
  $LOAD fill --port "$P_PORT" --users big@bench.test --password "$PW" --n "$L" --lines 10:60 --conns 4 --label postern --timeout 600 | grep -v '^RESULT'
  $LOAD maildir --dir "$MAILROOT/big/Maildir" --n "$L" --lines 10:60 --label dovecot | grep -v '^RESULT'
  chown -R "$(id -u nobody):$(getent group nogroup | cut -d: -f3)" "$MAILROOT/big"
  lp=$($LOAD large --port "$P_PORT" --users big@bench.test --password "$PW" --label postern --timeout 600)
  echo "$lp" | grep -v '^RESULT'; lp=$(echo "$lp" | result)
  ld=$($LOAD large --port "$DC_IMAPS_PORT" --users big --password "$PW" --label dovecot --timeout 600)
  echo "$ld" | grep -v '^RESULT'; ld=$(echo "$ld" | result)
  python3 - "$lp" "$ld" <<'PY'
import json, sys
p, d = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print("ratio: large mailbox (%d messages), best of 3: SELECT postern %.3f s / dovecot %.3f s = %.2f; "
      "FETCH 1:* (UID FLAGS) postern %.3f s / dovecot %.3f s = %.2f (goal <= 1)"
      % (p["messages"], p["select"], d["select"], p["select"] / d["select"], p["fetch"], d["fetch"], p["fetch"] / d["fetch"]))
PY
fi

# ---------------------------------------------------------------- 3. idle sessions
if ! skip idle; then
  kill "$PID"; wait "$PID" 2>/dev/null
  "$BIN" --config "$WORK/postern.toml" serve >>"$WORK/postern.out" 2>>"$WORK/postern.err" </dev/null & PID=$!
  wait_port "$P_PORT" || { echo "postern did not start again:"; tail "$WORK/postern.err"; exit 1; }
  ip=$($LOAD idle --port "$P_PORT" --users "$P_USERS" --password "$PW" --sessions "$S" --warmup $((2 * C)) --pid "$PID" --label postern --timeout 300)
  echo "$ip" | grep -v '^RESULT'; ip=$(echo "$ip" | result)
  id=$($LOAD idle --port "$DC_IMAPS_PORT" --users "$D_USERS" --password "$PW" --sessions "$S" --warmup $((2 * C)) --pid "$DC_PID" --label dovecot --timeout 300)
  echo "$id" | grep -v '^RESULT'; id=$(echo "$id" | result)
  python3 - "$ip" "$id" <<'PY'
import json, sys
p, d = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print("memory per idle session: postern %.1f KB (goal < 64), dovecot %.1f KB RSS / %.1f KB Pss over %d processes"
      % (p["kb_per_session"], d["kb_per_session"], d["pss_kb_per_session"], d["processes"]))
PY
fi
grep -iE 'panic|error' "$WORK/postern.err" | head -5
