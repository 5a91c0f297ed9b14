#!/usr/bin/env python3
"""IMAP load generator for benches/imap.sh (a benchmark, not a test).

One asyncio client that speaks the same IMAP to any server over implicit
TLS, so that Postern and Dovecot get exactly the same commands:

  fill   APPEND N generated messages to each of USERS (pipelined with
         LITERAL+ when offered, over --conns connections per user)
  mix    --clients sessions at a time, for --seconds, each session a
         realistic mix: LOGIN, SELECT INBOX, FETCH 1:* (FLAGS ENVELOPE),
         3 x FETCH of a whole body, 2 x SEARCH, 2 x STORE, APPEND,
         STORE \\Deleted of the appended message, EXPUNGE, LOGOUT; prints
         commands per second (every tagged command is one operation)
  large  time to SELECT INBOX and to FETCH 1:* (UID FLAGS) (reading every
         byte), --rounds times on new sessions; prints the first and the best
  idle   open --sessions logged-in sessions with INBOX selected and
         report the server's memory before and after (VmRSS and Pss summed
         over --pid and all its descendants)

Every result is printed as one JSON line (prefix "RESULT ") for the script,
after a human-readable line.
"""

import argparse
import asyncio
import json
import os
import random
import re
import ssl
import sys
import time

LIT = re.compile(rb"\{(\d+)\+?\}\r\n$")


def tls_context():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


CTX = tls_context()


class ImapError(Exception):
    pass


class Conn:
    """One IMAP session: `cmd` sends a tagged command and returns
    (untagged lines, tagged line) as bytes, literals inlined."""

    def __init__(self):
        self.n = 0
        self.literal_plus = False

    async def open(self, port, timeout):
        self.timeout = timeout
        self.r, self.w = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port, ssl=CTX, server_hostname="localhost", limit=1 << 24), timeout
        )
        self.greeting = await self.line()
        return self

    async def line(self):
        l = await asyncio.wait_for(self.r.readuntil(b"\r\n"), self.timeout)
        while True:
            m = LIT.search(l)
            if not m:
                return l
            lit = await asyncio.wait_for(self.r.readexactly(int(m.group(1))), self.timeout)
            rest = await asyncio.wait_for(self.r.readuntil(b"\r\n"), self.timeout)
            l = l + lit + rest

    async def cmd(self, text, literal=None, check=True):
        self.n += 1
        tag = b"c%d" % self.n
        if literal is None:
            self.w.write(tag + b" " + text + b"\r\n")
        elif self.literal_plus:
            self.w.write(tag + b" " + text + b" {%d+}\r\n" % len(literal) + literal + b"\r\n")
        else:
            self.w.write(tag + b" " + text + b" {%d}\r\n" % len(literal))
            while True:
                l = await self.line()
                if l.startswith(b"+"):
                    break
                if l.startswith(tag + b" "):
                    raise ImapError("%s -> %s" % (text, l))
            self.w.write(literal + b"\r\n")
        untagged = []
        while True:
            l = await self.line()
            if l.startswith(tag + b" "):
                if check and not l.startswith(tag + b" OK"):
                    raise ImapError("%s -> %s" % (text[:60], l.strip()))
                return untagged, l
            untagged.append(l)

    async def bulk(self, text):
        """A command whose response has no literals, read in large chunks
        (not line by line) so that the client's parsing does not time it;
        returns (the number of untagged FETCH responses, the tagged line)."""
        self.n += 1
        tag = b"c%d" % self.n
        self.w.write(tag + b" " + text + b"\r\n")
        end = b"\r\n" + tag + b" "
        fetches, tail = 0, b""
        while True:
            chunk = await asyncio.wait_for(self.r.read(1 << 20), self.timeout)
            if not chunk:
                raise ImapError("connection closed during %s" % text)
            data = tail + chunk
            at = data.find(end)
            if at >= 0:
                fetches += data[:at].count(b" FETCH (") - tail.count(b" FETCH (")
                rest = data[at + 2:]
                while not rest.endswith(b"\r\n"):
                    rest += await asyncio.wait_for(self.r.read(1 << 16), self.timeout)
                return fetches, rest
            fetches += data.count(b" FETCH (") - tail.count(b" FETCH (")
            tail = data[-64:]

    async def login(self, user, password):
        await self.cmd(b'LOGIN "%s" "%s"' % (user.encode(), password.encode()))
        caps, _ = await self.cmd(b"CAPABILITY")
        self.literal_plus = any(b" LITERAL+" in c for c in caps)

    def close(self):
        try:
            self.w.close()
        except Exception:
            pass


