#!/usr/bin/env bash
# inn-feed.sh -- INN 2.7 (Debian's inn2) as a loopback feed peer for
# tests/nntp_feeds.rs and benches/nntp.sh. INN has one system-wide
# configuration, so this patches /etc/news (backups kept as *.postern-orig)
# and must run as root; the tests using it are serialised (.config/nextest.toml).
#
#   inn-feed.sh up [SITE PORT]   innd on 127.0.0.1:$INN_PORT (default 10119); with SITE and
#                                PORT a file feed (newsfeeds "SITE/SITE:!*,local.*:Tf,Wnm:")
#                                for Postern at 127.0.0.1:PORT, whose Path identity is SITE
#   inn-feed.sh push SITE PORT   flush INN's batch for SITE and send it with innxmit (INN's
#                                own feed program: streaming, else IHAVE) to 127.0.0.1:PORT
#   inn-feed.sh pathhost         INN's Path identity
#   inn-feed.sh down             stop innd, drop the feed entry
#
# Groups local.test and local.general exist in Debian's INN (created if not).
# 127.0.0.1 may feed INN: incoming.conf's "ME" peer (as shipped) names it.
set -euo pipefail
INN_PORT="${INN_PORT:-10119}"
BIN=/usr/lib/news/bin
[[ -x $BIN/innd ]] || { echo "INN (innd, Debian package inn2) is not installed: $BIN/innd is missing" >&2; exit 3; }
CONF=/etc/news/inn.conf
FEEDS=/etc/news/newsfeeds
RUN=$($BIN/innconfval pathrun)
OUT=$($BIN/innconfval pathoutgoing)
keep() { [[ -f $1.postern-orig ]] || cp -p "$1" "$1.postern-orig"; }
setkey() { # setkey KEY VALUE in inn.conf
  if grep -qE "^#?$1:" "$CONF"; then sed -i -E "s|^#?$1:.*$|$1:                      $2|" "$CONF"
  else echo "$1:                      $2" >> "$CONF"; fi; }
running() { [[ -f $RUN/innd.pid ]] && kill -0 "$(cat "$RUN/innd.pid")" 2>/dev/null; }
as_news() { su news -s /bin/sh -c "$*"; }
drop_feed() { sed -i '/^# postern-test begin/,/^# postern-test end/d' "$FEEDS"; }

case "${1:-}" in
up)
  keep "$CONF"; keep "$FEEDS"
  if running && ! (exec 3<>/dev/tcp/127.0.0.1/$INN_PORT) 2>/dev/null; then
    # an innd on another port (the package's own start): ours has to listen on INN_PORT
    "$0" down
  fi
  setkey port "$INN_PORT"; setkey bindaddress 127.0.0.1; setkey bindaddress6 none
  setkey server 127.0.0.1; setkey doinnwatch false
  drop_feed
  if [[ -n ${2:-} ]]; then
    printf '# postern-test begin\n%s/%s:!*,local.*:Tf,Wnm:\n# postern-test end\n' "$2" "$2" >> "$FEEDS"
  fi
  install -d -o news -g news "$RUN"
  touch /var/lib/news/.news.daily
  if running; then
    as_news "$BIN/ctlinnd -s reload newsfeeds postern-test"
  else
    rm -f "$RUN/innd.pid" "$RUN/control" "$RUN/nntpin"
    as_news "$BIN/innd -r"
    for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$INN_PORT) 2>/dev/null && break; sleep 0.1; done
    for _ in $(seq 100); do as_news "$BIN/ctlinnd -s -t 2 mode" >/dev/null 2>&1 && break; sleep 0.1; done
  fi
  for g in local.test local.general; do
    grep -q "^$g " "$($BIN/innconfval pathdb)/active" || as_news "$BIN/ctlinnd -s newgroup $g y postern-test"
  done
  echo "innd up on 127.0.0.1:$INN_PORT (pid $(cat "$RUN/innd.pid")), pathhost $($BIN/innconfval pathhost)"
  ;;
push)
  site=$2; port=$3
  as_news "$BIN/ctlinnd -s flush $site"
  # the batch file names articles by storage token; innxmit removes what it sent
  if [[ -s $OUT/$site ]]; then
    as_news "$BIN/innxmit -P $port -t 30 -T 60 127.0.0.1 $OUT/$site"
  fi
  ;;
pathhost) $BIN/innconfval pathhost ;;
down)
  if running; then
    pid=$(cat "$RUN/innd.pid")
    as_news "$BIN/ctlinnd -s -t 10 shutdown postern-test" || true
    for _ in $(seq 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill "$pid"
  fi
  drop_feed
  ;;
*) echo "usage: $0 up [SITE PORT] | push SITE PORT | pathhost | down" >&2; exit 2 ;;
esac
