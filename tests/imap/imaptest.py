"""Helpers for the IMAP acceptance tests (tests/imap.rs): a TLS context
that trusts our self-signed certificate, imaplib connections over STARTTLS
and implicit TLS, and a small raw client that shows every response line as
it came (literals inlined), for what imaplib hides: untagged responses in
order, IDLE (Python 3.11's imaplib has none), literals we choose.

Every socket has a timeout, so a silent server fails the test, never hangs it.
"""

import base64
import imaplib
import json
import re
import socket
import ssl
import sys

ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE

TIMEOUT = 15


def b64(b):
    return base64.b64encode(b).decode()


def out(v):
    """Print the result for the Rust side: one JSON document."""
    print(json.dumps(v))


def starttls(port):
    m = imaplib.IMAP4("127.0.0.1", port, timeout=TIMEOUT)
    m.starttls(ssl_context=ctx)
    return m


def implicit(port):
    return imaplib.IMAP4_SSL("127.0.0.1", port, ssl_context=ctx, timeout=TIMEOUT)


def flat(data):
    """imaplib's response data as one byte string, literals inlined as
    `{n}\\r\\n<bytes>` just as they were on the wire."""
    o = b""
    for d in data:
        if isinstance(d, tuple):
            o += d[0] + b"\r\n" + d[1]
        elif d is not None:
            o += d
    return o


def err(e):
    return "ERROR " + " ".join(str(a) for a in e.args)


def attempt(f):
    """Run f and return text: imaplib's (typ, data) as "TYP data", an
    imaplib error as "ERROR message" (so the Rust side shows what the server
    answered instead of a Python traceback)."""
    try:
        r = f()
    except (imaplib.IMAP4.error, imaplib.IMAP4.abort, OSError) as e:
        return err(e)
    if isinstance(r, tuple) and len(r) == 2 and isinstance(r[1], list):
        return "%s %s" % (r[0], flat(r[1]).decode("utf-8", "replace"))
    return r


def untagged(m, name):
    """Pop imaplib's collected untagged responses of one kind, as text."""
    typ, data = m.response(name)
    return [d.decode() if isinstance(d, bytes) else repr(d) for d in data if d is not None]


class Raw:
    """A line-level IMAP client: `cmd` sends one tagged command and returns
    (untagged lines, tagged line); literals in responses are inlined.
    `literal` in a command is sent as a synchronising literal (waits for
    the server's continuation)."""

    def __init__(self, port, tls="implicit"):
        sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.n = 0
        if tls == "implicit":
            sock = ctx.wrap_socket(sock, server_hostname="mx.example.test")
        self.sock = sock
        self.f = sock.makefile("rb")
        self.greeting = self.line()
        if tls == "starttls":
            self.cmd("STARTTLS")
            self.sock = ctx.wrap_socket(sock, server_hostname="mx.example.test")
            self.f = self.sock.makefile("rb")

    def send(self, b):
        self.sock.sendall(b)

    def line(self):
        """One response line (CRLF stripped), literals inlined."""
        l = self.f.readline()
        if not l:
            raise EOFError("the server closed the connection")
        while True:
            m = re.search(rb"\{(\d+)\}\r\n$", l)
            if not m:
                return l[:-2].decode("utf-8", "replace") if l.endswith(b"\r\n") else l.decode("utf-8", "replace")
            lit = self.f.read(int(m.group(1)))
            rest = self.f.readline()
            if not rest:
                raise EOFError("the server closed the connection inside a literal")
            l = l + lit + rest

    def tag(self):
        self.n += 1
        return "t%d" % self.n

    def cmd(self, text, literal=None):
        t = self.tag()
        if literal is None:
            self.send(("%s %s\r\n" % (t, text)).encode())
        else:
            lit = literal if isinstance(literal, bytes) else literal.encode()
            self.send(("%s %s {%d}\r\n" % (t, text, len(lit))).encode())
            lines = []
            while True:
                l = self.line()
                if l.startswith("+"):
                    break
                if l.startswith(t + " "):
                    return lines, l
                lines.append(l)
            self.send(lit + b"\r\n")
        return self.until(t)

    def until(self, t):
        lines = []
        while True:
            l = self.line()
            if l.startswith(t + " "):
                return lines, l
            lines.append(l)

    def login(self, user, password):
        _, r = self.cmd('LOGIN "%s" "%s"' % (user, password))
        if " OK" not in r:
            raise RuntimeError("LOGIN failed: " + r)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass
