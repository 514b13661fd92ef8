#!/usr/bin/env python3
"""
POP3 benchmark: mailhub beside Dovecot, on loopback.

Builds one Maildir of N messages (1,000 x 10 KB by default, CRLF line
ends, Dovecot-style names in C{new/}), gives each server a fresh copy of it
for every repeat, and with one sequential C{poplib} client times, per
session: login (connect, greeting, STLS, USER, PASS), LIST, UIDL, and RETR
of every message; the session ends with RSET and QUIT, so nothing is
deleted.  The servers are interleaved within each repeat (the order
alternates).  Prints per server the median seconds of each step and the
total, and the mailhub/Dovecot ratio of the RETR-all time.  See
C{benchmarks/README.md}.

    python benchmarks/pop3.py                       # 1000 msgs, 3 repeats
    python benchmarks/pop3.py --messages 200 --repeats 1

Dovecot (Debian C{dovecot-pop3d}) runs as a private instance (C{dovecot -F
-c FILE}, own base_dir/state_dir/instance_name, 127.0.0.1 only) and needs
root; it reads the Maildir as C{nobody}.  If it cannot be started the
script prints why and measures mailhub alone.
"""

from __future__ import annotations

import argparse
import os
import platform
import poplib
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
PROJECT_ROOT = os.path.dirname(HERE)

HOST = "127.0.0.1"
DOMAIN = "bench.test"
USER = "bench"
ADDRESS = f"{USER}@{DOMAIN}"
PASSWORD = "pw"

CLK_TCK = os.sysconf("SC_CLK_TCK")
START_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0
SOCKET_TIMEOUT = 60.0

STEPS = ("login", "list", "uidl", "retr_all")


class SkipServer(Exception):
    """
    This server cannot be run here; the text says why.
    """


# ---------------------------------------------------------------------------
# /proc: CPU of a process tree
# ---------------------------------------------------------------------------


def treeCPUSeconds(root: int) -> float:
    """
    utime + stime + cutime + cstime summed over C{root} and its live
    descendants (reaped children are in their parent's cutime/cstime).
    """
    stats: dict[int, tuple[int, int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                data = f.read()
        except OSError:
            continue
        fields = data[data.rindex(b")") + 2 :].split()
        stats[int(name)] = (int(fields[1]), sum(int(x) for x in fields[11:15]))
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    total, todo = 0, [root] if root in stats else []
    while todo:
        pid = todo.pop()
        total += stats[pid][1]
        todo.extend(children.get(pid, ()))
    return total / CLK_TCK


# ---------------------------------------------------------------------------
# The mailbox
# ---------------------------------------------------------------------------


def makeMessage(i: int, size: int) -> bytes:
    """
    A plain-text message of exactly C{size} octets with CRLF line ends.
    """
    head = (
        f"Return-Path: <loadgen@client.test>\r\n"
        f"From: Load Generator <loadgen@client.test>\r\n"
        f"To: <{ADDRESS}>\r\n"
        f"Subject: POP3 benchmark message {i}\r\n"
        f"Date: Thu, 26 Nov 2026 12:00:00 +0000\r\n"
        f"Message-ID: <pop3-bench-{i}@client.test>\r\n"
        f"MIME-Version: 1.0\r\n"
        f"Content-Type: text/plain; charset=us-ascii\r\n"
        f"\r\n"
    ).encode()
    line = (b"The quick brown fox jumps over the lazy dog. " * 2)[:70] + b"\r\n"
    body = bytearray()
    while len(head) + len(body) + len(line) <= size - 2:
        body += line
    rest = size - len(head) - len(body) - 2
    body += b"x" * rest + b"\r\n"
    msg = head + bytes(body)
    assert len(msg) == size, (len(msg), size)
    return msg


def makeMaildir(path: str, count: int, size: int) -> None:
    """
    A Maildir with C{count} messages in C{new/}, named as mailhub and
    Dovecot name them: C{SECONDS.MmicrosPpidQn.host,S=SIZE,W=SIZE}.
    """
    for sub in ("new", "cur", "tmp"):
        os.makedirs(os.path.join(path, sub), exist_ok=True)
    now = int(time.time()) - count
    pid = os.getpid()
    for i in range(count):
        msg = makeMessage(i, size)
        name = f"{now + i}.M{i * 7 % 1000000}P{pid}Q{i + 1}.bench.test,S={size},W={size}"
        with open(os.path.join(path, "new", name), "wb") as f:
            f.write(msg)


def freshCopy(template: str, dest: str, owner: tuple[int, int] | None = None) -> None:
    if os.path.exists(dest):
        shutil.rmtree(dest)
    shutil.copytree(template, dest)
    if owner is not None:
        for dirpath, dirnames, filenames in os.walk(dest):
            os.chown(dirpath, *owner)
            for name in filenames:
                os.chown(os.path.join(dirpath, name), *owner)


# ---------------------------------------------------------------------------
# Servers
# ---------------------------------------------------------------------------


def freePort() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class Server:
    name = "?"

    def __init__(self, workdir: str) -> None:
        self.workdir = os.path.join(workdir, self.name)
        os.makedirs(self.workdir)
        self.port = freePort()
        self.logPath = os.path.join(self.workdir, "server.log")
        self.proc: subprocess.Popen[bytes] | None = None

    def spawn(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        with open(self.logPath, "wb") as log:
            self.proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                cwd=self.workdir, env=env,
            )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def logTail(self, lines: int = 15) -> str:
        paths = [self.logPath] + getattr(self, "extraLogs", [])
        out = []
        for path in paths:
            try:
                with open(path, errors="replace") as f:
                    out += f.read().splitlines()[-lines:]
            except OSError:
                pass
        return "\n".join("    | " + line for line in out) or "    | (empty log)"

    def waitReady(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        last: object = None
        while time.monotonic() < deadline:
            if not self.alive():
                raise SkipServer(f"exited during start-up\n{self.logTail()}")
            try:
                with socket.create_connection((HOST, self.port), timeout=5) as s:
                    greeting = s.recv(512)
                    if greeting.startswith(b"+OK"):
                        s.sendall(b"QUIT\r\n")
                        return
                    last = greeting
            except OSError as e:
                last = e
            time.sleep(0.2)
        raise SkipServer(f"no +OK greeting on port {self.port} ({last!r})\n{self.logTail()}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(STOP_TIMEOUT)

    def prepare(self, template: str) -> None:
        """
        Put a fresh copy of the template Maildir where the server reads it.
        """
        raise NotImplementedError


class Mailhub(Server):
    name = "mailhub"

    def __init__(self, workdir: str, python: str) -> None:
        super().__init__(workdir)
        self.python = python
        self.dataDir = os.path.join(self.workdir, "data")
        self.maildir = os.path.join(self.dataDir, "mail", DOMAIN, USER)
        os.makedirs(os.path.dirname(self.maildir))
        self.configPath = os.path.join(self.workdir, "mailhub.toml")
        with open(self.configPath, "w") as f:
            f.write(
                f'hostname = "{DOMAIN}"\n'
                f'domains = ["{DOMAIN}"]\n'
                "\n"
                "[listeners]\n"
                "smtp = []\n"
                "submission = []\n"
                "submissions = []\n"
                f'pop3 = ["tcp:{self.port}:interface={HOST}"]\n'
                "pop3s = []\n"
                "imap = []\n"
                "imaps = []\n"
            )

    def writeUsers(self, hashed: str) -> None:
        with open(os.path.join(self.dataDir, "users"), "w") as f:
            f.write(f"{ADDRESS}:{hashed}\n")

    def prepare(self, template: str) -> None:
        freshCopy(template, self.maildir)

    def start(self) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [PROJECT_ROOT] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
        )
        self.spawn(
            [
                self.python, "-c",
                "import sys; sys.argv[0] = 'twistd'; "
                "from twisted.scripts.twistd import run; run()",
                "-n", "--pidfile=",
                "mailhub", "--config", self.configPath, "--data", self.dataDir,
            ],
            env=env,
        )
        self.waitReady()

    def certificate(self) -> tuple[str, str]:
        tls = os.path.join(self.dataDir, "tls")
        return os.path.join(tls, "cert.pem"), os.path.join(tls, "key.pem")


DOVECOT_CONF = """\
# A private Dovecot for benchmarks/pop3.py: POP3 on 127.0.0.1 only.
base_dir = {root}/run
state_dir = {root}/state
instance_name = mailhub-bench-pop3
listen = {host}
protocols = pop3
log_path = {root}/dovecot.log
ssl = {ssl}
{sslfiles}
auth_mechanisms = plain
disable_plaintext_auth = no
mail_location = maildir:~/Maildir
first_valid_uid = 1
pop3_uidl_format = %08Xu%08Xv
passdb {{
  driver = passwd-file
  args = {root}/passwd
}}
userdb {{
  driver = passwd-file
  args = {root}/passwd
}}
service pop3-login {{
  inet_listener pop3 {{
    address = {host}
    port = {port}
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
service imap-login {{
  inet_listener imap {{
    port = 0
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
"""


class Dovecot(Server):
    name = "dovecot"

    def __init__(self, workdir: str) -> None:
        super().__init__(workdir)
        self.home = os.path.join(self.workdir, "home")
        self.maildir = os.path.join(self.home, "Maildir")
        self.extraLogs = [os.path.join(self.workdir, "dovecot.log")]
        self.tls = False

    def prepare(self, template: str) -> None:
        pw = pwd.getpwnam("nobody")
        os.makedirs(self.home, exist_ok=True)
        os.chown(self.home, pw.pw_uid, pw.pw_gid)
        freshCopy(template, self.maildir, (pw.pw_uid, pw.pw_gid))

    def start(self, hashed: str, cert: tuple[str, str] | None) -> None:
        binary = shutil.which("dovecot") or ("/usr/sbin/dovecot" if os.path.exists("/usr/sbin/dovecot") else None)
        if binary is None:
            raise SkipServer("dovecot is not installed: apt-get install -y dovecot-pop3d")
        if os.geteuid() != 0:
            raise SkipServer("a private Dovecot needs root (it runs its mail processes as nobody)")
        pw = pwd.getpwnam("nobody")
        for sub in ("run", "state"):
            os.makedirs(os.path.join(self.workdir, sub), exist_ok=True)
        os.chmod(self.workdir, 0o755)
        with open(os.path.join(self.workdir, "passwd"), "w") as f:
            f.write(f"{ADDRESS}:{hashed}:{pw.pw_uid}:{pw.pw_gid}::{self.home}::\n")
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


def session(server: Server, useTLS: bool) -> dict[str, float]:
    """
    One POP3 session, timed step by step; returns seconds per step and the
    number of octets retrieved.
    """
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    client = poplib.POP3(HOST, server.port, timeout=SOCKET_TIMEOUT)
    try:
        if useTLS:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            client.stls(context)
        client.user(ADDRESS)
        client.pass_(PASSWORD)
        t1 = time.perf_counter()
        _, listing, _ = client.list()
        t2 = time.perf_counter()
        _, uidls, _ = client.uidl()
        t3 = time.perf_counter()
        octets = 0
        for n in range(1, len(listing) + 1):
            _, lines, size = client.retr(n)
            octets += size
        t4 = time.perf_counter()
        client.rset()
        client.quit()
    except BaseException:
        client.close()
        raise
    times.update(login=t1 - t0, list=t2 - t1, uidl=t3 - t2, retr_all=t4 - t3)
    times["total"] = sum(times[s] for s in STEPS)
    times["messages"] = len(listing)
    times["uidls"] = len(uidls)
    times["octets"] = octets
    return times


# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--size", type=int, default=10240, help="octets per message")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--servers", default="mailhub,dovecot")
    parser.add_argument("--python", default=sys.executable,
                        help="interpreter for mailhub (default: this one)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()
    wanted = [s.strip() for s in args.servers.split(",") if s.strip()]

    sys.path.insert(0, PROJECT_ROOT)
    from mailhub.auth.passwords import hashPassword

    hashed = hashPassword(PASSWORD)  # {ARGON2ID}$argon2id$..., used by both servers
    workdir = tempfile.mkdtemp(prefix="mailhub-pop3-bench-")
    os.chmod(workdir, 0o755)
    servers: list[Server] = []
    skipped: dict[str, str] = {}
    started: list[Server] = []  # everything spawned, stopped at the end

    def onSignal(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, onSignal)
    try:
        template = os.path.join(workdir, "template")
        t = time.perf_counter()
        makeMaildir(template, args.messages, args.size)
        print(f"made {args.messages} messages of {args.size} octets in "
              f"{time.perf_counter() - t:.1f}s", flush=True)

        cert = None
        if "mailhub" in wanted:
            mh = Mailhub(workdir, args.python)
            mh.writeUsers(hashed)
            mh.prepare(template)
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
            dc = Dovecot(workdir)
            dc.prepare(template)
            started.append(dc)
            try:
                try:
                    dc.start(hashed, cert)
                except SkipServer as e:
                    if cert is None:
                        raise
                    dc.stop()
                    print(f"dovecot with TLS failed, retrying plaintext: {e}", flush=True)
                    dc.start(hashed, None)
                servers.append(dc)
            except SkipServer as e:
                dc.stop()
                skipped["dovecot"] = str(e)
        for name, why in skipped.items():
            print(f"SKIPPED {name}: {why}", flush=True)
        if not servers:
            return 1

        results: dict[str, list[dict[str, float]]] = {s.name: [] for s in servers}
        cpu: dict[str, list[float]] = {s.name: [] for s in servers}
        for r in range(args.repeats):
            order = servers if r % 2 == 0 else list(reversed(servers))
            for server in order:
                server.prepare(template)  # fresh, cold copy: nothing indexed or moved to cur/
                useTLS = server.name == "mailhub" or getattr(server, "tls", False)
                c0 = treeCPUSeconds(server.proc.pid)
                res = session(server, useTLS)
                cpu[server.name].append(treeCPUSeconds(server.proc.pid) - c0)
                if res["messages"] != args.messages or res["uidls"] != args.messages:
                    print(f"WARNING {server.name}: LIST {res['messages']}, UIDL {res['uidls']}, "
                          f"expected {args.messages}", flush=True)
                results[server.name].append(res)
                print(f"repeat {r + 1} {server.name:8s} " + "  ".join(
                    f"{s}={res[s]:.3f}s" for s in STEPS + ("total",)), flush=True)

        print()
        la = os.getloadavg()
        print(f"POP3, loopback, one sequential poplib client, {args.messages} messages of "
              f"{args.size} octets, {args.repeats} repeat(s), fresh Maildir copy per session")
        print(f"python {platform.python_version()}, {os.cpu_count()} CPUs, "
              f"load average at end {la[0]:.2f} {la[1]:.2f} {la[2]:.2f}")
        print("seconds, median over repeats; login = connect + greeting + STLS + USER + PASS "
              "(Argon2id m=64MiB,t=3 on both)")
        print("-" * 92)
        print(f"{'server':9s} {'TLS':5s} {'login':>7s} {'LIST':>7s} {'UIDL':>7s} "
              f"{'RETR all':>9s} {'total':>7s}  {'RETR min-max':>13s} {'srv CPU s':>9s}")
        for server in servers:
            rs = results[server.name]
            med = {s: statistics.median(x[s] for x in rs) for s in STEPS + ("total",)}
            retr = [x["retr_all"] for x in rs]
            tls = "STLS" if server.name == "mailhub" or getattr(server, "tls", False) else "none"
            print(f"{server.name:9s} {tls:5s} {med['login']:7.3f} {med['list']:7.3f} "
                  f"{med['uidl']:7.3f} {med['retr_all']:9.3f} {med['total']:7.3f}  "
                  f"{min(retr):6.3f}-{max(retr):6.3f} {statistics.median(cpu[server.name]):9.2f}")
        print("-" * 92)
        if "mailhub" in results and "dovecot" in results:
            ratios = [m["retr_all"] / d["retr_all"]
                      for m, d in zip(results["mailhub"], results["dovecot"])]
            print(f"RETR-all mailhub/Dovecot: median {statistics.median(ratios):.2f}x "
                  f"(per repeat: {', '.join(f'{x:.2f}' for x in ratios)}); target <= 1.30x")
        else:
            print("RETR-all mailhub/Dovecot: n/a (Dovecot skipped)")
        return 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        for server in started:
            server.stop()
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
