#!/usr/bin/env python3
"""
IMAP benchmark: mailhub beside Dovecot, on loopback, on big mailboxes.

For each mailbox size (10,000 and 100,000 messages of 10 KB by default) it
builds one Maildir (CRLF line ends, mailhub/Dovecot-style names in
C{new/}), gives each server its own real copy (C{cp -r}: both servers
rename files and write C{dovecot-uidlist}, so hard links would let one
server's work leak into the other's copy), starts both servers, and with
one sequential C{imaplib} client per server (STARTTLS with an unverified
context, LOGIN) times with C{time.perf_counter}:

  - cold: the first session ever, login and SELECT INBOX (no index yet:
    every message still in C{new/});
  - warm (per repeat, a new session each time, servers interleaved):
    login, SELECT, C{FETCH 1:* (UID FLAGS RFC822.SIZE)}, C{FETCH} of
    ENVELOPE for the last 500, C{UID SEARCH SUBJECT} (one match),
    C{UID FETCH} of one whole body (C{BODY.PEEK[]}), and with
    C{--body-search} a C{UID SEARCH BODY} (one match);
  - after a restart (per repeat): each server is stopped and started again,
    then login and SELECT are timed (mailhub keeps a folder's index in
    memory for a while after its last session: this SELECT reads it from
    disk), and a C{FETCH 1:* (UID FLAGS RFC822.SIZE)} sent as soon as the
    SELECT is answered (mailhub answers that SELECT from the index file's
    header and UIDs and reads the rest meanwhile: the FETCH may wait for
    it);
  - new mail (per repeat): 1,000 new files dropped into C{new/} (written
    in C{tmp/}, renamed, mailhub-style names), then a new session: the
    first SELECT after them is timed; the server's CPU from the drop to
    the end of that SELECT is reported too;
  - memory per idle session, each server started again first: one session
    logged in with INBOX selected (mailhub loads the folder's index then:
    memory per folder, not per session), then C{--idle} more (they take up
    what the first one's work left free in the allocator), then C{--idle}
    more again; the server's
    memory (RSS, PSS and USS, summed over its process tree) before and
    after the first, and before and after the last batch, divided by the
    sessions in that batch.

    python benchmarks/imap.py --sizes 10000              # quick run
    python benchmarks/imap.py                            # 10,000 and 100,000
    python benchmarks/imap.py --sizes 100000 --mailboxes /var/tmp/imapbench
                          # builds the 100,000 mailbox once, reuses it after

Dovecot (Debian C{dovecot-imapd}) runs as a private instance (C{dovecot -F
-c FILE}, own base_dir/state_dir/instance_name, 127.0.0.1 only) with
mailhub's self-signed certificate, and needs root; it reads its copy of
the Maildir as C{nobody}.  If it cannot be started the script prints why
and measures mailhub alone.  See C{benchmarks/README.md}.
"""

from __future__ import annotations

import argparse
import imaplib
import os
import platform
import pwd
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import pop3  # noqa: E402  (benchmarks/pop3.py: server classes, CPU of a process tree)
from pop3 import (  # noqa: E402
    ADDRESS, DOMAIN, HOST, PASSWORD, PROJECT_ROOT, SkipServer, treeCPUSeconds,
)

SOCKET_TIMEOUT = 1800.0  # a cold SELECT of 100,000 messages may take a while

#: The timed operations of a warm session, in order.
WARM = ("login", "select", "fetch_all", "envelope_500", "search_subject", "body")
LABELS = {
    "cold_login": "login (cold, first session)",
    "cold_select": "SELECT INBOX, cold (no index)",
    "login": "login (STARTTLS + LOGIN)",
    "select": "SELECT INBOX, warm",
    "fetch_all": "FETCH 1:* (UID FLAGS RFC822.SIZE)",
    "envelope_500": "FETCH last 500 (ENVELOPE)",
    "search_subject": "UID SEARCH SUBJECT (1 hit)",
    "search_body": "UID SEARCH BODY (1 hit)",
    "body": "UID FETCH one BODY.PEEK[]",
    "restart_login": "login (first after a restart)",
    "restart_select": "SELECT INBOX, first after a restart",
    "restart_fetch_all": "  then at once FETCH 1:* (UID FLAGS..)",
    "new_select": "SELECT after {d} new deliveries",
    "new_cpu": "  server CPU, drop + that SELECT",
}