WORDS = (
    "report invoice meeting quarterly figures travel budget review draft minutes agenda project "
    "deadline customer supplier contract offer summary update status request approval"
).split()


LINES = (25, 250)


def message(i, rng):
    """A plausible message (2-20 KB with the default LINES), deterministic
    in i and rng."""
    subject = " ".join(rng.choice(WORDS) for _ in range(4)) + " %d" % i
    body_lines = rng.randint(*LINES)
    body = "".join(
        " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 12))) + "\r\n" for _ in range(body_lines)
    )
    return (
        "From: Sender %d <sender%d@example.org>\r\n"
        "To: user@example.test\r\n"
        "Subject: %s\r\n"
        "Date: Mon, 23 Nov 2026 10:%02d:%02d +0000\r\n"
        "Message-ID: <bench-%d@example.org>\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "\r\n%s" % (i % 50, i % 50, subject, (i // 60) % 60, i % 60, i, body)
    ).encode()


# ------------------------------------------------------------------ fill


async def fill_user(port, user, password, n, conns, start, timeout):
    async def one(k):
        c = await Conn().open(port, timeout)
        await c.login(user, password)
        rng = random.Random(k)
        done = 0
        window = 32 if c.literal_plus else 1
        idx = list(range(start + k, start + n, conns))
        # pipelined APPENDs with LITERAL+: keep `window` in flight
        pending = []
        for i in idx:
            msg = message(i, random.Random(i))
            if c.literal_plus:
                c.n += 1
                tag = b"c%d" % c.n
                c.w.write(tag + b" APPEND INBOX {%d+}\r\n" % len(msg) + msg + b"\r\n")
                pending.append(tag)
                if len(pending) >= window:
                    await drain(c, pending, window // 2)
            else:
                await c.cmd(b"APPEND INBOX", msg)
            done += 1
        await drain(c, pending, 0)
        await c.cmd(b"LOGOUT", check=False)
        c.close()
        return done

    async def drain(c, pending, keep):
        while len(pending) > keep:
            l = await c.line()
            if l.startswith(pending[0] + b" "):
                if not l.startswith(pending[0] + b" OK"):
                    raise ImapError("APPEND -> %s" % l)
                pending.pop(0)

    counts = await asyncio.gather(*(one(k) for k in range(conns)))
    return sum(counts)


async def fill(a):
    t0 = time.time()
    total = 0
    for user in a.users.split(","):
        total += await fill_user(a.port, user, a.password, a.n, a.conns, a.start, a.timeout)
    dt = time.time() - t0
    print("%s fill: %d messages in %.1f s = %.0f APPENDs/s" % (a.label, total, dt, total / dt))
    print("RESULT " + json.dumps({"mode": "fill", "label": a.label, "messages": total, "seconds": dt}))


async def maildir(a):
    """Write the messages `fill` would APPEND straight into a Maildir's cur/
    (for Dovecot: far faster than its APPEND; it indexes them at the first
    SELECT, which `large` reports apart)."""
    cur = os.path.join(a.dir, "cur")
    for d in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(a.dir, d), exist_ok=True)
    t0 = time.time()
    for i in range(a.start, a.start + a.n):
        msg = message(i, random.Random(i))
        name = "%d.M%dP1.bench,S=%d,W=%d:2," % (1790000000 + i, i, len(msg), len(msg))
        with open(os.path.join(cur, name), "wb") as f:
            f.write(msg)
    dt = time.time() - t0
    print("%s maildir: %d messages written in %.1f s" % (a.label, a.n, dt))
    print("RESULT " + json.dumps({"mode": "maildir", "label": a.label, "messages": a.n, "seconds": dt}))


# ------------------------------------------------------------------ mix


async def session(port, user, password, rng, counts, timeout):
    c = await Conn().open(port, timeout)
    ops = 0

    async def run(name, *args, **kw):
        nonlocal ops
        t = time.perf_counter()
        r = await c.cmd(*args, **kw)
        counts.setdefault(name, [0, 0.0])
        counts[name][0] += 1
        counts[name][1] += time.perf_counter() - t
        ops += 1
        return r

    t = time.perf_counter()
    await c.cmd(b'LOGIN "%s" "%s"' % (user.encode(), password.encode()))
    counts.setdefault("LOGIN", [0, 0.0])
    counts["LOGIN"][0] += 1
    counts["LOGIN"][1] += time.perf_counter() - t
    ops += 1
    caps, _ = await run("CAPABILITY", b"CAPABILITY")
    c.literal_plus = any(b" LITERAL+" in x for x in caps)
    sel, _ = await run("SELECT", b"SELECT INBOX")
    exists = 0
    for l in sel:
        m = re.match(rb"\* (\d+) EXISTS", l)
        if m:
            exists = int(m.group(1))
    if exists:
        await run("FETCH env", b"FETCH 1:* (FLAGS ENVELOPE)")
        for _ in range(3):
            await run("FETCH body", b"FETCH %d (BODY.PEEK[])" % rng.randint(1, exists))
        await run("SEARCH", b"SEARCH SUBJECT %s" % rng.choice(WORDS).encode())
        await run("SEARCH", b"SEARCH UNSEEN FROM sender%d" % rng.randint(0, 49))
        for _ in range(2):
            await run("STORE", b"STORE %d +FLAGS (\\Seen)" % rng.randint(1, exists))
    _, tagged = await run("APPEND", b"APPEND INBOX", message(rng.randint(0, 10**6), rng))
    m = re.search(rb"\[APPENDUID \d+ (\d+)\]", tagged)
    if m:
        await run("STORE", b"UID STORE %s +FLAGS.SILENT (\\Deleted)" % m.group(1))
        await run("EXPUNGE", b"EXPUNGE")
    await run("LOGOUT", b"LOGOUT", check=False)
    c.close()
    return ops


async def mix(a):
    users = a.users.split(",")
    counts = {}
    errors = []
    total = [0, 0]
    deadline = time.time() + a.seconds

    async def client(k):
        rng = random.Random(k)
        user = users[k % len(users)]
        while time.time() < deadline:
            try:
                # await first: `total[0] += await ...` would read total[0] before
                # the await and lose the other clients' counts
                n = await session(a.port, user, a.password, rng, counts, a.timeout)
                total[0] += n
                total[1] += 1
            except Exception as e:  # noqa: BLE001 -- counted and shown, the load goes on
                errors.append("%s: %s" % (type(e).__name__, e))
                await asyncio.sleep(0.05)

    t0 = time.time()
    cpu0 = time.process_time()
    await asyncio.gather(*(client(k) for k in range(a.clients)))
    dt = time.time() - t0
    cpu = time.process_time() - cpu0
    ops, sessions = total
    print(
        "%s mix: %d clients, %.1f s: %d commands = %.0f ops/s, %d sessions = %.1f sessions/s, %d errors "
        "(the load generator used %.1f s of CPU)" % (a.label, a.clients, dt, ops, ops / dt, sessions, sessions / dt,
                                                     len(errors), cpu)
    )
    for name, (n, secs) in sorted(counts.items()):
        print("    %-11s %7d  %6.1f/s  mean %6.1f ms" % (name, n, n / dt, 1000 * secs / max(n, 1)))
    for e in errors[:5]:
        print("    error: " + e)
    print(
        "RESULT "
        + json.dumps(
            {"mode": "mix", "label": a.label, "ops": ops, "seconds": dt, "ops_per_s": ops / dt,
             "sessions": sessions, "errors": len(errors)}
        )
    )


# ------------------------------------------------------------------ large


async def large(a):
    selects, fetches = [], []
    n = 0
    for _ in range(a.rounds):
        c = await Conn().open(a.port, a.timeout)
        await c.login(a.users, a.password)
        t = time.perf_counter()
        sel, _ = await c.cmd(b"SELECT INBOX")
        selects.append(time.perf_counter() - t)
        t = time.perf_counter()
        n, tagged = await c.bulk(b"FETCH 1:* (UID FLAGS)")
        fetches.append(time.perf_counter() - t)
        if not tagged.startswith(b"c%d OK" % c.n):
            raise ImapError("FETCH 1:* (UID FLAGS) -> %s" % tagged)
        await c.cmd(b"LOGOUT", check=False)
        c.close()
    print(
        "%s large mailbox (%d messages): SELECT first %.3f s, best %.3f s; FETCH 1:* (UID FLAGS) first %.3f s, best %.3f s"
        % (a.label, n, selects[0], min(selects), fetches[0], min(fetches))
    )
    print(
        "RESULT "
        + json.dumps({"mode": "large", "label": a.label, "messages": n, "select": min(selects),
                      "fetch": min(fetches), "select_first": selects[0], "fetch_first": fetches[0]})
    )


# ------------------------------------------------------------------ idle


