#!/usr/bin/env python3
"""benches/nntp_load.py -- the load of benches/nntp.sh, one NNTP server at a time.

  nntp_load.py feed HOST PORT N SIZE GROUP TAG
      MODE STREAM, then N articles of about SIZE octets as TAKETHIS, all
      pipelined on one connection (a writer thread sends while this one reads
      the answers, as innfeed does in its no-CHECK mode). Prints
      "accepted A refused R seconds T rate A/T".
  nntp_load.py over HOST PORT GROUP N
      MODE READER, GROUP, then OVER of the group's last N numbers; prints
      "lines L seconds T" for the OVER alone (command to the end of its
      multi-line answer).

The articles carry Path "bench.feeder!not-for-mail" and Message-IDs
<TAG.i@bench.feeder>, so repeated runs need a new TAG.
"""
import socket
import sys
import threading
import time
from email.utils import formatdate


def lines(sock):
    buf = b""
    while True:
        i = buf.find(b"\n")
        while i >= 0:
            yield buf[: i + 1]
            buf = buf[i + 1 :]
            i = buf.find(b"\n")
        chunk = sock.recv(1 << 20)
        if not chunk:
            return
        buf += chunk


def article(i, size, group, tag):
    mid = f"<{tag}.{i}@bench.feeder>"
    head = (
        f"Path: bench.feeder!not-for-mail\r\nFrom: Bench <bench@feeder.test>\r\n"
        f"Newsgroups: {group}\r\nSubject: benchmark article {i}\r\nMessage-ID: {mid}\r\n"
        f"Date: {formatdate()}\r\n\r\n"
    )
    line = "The quick brown fox jumps over the lazy dog, again and again. 0123456789\r\n"
    body = line * max(1, (size - len(head)) // len(line))
    return mid, (head + body).encode()


def feed(host, port, n, size, group, tag):
    s = socket.create_connection((host, port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    rd = lines(s)
    greet = next(rd)
    assert greet[:3] in (b"200", b"201"), greet
    s.sendall(b"MODE STREAM\r\n")
    r = next(rd)
    assert r.startswith(b"203"), r
    payload = []
    for i in range(n):
        mid, a = article(i, size, group, tag)
        payload.append(b"TAKETHIS " + mid.encode() + b"\r\n" + a + b".\r\n")
    chunks = [b"".join(payload[i : i + 256]) for i in range(0, n, 256)]
    t0 = time.monotonic()
    w = threading.Thread(target=lambda: [s.sendall(c) for c in chunks])
    w.start()
    acc = ref = 0
    for _ in range(n):
        r = next(rd)
        if r.startswith(b"239"):
            acc += 1
        else:
            ref += 1
            if ref <= 3:
                print("refused:", r.decode(errors="replace").strip(), file=sys.stderr)
    t = time.monotonic() - t0
    w.join()
    s.sendall(b"QUIT\r\n")
    print(f"accepted {acc} refused {ref} seconds {t:.3f} rate {acc / t:.0f}")


def over(host, port, group, n):
    s = socket.create_connection((host, port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    rd = lines(s)
    next(rd)
    s.sendall(b"MODE READER\r\n")
    next(rd)
    s.sendall(f"GROUP {group}\r\n".encode())
    r = next(rd).split()
    assert r[0] == b"211", r
    high = int(r[3])
    low = max(1, high - n + 1)
    t0 = time.monotonic()
    s.sendall(f"OVER {low}-{high}\r\n".encode())
    r = next(rd)
    assert r.startswith(b"224"), r
    count = 0
    for l in rd:
        if l == b".\r\n":
            break
        count += 1
    t = time.monotonic() - t0
    s.sendall(b"QUIT\r\n")
    print(f"lines {count} seconds {t:.3f}")


if __name__ == "__main__":
    if sys.argv[1] == "feed":
        feed(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6], sys.argv[7])
    elif sys.argv[1] == "over":
        over(sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5]))
    else:
        sys.exit("usage: nntp_load.py feed HOST PORT N SIZE GROUP TAG | over HOST PORT GROUP N")