# ---------------------------------------------------------------------------
# The mailbox
# ---------------------------------------------------------------------------

_LINE = (b"The quick brown fox jumps over the lazy dog. " * 2)[:70] + b"\r\n"


def makeMessage(i: int, size: int) -> bytes:
    """
    A plain-text message of exactly C{size} octets with CRLF line ends, a
    Subject with the unique word C{subjNNNNNNx} and a last body line with
    the unique word C{bodyNNNNNNz}.
    """
    head = (
        f"Return-Path: <loadgen@client.test>\r\n"
        f"From: Load Generator <loadgen@client.test>\r\n"
        f"To: Bench <{ADDRESS}>\r\n"
        f"Subject: IMAP benchmark message subj{i:06d}x\r\n"
        f"Date: Thu, 26 Nov 2026 12:{i // 60 % 60:02d}:{i % 60:02d} +0000\r\n"
        f"Message-ID: <imap-bench-{i}@client.test>\r\n"
        f"MIME-Version: 1.0\r\n"
        f"Content-Type: text/plain; charset=us-ascii\r\n"
        f"\r\n"
    ).encode()
    tail = f"body{i:06d}z\r\n".encode()
    room = size - len(head) - len(tail)
    lines = (room - 2) // len(_LINE)
    body = _LINE * lines
    body += b"x" * (room - len(body) - 2) + b"\r\n"
    msg = head + body + tail
    assert len(msg) == size, (len(msg), size)
    return msg


def messageName(stamp: int, i: int, size: int, pid: int) -> str:
    return f"{stamp}.M{i * 7 % 1000000}P{pid}Q{i + 1}.{DOMAIN},S={size},W={size}"


def makeMaildir(path: str, count: int, size: int) -> None:
    """
    A Maildir with C{count} messages in C{new/}, mtimes one second apart.
    """
    for sub in ("new", "cur", "tmp"):
        os.makedirs(os.path.join(path, sub), exist_ok=True)
    start = int(time.time()) - count - 86400
    pid = os.getpid()
    new = os.path.join(path, "new")
    for i in range(count):
        p = os.path.join(new, messageName(start + i, i, size, pid))
        with open(p, "wb") as f:
            f.write(makeMessage(i, size))
        os.utime(p, (start + i, start + i))


def deliver(maildir: str, first: int, count: int, size: int,
            owner: tuple[int, int] | None) -> None:
    """
    Drop C{count} new messages into C{maildir/new}, the Maildir way (write in
    C{tmp/}, rename into C{new/}), numbered from C{first}.
    """
    now = int(time.time())
    pid = os.getpid() + 1
    for i in range(first, first + count):
        name = messageName(now, i, size, pid)
        tmp = os.path.join(maildir, "tmp", name)
        with open(tmp, "wb") as f:
            f.write(makeMessage(i, size))
        if owner is not None:
            os.chown(tmp, *owner)
        os.rename(tmp, os.path.join(maildir, "new", name))


def copyMaildir(template: str, dest: str, owner: tuple[int, int] | None = None) -> None:
    """
    A real copy (no hard links) of C{template} at C{dest}.
    """
    if os.path.exists(dest):
        shutil.rmtree(dest)
    subprocess.run(["cp", "-r", template, dest], check=True)
    if owner is not None:
        subprocess.run(["chown", "-R", f"{owner[0]}:{owner[1]}", dest], check=True)


# ---------------------------------------------------------------------------
# /proc: memory of a process tree
# ---------------------------------------------------------------------------


def treePids(root: int) -> list[int]:
    parents: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                data = f.read()
        except OSError:
            continue
        parents[int(name)] = int(data[data.rindex(b")") + 2 :].split()[1])
    children: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        children.setdefault(ppid, []).append(pid)
    out, todo = [], [root] if root in parents else []
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, ()))
    return out


def treeMemoryKB(root: int) -> tuple[int, int, int, int]:
    """
    (RSS, PSS, USS, process count) summed over C{root} and its
    descendants, KB.  USS is C{Private_Clean + Private_Dirty}: the pages no
    other process shares.
    """
    rss = pss = uss = n = 0
    for pid in treePids(root):
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Rss:"):
                        rss += int(line.split()[1])
                    elif line.startswith("Pss:"):
                        pss += int(line.split()[1])
                    elif line.startswith(("Private_Clean:", "Private_Dirty:")):
                        uss += int(line.split()[1])
            n += 1
        except OSError:
            continue
    return rss, pss, uss, n


# ---------------------------------------------------------------------------
# Servers
# ---------------------------------------------------------------------------


def waitIMAPReady(server: pop3.Server) -> None:
    deadline = time.monotonic() + pop3.START_TIMEOUT
    last: object = None
    while time.monotonic() < deadline:
        if not server.alive():
            raise SkipServer(f"exited during start-up\n{server.logTail()}")
        try:
            with socket.create_connection((HOST, server.port), timeout=5) as s:
                greeting = s.recv(512)
                if greeting.startswith(b"* OK"):
                    s.sendall(b"a LOGOUT\r\n")
                    return
                last = greeting
        except OSError as e:
            last = e
        time.sleep(0.2)
    raise SkipServer(f"no * OK greeting on port {server.port} ({last!r})\n{server.logTail()}")


class Mailhub(pop3.Mailhub):
    owner = None

    def __init__(self, workdir: str, python: str, perUser: int = 20) -> None:
        super().__init__(workdir, python)
        with open(self.configPath, "w") as f:
            f.write(
                f'hostname = "{DOMAIN}"\n'
                f'domains = ["{DOMAIN}"]\n'
                "\n"
                "[listeners]\n"
                "smtp = []\n"
                "submission = []\n"
                "submissions = []\n"
                "pop3 = []\n"
                "pop3s = []\n"
                f'imap = ["tcp:{self.port}:interface={HOST}"]\n'
                "imaps = []\n"
                "\n"
                "[limits]\n"
                f"connections_per_user = {perUser}\n"
            )

    def prepare(self, template: str) -> None:
        copyMaildir(template, self.maildir)

    def waitReady(self) -> None:
        waitIMAPReady(self)


DOVECOT_CONF = """\
# A private Dovecot for benchmarks/imap.py: IMAP on 127.0.0.1 only.
base_dir = {root}/run
state_dir = {root}/state
instance_name = mailhub-bench-imap
listen = {host}
protocols = imap
log_path = {root}/dovecot.log
ssl = {ssl}
{sslfiles}
auth_mechanisms = plain
disable_plaintext_auth = no
mail_location = maildir:~/Maildir
first_valid_uid = 1
mail_max_userip_connections = 10000
default_process_limit = 10000
default_client_limit = 40000
passdb {{
  driver = passwd-file
  args = {root}/passwd
}}
userdb {{
  driver = passwd-file
  args = {root}/passwd
}}
service imap-login {{
  inet_listener imap {{
    address = {host}
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    port = 0
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
"""


class Dovecot(pop3.Dovecot):
    def __init__(self, workdir: str) -> None:
        super().__init__(workdir)
        pw = pwd.getpwnam("nobody")
        self.owner = (pw.pw_uid, pw.pw_gid)

    def prepare(self, template: str) -> None:
        os.makedirs(self.home, exist_ok=True)
        os.chown(self.home, *self.owner)
        copyMaildir(template, self.maildir, self.owner)

    def waitReady(self) -> None:
        waitIMAPReady(self)

    def start(self, hashed: str, cert: tuple[str, str] | None) -> None:
        binary = shutil.which("dovecot") or (
            "/usr/sbin/dovecot" if os.path.exists("/usr/sbin/dovecot") else None)
        if binary is None:
            raise SkipServer("dovecot is not installed: apt-get install -y dovecot-imapd")
        if not os.path.exists("/usr/lib/dovecot/imap"):
            raise SkipServer("Dovecot's IMAP server is not installed: apt-get install -y dovecot-imapd")
        if os.geteuid() != 0:
            raise SkipServer("a private Dovecot needs root (it runs its mail processes as nobody)")
        for sub in ("run", "state"):
            os.makedirs(os.path.join(self.workdir, sub), exist_ok=True)
        os.chmod(self.workdir, 0o755)
        with open(os.path.join(self.workdir, "passwd"), "w") as f:
            f.write(f"{ADDRESS}:{hashed}:{self.owner[0]}:{self.owner[1]}::{self.home}::\n")
        sslfiles = ""
        if cert is not None:
            certPath = os.path.join(self.workdir, "cert.pem")
            keyPath = os.path.join(self.workdir, "key.pem")
            shutil.copyfile(cert[0], certPath)
            shutil.copyfile(cert[1], keyPath)
            os.chmod(keyPath, 0o600)
            sslfiles = f"ssl_cert = <{certPath}\nssl_key = <{keyPath}"
        self.tls = cert is not None
        self.configPath = os.path.join(self.workdir, "dovecot.conf")
        with open(self.configPath, "w") as f:
            f.write(DOVECOT_CONF.format(
                root=self.workdir, host=HOST, port=self.port,
                ssl="required" if self.tls else "no", sslfiles=sslfiles,
            ))
        self.spawn([binary, "-F", "-c", self.configPath])
        self.waitReady()


# ---------------------------------------------------------------------------
# The client
# ---------------------------------------------------------------------------


class Timer:
    def __init__(self, server: pop3.Server) -> None:
        self.server = server
        self.times: dict[str, float] = {}

    def __call__(self, name: str, fn, *args):
        t0 = time.perf_counter()
        result = fn(*args)
        self.times[name] = time.perf_counter() - t0
        return result


def connect(server: pop3.Server, useTLS: bool) -> imaplib.IMAP4:
    client = imaplib.IMAP4(HOST, server.port, timeout=SOCKET_TIMEOUT)
    try:
        if useTLS:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            client.starttls(context)
        client.login(ADDRESS, PASSWORD)
    except BaseException:
        client.shutdown()
        raise
    return client


def ok(reply: tuple[str, list], what: str) -> list:
    typ, data = reply
    if typ != "OK":
        raise RuntimeError(f"{what}: {typ} {data!r}")
    return data


def select(client: imaplib.IMAP4) -> int:
    return int(ok(client.select("INBOX"), "SELECT")[0])


def loginSelect(server: pop3.Server, useTLS: bool, prefix: str, fetch: bool = False) -> dict[str, float]:
    """
    A session that logs in and SELECTs INBOX, timed (with C{fetch}, then a
    C{FETCH 1:* (UID FLAGS RFC822.SIZE)} at once); returns the times and
    the EXISTS count.
    """
    t = Timer(server)
    client = t(prefix + "login", connect, server, useTLS)
    try:
        exists = t(prefix + "select", select, client)
        if fetch:
            lines = ok(t(prefix + "fetch_all", client.fetch, "1:*", "(UID FLAGS RFC822.SIZE)"), "FETCH 1:*")
            if sum(1 for x in lines if x is not None) != exists:
                raise RuntimeError("FETCH 1:* after a restart: not one line per message")
        client.logout()
    except BaseException:
        client.shutdown()
        raise
    t.times["exists"] = exists
    return t.times


def warmSession(server: pop3.Server, useTLS: bool, size: int,
                bodySearch: bool) -> dict[str, float]:
    t = Timer(server)
    client = t("login", connect, server, useTLS)
    try:
        n = t("select", select, client)
        t.times["exists"] = n
        lines = ok(t("fetch_all", client.fetch, "1:*", "(UID FLAGS RFC822.SIZE)"), "FETCH 1:*")
        got = sum(1 for x in lines if x is not None)
        if got != n:
            raise RuntimeError(f"FETCH 1:* answered {got} lines for {n} messages")
        env = ok(t("envelope_500", client.fetch, f"{max(1, n - 499)}:{n}", "(ENVELOPE)"),
                 "FETCH ENVELOPE")
        if sum(1 for x in env if x is not None and b"ENVELOPE" in (x[0] if isinstance(x, tuple) else x)) != min(n, 500):
            raise RuntimeError(f"FETCH ENVELOPE answered {len(env)} parts")
        target = n // 2  # present in every mailbox of the run
        hits = ok(t("search_subject", client.uid, "SEARCH", "SUBJECT", f"subj{target:06d}x"),
                  "UID SEARCH SUBJECT")[0].split()
        if len(hits) != 1:
            raise RuntimeError(f"UID SEARCH SUBJECT found {hits!r}, expected one UID")
        data = ok(t("body", client.uid, "FETCH", hits[0].decode(), "(BODY.PEEK[])"), "UID FETCH")
        body = next(x[1] for x in data if isinstance(x, tuple))
        if len(body) != size:
            raise RuntimeError(f"UID FETCH BODY.PEEK[] returned {len(body)} octets, expected {size}")
        if bodySearch:
            hits = ok(t("search_body", client.uid, "SEARCH", "BODY", f"body{target:06d}z"),
                      "UID SEARCH BODY")[0].split()
            if len(hits) != 1:
                raise RuntimeError(f"UID SEARCH BODY found {hits!r}, expected one UID")
        client.logout()
    except BaseException:
        client.shutdown()
        raise
    return t.times


def newMail(server: pop3.Server, useTLS: bool, args, expected: int) -> tuple[int, float, float]:
    """
    Log in, drop C{args.deliveries} new messages into C{new/}, SELECT:
    (EXISTS, SELECT seconds, server CPU seconds from the drop on).
    """
    client = connect(server, useTLS)
    try:
        c0 = treeCPUSeconds(server.proc.pid)
        deliver(server.maildir, expected - args.deliveries, args.deliveries,
                args.size, server.owner)
        t0 = time.perf_counter()
        exists = select(client)
        elapsed = time.perf_counter() - t0
        cpu = treeCPUSeconds(server.proc.pid) - c0
        client.logout()
    except BaseException:
        client.shutdown()
        raise
    return exists, elapsed, cpu


def idleMemory(server: pop3.Server, useTLS: bool, count: int) -> dict[str, object]:
    """
    Open one session with INBOX selected (for mailhub, the one that loads
    the folder's index, shared by the sessions after it), then C{count}
    more, then C{count} more again (the batch measured: the one before it
    takes up memory the allocator kept free), and measure the server's
    memory around the first session and around the last batch.
    """
    pid = server.proc.pid
    clients: list[imaplib.IMAP4] = []
    stopped = ""

    def openOne() -> bool:
        nonlocal stopped
        try:
            client = connect(server, useTLS)
        except Exception as e:  # a per-user or per-peer limit, most likely
            stopped = f"{type(e).__name__}: {e}"[:160]
            return False
        clients.append(client)
        try:
            select(client)
        except Exception as e:
            stopped = f"SELECT {type(e).__name__}: {e}"[:160]
            return False
        return True

    try:
        time.sleep(1.0)
        before = treeMemoryKB(pid)
        first = openOne()
        time.sleep(1.0)
        firstDone = treeMemoryKB(pid)
        middle = firstDone
        warmed = first and all(openOne() for _ in range(count))
        if warmed:
            time.sleep(1.0)
            middle = treeMemoryKB(pid)
            for _ in range(count):
                if not openOne():
                    break
        time.sleep(2.0)
        after = treeMemoryKB(pid)
    finally:
        for client in clients:
            try:
                client.logout()
            except Exception:
                client.shutdown()
    opened = len(clients) - 1 - (count if warmed else 0)
    nan = float("nan")
    return {
        "opened": opened, "stopped": stopped,
        "first": firstDone[0] - before[0],
        "rss": (after[0] - middle[0]) / opened if opened else nan,
        "pss": (after[1] - middle[1]) / opened if opened else nan,
        "uss": (after[2] - middle[2]) / opened if opened else nan,
        "procs": (before[3], after[3]),
    }


# ---------------------------------------------------------------------------
# One mailbox size
# ---------------------------------------------------------------------------


def fmt(seconds: float) -> str:
    if seconds != seconds:
        return "n/a"
    if seconds < 1.0:
        return f"{seconds * 1000:.1f} ms"
    return f"{seconds:.2f} s"