def tree(pid):
    """pid and all its descendants."""
    children = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open("/proc/%s/stat" % d) as f:
                    st = f.read()
                ppid = int(st[st.rindex(")") + 2:].split()[1])
                children.setdefault(ppid, []).append(int(d))
            except (OSError, ValueError):
                pass
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def memory(pid):
    """(VmRSS, Pss) in KB summed over the process tree, and its size."""
    rss = pss = 0
    procs = tree(pid)
    for p in procs:
        try:
            with open("/proc/%d/status" % p) as f:
                for l in f:
                    if l.startswith("VmRSS:"):
                        rss += int(l.split()[1])
            with open("/proc/%d/smaps_rollup" % p) as f:
                for l in f:
                    if l.startswith("Pss:"):
                        pss += int(l.split()[1])
        except OSError:
            pass
    return rss, pss, len(procs)


async def idle(a):
    users = a.users.split(",")
    conns = []
    sem = asyncio.Semaphore(a.concurrency)

    async def one(k):
        async with sem:
            c = await Conn().open(a.port, a.timeout)
            await c.login(users[k % len(users)], a.password)
            await c.cmd(b"SELECT INBOX")
            conns.append(c)

    # warm-up: the same sessions opened the same way, then closed, so that
    # memory a login needs only while it runs (Argon2's 19 MB per login in
    # flight, which the allocator keeps afterwards) and the mailboxes' caches
    # are in the baseline, and the difference is what open sessions hold
    await asyncio.gather(*(one(k) for k in range(a.warmup if a.warmup is not None else a.sessions)))
    for c in conns:
        await c.cmd(b"LOGOUT", check=False)
        c.close()
    conns.clear()
    await asyncio.sleep(a.settle)
    before = memory(a.pid)
    t0 = time.time()
    await asyncio.gather(*(one(k) for k in range(a.sessions)))
    opened = time.time() - t0
    await asyncio.sleep(a.settle)
    after = memory(a.pid)
    # still alive: every session answers a NOOP
    await asyncio.gather(*(c.cmd(b"NOOP") for c in conns))
    n = len(conns)
    per_rss = (after[0] - before[0]) / n
    per_pss = (after[1] - before[1]) / n
    print(
        "%s idle sessions: %d opened in %.1f s; RSS %d -> %d KB (%d -> %d processes) = %.1f KB/session; Pss %.1f KB/session"
        % (a.label, n, opened, before[0], after[0], before[2], after[2], per_rss, per_pss)
    )
    print(
        "RESULT "
        + json.dumps({"mode": "idle", "label": a.label, "sessions": n, "rss_before": before[0], "rss_after": after[0],
                      "kb_per_session": per_rss, "pss_kb_per_session": per_pss, "processes": after[2]})
    )
    for c in conns:
        c.close()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["fill", "maildir", "mix", "large", "idle"])
    p.add_argument("--port", type=int)
    p.add_argument("--users", help="comma-separated login names")
    p.add_argument("--password")
    p.add_argument("--dir", help="maildir: the Maildir to write into")
    p.add_argument("--lines", default="25:250", help="fill, maildir: body lines per message, MIN:MAX")
    p.add_argument("--label", default="server")
    p.add_argument("--timeout", type=float, default=120)
    p.add_argument("--n", type=int, default=200, help="fill: messages per user")
    p.add_argument("--start", type=int, default=0, help="fill: number of the first message")
    p.add_argument("--conns", type=int, default=2, help="fill: connections per user")
    p.add_argument("--clients", type=int, default=10, help="mix: concurrent sessions")
    p.add_argument("--seconds", type=float, default=20, help="mix: duration")
    p.add_argument("--rounds", type=int, default=3, help="large: repetitions")
    p.add_argument("--sessions", type=int, default=1000, help="idle: sessions")
    p.add_argument("--concurrency", type=int, default=20, help="idle: logins at a time")
    p.add_argument("--warmup", type=int, help="idle: sessions opened and closed first (default --sessions)")
    p.add_argument("--settle", type=float, default=2, help="idle: seconds before reading memory")
    p.add_argument("--pid", type=int, help="idle: the server's (master) process id")
    a = p.parse_args()
    if a.mode == "idle" and not a.pid:
        p.error("idle needs --pid")
    if a.mode == "maildir" and not a.dir:
        p.error("maildir needs --dir")
    if a.mode != "maildir" and not (a.port and a.users and a.password):
        p.error("%s needs --port, --users and --password" % a.mode)
    global LINES
    LINES = tuple(int(x) for x in a.lines.split(":"))
    modes = {"fill": fill, "maildir": maildir, "mix": mix, "large": large, "idle": idle}
    asyncio.run(modes[a.mode](a))


if __name__ == "__main__":
    sys.exit(main())