def runSize(args, size: int, workdir: str, hashed: str, wanted: list[str]) -> None:
    sizeDir = os.path.join(workdir, f"n{size}")
    os.makedirs(sizeDir)
    os.chmod(sizeDir, 0o755)
    if args.mailboxes:
        # Built once, reused by later runs (only ever copied from).
        template = os.path.join(args.mailboxes, f"n{size}-s{args.size}")
        if os.path.exists(template + ".done"):
            print(f"\n== {size} messages: reusing {template}", flush=True)
        else:
            shutil.rmtree(template, ignore_errors=True)
            t = time.perf_counter()
            makeMaildir(template, size, args.size)
            open(template + ".done", "w").close()
            print(f"\n== {size} messages: made them ({args.size} octets each) in "
                  f"{time.perf_counter() - t:.1f}s, kept in {template}", flush=True)
    else:
        template = os.path.join(sizeDir, "template")
        t = time.perf_counter()
        makeMaildir(template, size, args.size)
        print(f"\n== {size} messages: made them ({args.size} octets each) in "
              f"{time.perf_counter() - t:.1f}s", flush=True)

    servers: list[pop3.Server] = []
    started: list[pop3.Server] = []
    skipped: dict[str, str] = {}
    try:
        cert = None
        if "mailhub" in wanted:
            mh = Mailhub(sizeDir, args.python, perUser=max(20, 2 * args.idle + 10))
            mh.writeUsers(hashed)
            t = time.perf_counter()
            mh.prepare(template)
            print(f"copied for mailhub in {time.perf_counter() - t:.1f}s", flush=True)
            started.append(mh)
            try:
                mh.start()
                servers.append(mh)
                c = mh.certificate()
                if all(os.path.exists(p) for p in c):
                    cert = c
            except SkipServer as e:
                mh.stop()
                skipped["mailhub"] = str(e)
        if "dovecot" in wanted:
            dc = Dovecot(sizeDir)
            t = time.perf_counter()
            try:
                dc.prepare(template)
                print(f"copied for dovecot in {time.perf_counter() - t:.1f}s", flush=True)
                started.append(dc)
                try:
                    dc.start(hashed, cert)
                except SkipServer as e:
                    if cert is None:
                        raise
                    dc.stop()
                    print(f"dovecot with TLS failed, retrying plaintext: {e}", flush=True)
                    dc.start(hashed, None)
                servers.append(dc)
            except (SkipServer, KeyError, OSError, subprocess.CalledProcessError) as e:
                dc.stop()
                skipped["dovecot"] = str(e)
        if not args.keep and not args.mailboxes:
            shutil.rmtree(template, ignore_errors=True)
        for name, why in skipped.items():
            print(f"SKIPPED {name}: {why}", flush=True)
        if not servers:
            return

        def tls(server: pop3.Server) -> bool:
            return server.name == "mailhub" or getattr(server, "tls", False)

        results: dict[str, dict[str, list[float]]] = {s.name: {} for s in servers}
        failures: list[str] = []

        def guard(server: pop3.Server, what: str, fn, *a):
            """
            Run one session; on a server error print it (and the server's
            log tail), note it under the table, and go on.
            """
            try:
                return fn(*a)
            except (RuntimeError, imaplib.IMAP4.error, OSError, EOFError) as e:
                text = f"{server.name} {what}: {type(e).__name__}: {e}"[:300]
                failures.append(text)
                print(f"FAILED {text}\n{server.logTail(8)}", flush=True)
                return None

        def record(server: pop3.Server, times: dict[str, float]) -> None:
            for k, v in times.items():
                results[server.name].setdefault(k, []).append(v)

        # Cold: the first session on a fresh copy.
        for server in servers:
            res = guard(server, "cold session", loginSelect, server, tls(server), "cold_")
            if res is None:
                continue
            if res["exists"] != size:
                print(f"WARNING {server.name}: EXISTS {res['exists']}, expected {size}", flush=True)
            record(server, {k: v for k, v in res.items() if k != "exists"})
            print(f"cold     {server.name:8s} login={fmt(res['cold_login'])}  "
                  f"SELECT={fmt(res['cold_select'])}", flush=True)

        # Warm, interleaved.
        for r in range(args.repeats):
            order = servers if r % 2 == 0 else list(reversed(servers))
            for server in order:
                res = guard(server, f"warm session {r + 1}", warmSession,
                            server, tls(server), args.size, args.body_search)
                if res is None:
                    continue
                if res.pop("exists") != size:
                    print(f"WARNING {server.name}: EXISTS differs from {size}", flush=True)
                record(server, res)
                print(f"repeat {r + 1} {server.name:8s} " + "  ".join(
                    f"{k}={fmt(v)}" for k, v in res.items()), flush=True)

        def restart(server: pop3.Server) -> bool:
            server.stop()
            try:
                if isinstance(server, Dovecot):
                    server.start(hashed, cert if server.tls else None)
                else:
                    server.start()
            except SkipServer as e:
                failures.append(f"{server.name} restart: {e}"[:300])
                return False
            return True

        # After a restart: the first SELECT reads the index from disk.  Once
        # per repeat (a single sub-millisecond sample says little).
        for r in range(args.repeats):
            for server in (servers if r % 2 == 0 else list(reversed(servers))):
                if not restart(server):
                    continue
                res = guard(server, "session after a restart", loginSelect, server, tls(server), "restart_", True)
                if res is None:
                    continue
                res.pop("exists")
                record(server, res)
                print(f"restart  {server.name:8s} login={fmt(res['restart_login'])}  "
                      f"SELECT={fmt(res['restart_select'])}  FETCH 1:*={fmt(res['restart_fetch_all'])}", flush=True)

        # New deliveries, then the first SELECT after them: log in, drop the
        # files (the CPU window starts before the drop, so any pick-up the
        # server does in the background is counted), SELECT.
        expected = size
        for r in range(args.repeats):
            order = servers if r % 2 == 0 else list(reversed(servers))
            expected += args.deliveries
            for server in order:
                res = guard(server, f"new-mail session {r + 1}", newMail, server, tls(server),
                            args, expected)
                if res is None:
                    continue
                exists, elapsed, cpu = res
                if exists != expected:
                    print(f"WARNING {server.name}: EXISTS {exists} after deliveries, "
                          f"expected {expected}", flush=True)
                record(server, {"new_select": elapsed, "new_cpu": cpu})
                print(f"new mail {server.name:8s} +{args.deliveries} -> {expected}: "
                      f"SELECT={fmt(elapsed)} server CPU={cpu:.2f}s", flush=True)

        memory: dict[str, dict[str, object]] = {}
        if args.idle:
            for server in servers:
                # A fresh process: its allocator holds no memory that
                # earlier work freed, which the sessions would take up
                # unseen; and mailhub's first session loads the index.
                if not restart(server):
                    continue
                memory[server.name] = m = idleMemory(server, tls(server), args.idle)
                print(f"idle     {server.name:8s} first session +{m['first']} KB RSS, then "
                      f"{m['opened']} sessions: {m['rss']:.0f} KB RSS, {m['pss']:.0f} KB PSS, "
                      f"{m['uss']:.0f} KB USS each"
                      + (f" (stopped: {m['stopped']})" if m["stopped"] else ""), flush=True)

        report(args, size, servers, results, memory, skipped, failures)
    finally:
        for server in started:
            server.stop()
        if not args.keep:
            shutil.rmtree(sizeDir, ignore_errors=True)


def report(args, size, servers, results, memory, skipped, failures) -> None:
    names = [s.name for s in servers]
    keys = ["cold_login", "cold_select"] + list(WARM)
    if args.body_search:
        keys.append("search_body")
    keys += ["restart_login", "restart_select", "restart_fetch_all", "new_select", "new_cpu"]
    la = os.getloadavg()
    print()
    print(f"IMAP, {size} messages of {args.size} octets, loopback, one sequential imaplib "
          f"client per server, {args.repeats} repeat(s)")
    print(f"python {platform.python_version()}, {os.cpu_count()} CPUs, load average at end "
          f"{la[0]:.2f} {la[1]:.2f} {la[2]:.2f}; median over repeats (cold: one run)")
    width = 34
    line = "-" * (width + 1 + 28 * len(names) + (22 if len(names) == 2 else 0))
    print(line)
    head = f"{'operation':{width}s} " + "".join(f"{n + ' (min-max)':>28s}" for n in names)
    if names == ["mailhub", "dovecot"]:
        head += f"{'mailhub/dovecot':>22s}"
    print(head)
    for k in keys:
        label = LABELS[k].format(d=args.deliveries)
        row = f"{label:{width}s} "
        vals = {}
        for n in names:
            xs = results[n].get(k, [])
            if not xs:
                row += f"{'-':>28s}"
                continue
            vals[n] = xs
            cell = fmt(statistics.median(xs)) if k != "new_cpu" else f"{statistics.median(xs):.2f} s"
            if len(xs) > 1:
                cell += f" ({fmt(min(xs)).split()[0]}-{fmt(max(xs))})" if k != "new_cpu" else \
                    f" ({min(xs):.2f}-{max(xs):.2f})"
            row += f"{cell:>28s}"
        if names == ["mailhub", "dovecot"] and len(vals) == 2:
            ratios = [m / d if d > 0 else float("inf") for m, d in zip(vals["mailhub"], vals["dovecot"])]
            row += f"{statistics.median(ratios):>20.2f}x"
        print(row)
    if memory:
        rows = [
            (f"{'first session, INBOX selected: RSS':{width}s} ", lambda m: f"{m['first']} KB"),
            (f"{'idle session, INBOX selected: RSS':{width}s} ", lambda m: f"{m['rss']:.0f} KB x{m['opened']}"),
            (f"{'PSS':>{width}s} ", lambda m: f"{m['pss']:.0f} KB"),
            (f"{'USS':>{width}s} ", lambda m: f"{m['uss']:.0f} KB"),
        ]
        for head, cellOf in rows:
            row = head
            for n in names:
                m = memory.get(n)
                row += f"{cellOf(m) if m else '-':>28s}"
            print(row)
    print(line)
    print("login = connect + greeting + CAPABILITY + STARTTLS + LOGIN (Argon2id on both); "
          "cold = first session on a fresh copy, every message in new/;")
    print(f"new deliveries: {args.deliveries} files renamed into new/ per repeat "
          "(the mailbox grows by that much each repeat); server CPU from the drop to the end "
          "of that SELECT (the session was logged in before the drop).")
    print("memory: summed over the server's process tree (Dovecot: imap-login + imap per session); "
          "the first session's growth (mailhub loads the folder's index then), then per idle "
          "session of the last batch; xN = sessions in that batch (a batch as large was opened "
          "before it).")
    for n, m in memory.items():
        if m["stopped"]:
            print(f"  {n}: stopped opening after {m['opened']} sessions: {m['stopped']}")
    for text in failures:
        print(f"  FAILED {text}")
    for n, why in skipped.items():
        print(f"  {n} skipped: {why.splitlines()[0]}")
    if names == ["mailhub", "dovecot"]:
        print("target (issue 5): every operation on 100,000 messages within 3x of Dovecot; "
              "idle session under 100 KB.")


# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000",
                        help="mailbox sizes in messages, comma-separated")
    parser.add_argument("--size", type=int, default=10240, help="octets per message")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--deliveries", type=int, default=1000,
                        help="new messages dropped into new/ before the timed SELECT")
    parser.add_argument("--idle", type=int, default=250,
                        help="idle sessions for the memory test, per batch (two batches "
                             "are opened, the second measured; 0 skips it)")
    parser.add_argument("--body-search", action="store_true",
                        help="also time UID SEARCH BODY (slow on big mailboxes)")
    parser.add_argument("--servers", default="mailhub,dovecot")
    parser.add_argument("--python", default=sys.executable,
                        help="interpreter for mailhub (default: this one)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--mailboxes", metavar="DIR", default="",
                        help="build each mailbox once in DIR and reuse it in later runs "
                             "(each server still gets its own copy)")
    args = parser.parse_args()
    wanted = [s.strip() for s in args.servers.split(",") if s.strip()]
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]

    sys.path.insert(0, PROJECT_ROOT)
    from mailhub.auth.passwords import hashPassword

    hashed = hashPassword(PASSWORD)  # {ARGON2ID}$argon2id$..., used by both servers
    workdir = tempfile.mkdtemp(prefix="mailhub-imap-bench-")
    os.chmod(workdir, 0o755)

    def onSignal(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, onSignal)
    try:
        for size in sizes:
            runSize(args, size, workdir, hashed, wanted)
        return 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
