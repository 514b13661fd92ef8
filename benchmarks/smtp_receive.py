#!/usr/bin/env python3
"""
SMTP receive benchmark: mailhub beside Postfix and aiosmtpd, on loopback.

Starts each server privately on 127.0.0.1 (nothing system-wide is touched),
drives every one with the same asyncio load generator, counts deliveries as
files landing in the mailbox's Maildir C{new/} directory, takes each server's
CPU time from C{/proc}, and prints one table.  See C{benchmarks/README.md}.

    python benchmarks/smtp_receive.py                      # the full run
    python benchmarks/smtp_receive.py --messages 200 --repeats 1 --idle 100

Postfix needs root (it runs its private instance as root, delivering as
C{nobody}); aiosmtpd needs C{pip install aiosmtpd} in this interpreter.  A
server that cannot be started is skipped, with the reason printed.
"""

from __future__ import annotations

import argparse
import asyncio
import email.utils
import importlib.util
import json
import os
import platform
import random
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
PROJECT_ROOT = os.path.dirname(HERE)

HOST = "127.0.0.1"
DOMAIN = "bench.test"
USER = "bench"
RECIPIENT = f"{USER}@{DOMAIN}"
SENDER = "loadgen@client.test"
EHLO_NAME = "loadgen.client.test"

CLK_TCK = os.sysconf("SC_CLK_TCK")

# Every network wait is bounded (seconds).
REPLY_TIMEOUT = 60.0
START_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0


class SkipServer(Exception):
    """
    This server cannot be run here; the text says why.
    """


# ---------------------------------------------------------------------------
# /proc: process trees, CPU, memory
# ---------------------------------------------------------------------------


def _readStat(pid: int) -> tuple[int, int] | None:
    """
    Return C{(ppid, utime + stime + cutime + cstime)} in clock ticks, or
    C{None} if the process is gone.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    # comm (field 2) may hold spaces and parentheses: split after the last ")".
    fields = data[data.rindex(b")") + 2 :].split()
    # fields[0] is field 3 (state): field n is fields[n - 3].
    ppid = int(fields[1])
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return ppid, utime + stime + cutime + cstime


def processTree(root: int) -> dict[int, int]:
    """
    Every live process (zombies included) whose parent chain leads to
    C{root}, and C{root} itself, mapped to its cumulative CPU ticks.
    """
    stats: dict[int, tuple[int, int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = _readStat(int(name))
            if st is not None:
                stats[int(name)] = st
    if root not in stats:
        return {}
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    tree: dict[int, int] = {}
    todo = [root]
    while todo:
        pid = todo.pop()
        tree[pid] = stats[pid][1]
        todo.extend(children.get(pid, ()))
    return tree


def treeCPUSeconds(root: int) -> float:
    """
    CPU seconds used so far by C{root} and all its descendants, dead or
    alive.

    For each live process in the tree we add its own user and system time
    and the C{cutime}/C{cstime} of the children it has already reaped
    (wait()ed for).  A child that has exited and been reaped is in its
    parent's C{cutime}; one still running (or a zombie) is counted from its
    own line; nothing is counted twice.  Taking the difference of two
    samples gives the CPU the whole tree spent in between, however many
    short-lived processes came and went (Postfix's master reaps every
    smtpd, cleanup and virtual it starts).
    """
    return sum(processTree(root).values()) / CLK_TCK


def treeMemoryKB(root: int) -> dict[str, int]:
    """
    Sum of RSS and of private memory (USS, kB) over C{root}'s process tree,
    from C{/proc/PID/smaps_rollup}, and the number of processes.

    RSS counts shared pages (libraries, copy-on-write memory after fork)
    once per process, which overstates a forking server's total.  USS
    (C{Private_Clean + Private_Dirty}) counts only the pages no other
    process maps: what closing the connections could give back.  (PSS
    would share the shared pages out, but it moves whenever any unrelated
    process on the machine maps or unmaps the same libraries.)
    """
    rss = uss = 0
    pids = list(processTree(root))
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Rss:"):
                        rss += int(line.split()[1])
                    elif line.startswith(("Private_Clean:", "Private_Dirty:")):
                        uss += int(line.split()[1])
        except OSError:
            pass
    return {"rss": rss, "uss": uss, "processes": len(pids)}


# ---------------------------------------------------------------------------
# Servers
# ---------------------------------------------------------------------------


def freePort() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def countFiles(path: str) -> int:
    try:
        return len(os.listdir(path))
    except FileNotFoundError:
        return 0


def smallestFile(path: str, sample: int = 10) -> int | None:
    """
    The size of the smallest of up to C{sample} files in C{path}: a check
    that what landed is whole messages, not empty files.
    """
    sizes = []
    try:
        with os.scandir(path) as it:
            for entry in it:
                sizes.append(entry.stat().st_size)
                if len(sizes) >= sample:
                    break
    except FileNotFoundError:
        pass
    return min(sizes) if sizes else None


def emptyDirectory(path: str) -> None:
    try:
        names = os.listdir(path)
    except FileNotFoundError:
        return
    for name in names:
        try:
            os.unlink(os.path.join(path, name))
        except FileNotFoundError:
            pass


class Server:
    """
    One server under test: start it, find its process tree, stop it.
    """

    name = "?"
    note = ""

    def __init__(self, workdir: str) -> None:
        self.workdir = os.path.join(workdir, self.name)
        os.makedirs(self.workdir)
        self.port = freePort()
        self.newDir = ""
        self.logPath = os.path.join(self.workdir, "server.log")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        raise NotImplementedError

    def rootPID(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            # Only our own child and the processes under it.
            for pid in processTree(self.proc.pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.proc.wait(STOP_TIMEOUT)

    def spawn(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        log = open(self.logPath, "wb")
        try:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                env=env,
            )
        finally:
            log.close()

    def logTail(self, lines: int = 15) -> str:
        try:
            with open(self.logPath, errors="replace") as f:
                text = f.read().splitlines()[-lines:]
        except OSError:
            return "(no log)"
        return "\n".join("    | " + line for line in text) or "    | (empty log)"

    async def waitReady(self) -> None:
        """
        Wait until the server answers a connection with a 220 greeting.
        """
        deadline = time.monotonic() + START_TIMEOUT
        last: Exception | None = None
        while time.monotonic() < deadline:
            if not self.alive():
                raise SkipServer(f"exited during start-up\n{self.logTail()}")
            try:
                async with asyncio.timeout(5):
                    reader, writer = await asyncio.open_connection(HOST, self.port)
                    try:
                        code, _ = await readReply(reader)
                        if code == 220:
                            writer.write(b"QUIT\r\n")
                            await writer.drain()
                            return
                        last = RuntimeError(f"greeting {code}")
                    finally:
                        writer.close()
            except (OSError, TimeoutError, asyncio.IncompleteReadError) as e:
                last = e
            await asyncio.sleep(0.2)
        raise SkipServer(f"no 220 greeting on port {self.port} within "
                         f"{START_TIMEOUT:.0f}s ({last!r})\n{self.logTail()}")


class Mailhub(Server):
    name = "mailhub"
    note = "fsync"

    def __init__(self, workdir: str, python: str) -> None:
        super().__init__(workdir)
        self.python = python
        self.dataDir = os.path.join(self.workdir, "data")
        mailbox = os.path.join(self.dataDir, "mail", DOMAIN, USER)
        os.makedirs(mailbox)
        self.newDir = os.path.join(mailbox, "new")
        self.configPath = os.path.join(self.workdir, "mailhub.toml")
        with open(self.configPath, "w") as f:
            f.write(
                f'hostname = "{DOMAIN}"\n'
                f'domains = ["{DOMAIN}"]\n'
                "\n"
                "[listeners]\n"
                f'smtp = ["tcp:{self.port}:interface={HOST}"]\n'
                "submission = []\nsubmissions = []\npop3 = []\npop3s = []\nimap = []\nimaps = []\n"
                "\n"
                "[auth]\n"
                # The benchmark's mailbox is a directory, not a user.
                'mailboxes = "directories"\n'
            )

    def start(self) -> None:
        env = dict(os.environ)
        # The working tree first, so that the benchmark measures the code
        # beside it, installed or not; its twisted/plugins/ holds the plugin.
        env["PYTHONPATH"] = os.pathsep.join(
            [PROJECT_ROOT] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
        )
        # twistd's own options come before the plugin name, the plugin's after.
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


class Aiosmtpd(Server):
    name = "aiosmtpd"
    note = "no fsync"

    def __init__(self, workdir: str, python: str) -> None:
        super().__init__(workdir)
        self.python = python
        self.maildir = os.path.join(self.workdir, "Maildir")
        self.newDir = os.path.join(self.maildir, "new")

    def start(self) -> None:
        if self.python == sys.executable:
            found = importlib.util.find_spec("aiosmtpd") is not None
        else:
            found = subprocess.run(
                [self.python, "-c", "import aiosmtpd"], capture_output=True
            ).returncode == 0
        if not found:
            raise SkipServer(f"aiosmtpd is not installed: {self.python} -m pip install aiosmtpd")
        self.spawn(
            [
                self.python, os.path.join(HERE, "aiosmtpd_maildir.py"),
                "--host", HOST, "--port", str(self.port),
                "--maildir", self.maildir, "--domain", DOMAIN,
            ]
        )


POSTFIX_MASTER_CF = """\
# service type  private unpriv  chroot  wakeup  maxproc command
{host}:{port} inet n    -       n       -       -       smtpd
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
virtual   unix  -       n       n       -       -       virtual
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""

POSTFIX_MAIN_CF = """\
# A private Postfix for benchmarks/smtp_receive.py: loopback only, local
# virtual-mailbox delivery into one Maildir, nothing ever sent out.
compatibility_level = 3.6
queue_directory = {root}/queue
data_directory = {root}/data
mail_owner = postfix
setgid_group = postdrop
myhostname = postfix.{domain}
mydomain = {domain}
myorigin = $myhostname
mydestination =
inet_interfaces = {host}
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relay_domains =
alias_maps =
alias_database =
local_recipient_maps =
local_transport = error:local delivery is off in this instance
default_transport = error:this instance never sends mail out
relay_transport = error:this instance never sends mail out
virtual_mailbox_domains = {domain}
virtual_mailbox_base = {root}/mail
virtual_mailbox_maps = texthash:{root}/conf/vmailbox
virtual_uid_maps = static:{uid}
virtual_gid_maps = static:{gid}
maillog_file = {root}/log/maillog
maillog_file_prefixes = {root}
smtpd_banner = $myhostname ESMTP
biff = no
append_dot_mydomain = no
# 500 idle connections: one smtpd each, and no per-client limit.
default_process_limit = {processLimit}
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
smtpd_client_message_rate_limit = 0
smtpd_client_recipient_rate_limit = 0
"""


class Postfix(Server):
    name = "postfix"
    note = "fsync"

    def __init__(self, workdir: str, processLimit: int) -> None:
        super().__init__(workdir)
        # nobody must reach the Maildir through this directory.
        os.chmod(self.workdir, 0o755)
        os.chmod(os.path.dirname(self.workdir), 0o755)
        self.conf = os.path.join(self.workdir, "conf")
        self.processLimit = processLimit
        self.masterPID: int | None = None
        self.started = False
        self.newDir = os.path.join(self.workdir, "mail", USER, "Maildir", "new")

    def postfix(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [self.command, "-c", self.conf, *args],
            capture_output=True, text=True, timeout=120,
        )
        if check and result.returncode != 0:
            raise SkipServer(
                f"postfix {' '.join(args)} failed ({result.returncode}):\n"
                + textwrap.indent((result.stdout + result.stderr).strip(), "    | ")
            )
        return result

    def start(self) -> None:
        self.command = shutil.which("postfix") or "/usr/sbin/postfix"
        if not os.path.exists(self.command):
            raise SkipServer(
                "postfix is not installed (see benchmarks/README.md: "
                "debconf preseed, then apt-get install -y postfix)"
            )
        if os.geteuid() != 0:
            raise SkipServer("a private Postfix instance needs root")
        import grp
        import pwd

        nobody = pwd.getpwnam("nobody")
        for name in ("conf", "queue", "data", "log"):
            os.makedirs(os.path.join(self.workdir, name))
        maildir = os.path.dirname(self.newDir)
        for sub in ("", "new", "cur", "tmp"):
            path = os.path.join(maildir, sub)
            os.makedirs(path, exist_ok=True)
        for path in (os.path.join(self.workdir, "mail"), os.path.dirname(maildir)):
            os.chown(path, nobody.pw_uid, nobody.pw_gid)
        for sub in ("", "new", "cur", "tmp"):
            os.chown(os.path.join(maildir, sub), nobody.pw_uid, nobody.pw_gid)
        grp.getgrnam("postdrop")
        values = dict(
            root=self.workdir, host=HOST, port=self.port, domain=DOMAIN,
            uid=nobody.pw_uid, gid=nobody.pw_gid, processLimit=self.processLimit,
        )
        with open(os.path.join(self.conf, "main.cf"), "w") as f:
            f.write(POSTFIX_MAIN_CF.format(**values))
        with open(os.path.join(self.conf, "master.cf"), "w") as f:
            f.write(POSTFIX_MASTER_CF.format(**values))
        with open(os.path.join(self.conf, "vmailbox"), "w") as f:
            f.write(f"{RECIPIENT} {USER}/Maildir/\n")
        self.postfix("set-permissions")
        self.postfix("check")
        self.started = True
        self.postfix("start")
        pidFile = os.path.join(self.workdir, "queue", "pid", "master.pid")
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            try:
                with open(pidFile) as f:
                    self.masterPID = int(f.read().strip())
                break
            except (OSError, ValueError):
                time.sleep(0.1)
        else:
            raise SkipServer(f"no {pidFile} after postfix start")
        self.logPath = os.path.join(self.workdir, "log", "maillog")

    def rootPID(self) -> int:
        assert self.masterPID is not None
        return self.masterPID

    def alive(self) -> bool:
        return self.masterPID is not None and bool(processTree(self.masterPID))

    def stop(self) -> None:
        if not self.started:
            return
        self.postfix("stop", check=False)
        if self.masterPID is None:
            return
        deadline = time.monotonic() + STOP_TIMEOUT
        while time.monotonic() < deadline and processTree(self.masterPID):
            time.sleep(0.1)
        for pid in processTree(self.masterPID):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


# ---------------------------------------------------------------------------
# The load generator: a tiny asyncio SMTP client
# ---------------------------------------------------------------------------

WORDS = (
    "the of and to in is that for it as was with be by on not he this are or "
    "his from at which but have an they you were her she there been one all "
    "would their we him has when who will more no if out so said what up its "
    "about into than them can only other new some could time these two may "
    "then do first any my now such like our over man me even most made after "
    "also did many before must through back years where much your way well "
    "down should because each just those people how too little state good "
    "very make world still own see men work long get here between both life "
    "being under never day same another know while last might us great old "
    "year off come since against go came right used take three invoice "
    "meeting schedule quarterly report attached please review thanks regards"
).split()


def makeBody(size: int, seed: int = 5321) -> bytes:
    """
    A plain-text body of about C{size} octets: prose in lines of at most 72
    characters, CRLF line ends, deterministic.
    """
    rng = random.Random(seed)
    lines: list[str] = []
    total = 0
    paragraph = 0
    while total < size:
        words = [rng.choice(WORDS) for _ in range(rng.randint(40, 90))]
        words[0] = words[0].capitalize()
        text = " ".join(words) + "."
        for line in textwrap.wrap(text, 72) + [""]:
            lines.append(line)
            total += len(line) + 2
        paragraph += 1
    return "\r\n".join(lines).encode("ascii")[:size].rstrip() + b"\r\n"


class Payloads:
    """
    The wire form of each benchmark message: realistic headers (unique
    Message-ID), a 10 KB-ish body, dot-stuffed, ended by C{CRLF.CRLF}.
    """

    def __init__(self, size: int) -> None:
        self.runID = f"{int(time.time())}.{os.getpid()}"
        self.date = email.utils.formatdate(localtime=True)
        header = self.headers(0)
        body = makeBody(max(200, size - len(header)))
        # RFC 5321 §4.5.2: a line that starts with "." gets another one.
        self.body = b"\r\n".join(
            b"." + line if line.startswith(b".") else line for line in body.split(b"\r\n")
        )
        if not self.body.endswith(b"\r\n"):
            self.body += b"\r\n"
        self.size = len(header) + len(body)

    def headers(self, n: int) -> bytes:
        return (
            f"Received: from workstation.client.test (workstation.client.test [192.0.2.10])\r\n"
            f"\tby relay.client.test with ESMTPS id {n:08X}\r\n"
            f"\tfor <{RECIPIENT}>; {self.date}\r\n"
            f'From: "Load Generator" <{SENDER}>\r\n'
            f'To: "Bench User" <{RECIPIENT}>\r\n'
            f"Subject: Quarterly report, part {n}\r\n"
            f"Date: {self.date}\r\n"
            f"Message-ID: <{self.runID}.{n}@client.test>\r\n"
            f"MIME-Version: 1.0\r\n"
            f'Content-Type: text/plain; charset="us-ascii"; format=flowed\r\n'
            f"Content-Transfer-Encoding: 7bit\r\n"
            f"User-Agent: mailhub-benchmark/1.0\r\n"
            f"\r\n"
        ).encode("ascii")

    def __call__(self, n: int) -> bytes:
        return self.headers(n) + self.body + b".\r\n"


class SMTPReplyError(Exception):
    pass


async def readReply(reader: asyncio.StreamReader) -> tuple[int, list[bytes]]:
    """
    Read one (possibly multi-line) reply; return its code and lines.
    """
    lines = []
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionResetError("server closed the connection")
        lines.append(line)
        if len(line) < 4 or line[3:4] != b"-":
            return int(line[:3]), lines


async def command(reader, writer, line: bytes, expect: tuple[int, ...]) -> int:
    writer.write(line)
    code, lines = await readReply(reader)
    if code not in expect:
        raise SMTPReplyError(f"{line.split()[0].decode()} -> {lines[-1].decode(errors='replace').strip()}")
    return code


class LoadStats:
    def __init__(self) -> None:
        self.accepted = 0
        self.rejected = 0
        self.errors: list[str] = []


async def clientSession(port: int, numbers: range, payloads: Payloads, stats: LoadStats) -> None:
    """
    One connection: greeting, EHLO, then MAIL/RCPT/DATA for each message in
    turn (lock-step, no pipelining), then QUIT.
    """
    async with asyncio.timeout(REPLY_TIMEOUT):
        reader, writer = await asyncio.open_connection(HOST, port, limit=1 << 16)
    try:
        async with asyncio.timeout(REPLY_TIMEOUT):
            code, lines = await readReply(reader)
            if code != 220:
                raise SMTPReplyError(f"greeting {lines[-1]!r}")
            await command(reader, writer, b"EHLO " + EHLO_NAME.encode() + b"\r\n", (250,))
        mail = f"MAIL FROM:<{SENDER}>\r\n".encode()
        rcpt = f"RCPT TO:<{RECIPIENT}>\r\n".encode()
        for n in numbers:
            try:
                async with asyncio.timeout(REPLY_TIMEOUT):
                    await command(reader, writer, mail, (250,))
                    await command(reader, writer, rcpt, (250, 251))
                    await command(reader, writer, b"DATA\r\n", (354,))
                    writer.write(payloads(n))
                    code, lines = await readReply(reader)
                    if code != 250:
                        raise SMTPReplyError(f"end of data -> {lines[-1]!r}")
                stats.accepted += 1
            except SMTPReplyError as e:
                stats.rejected += 1
                if len(stats.errors) < 5:
                    stats.errors.append(str(e))
                async with asyncio.timeout(REPLY_TIMEOUT):
                    await command(reader, writer, b"RSET\r\n", (250,))
        async with asyncio.timeout(REPLY_TIMEOUT):
            writer.write(b"QUIT\r\n")
            await writer.drain()
            try:
                await readReply(reader)
            except ConnectionError:
                pass
    finally:
        writer.close()
        try:
            async with asyncio.timeout(5):
                await writer.wait_closed()
        except (OSError, TimeoutError):
            pass


async def waitForFiles(path: str, expected: int, timeout: float) -> tuple[int, float]:
    """
    Poll C{path} until it holds C{expected} files or C{timeout} passes;
    return the count and the time it was seen.
    """
    deadline = time.perf_counter() + timeout
    while True:
        n = countFiles(path)
        now = time.perf_counter()
        if n >= expected or now > deadline:
            return n, now
        await asyncio.sleep(0.005 if n else 0.02)


async def runLoad(server: Server, connections: int, messages: int,
                  payloads: Payloads, deliveryTimeout: float) -> dict[str, Any]:
    """
    Send C{messages} over C{connections} concurrent connections and wait for
    them all to land in C{new/}.
    """
    emptyDirectory(server.newDir)
    connections = max(1, min(connections, messages))
    share, extra = divmod(messages, connections)
    ranges, start = [], 0
    for i in range(connections):
        count = share + (1 if i < extra else 0)
        ranges.append(range(start, start + count))
        start += count
    stats = LoadStats()
    root = server.rootPID()
    cpu0 = treeCPUSeconds(root)
    client0 = time.process_time()
    t0 = time.perf_counter()
    outcomes = await asyncio.gather(
        *(clientSession(server.port, r, payloads, stats) for r in ranges),
        return_exceptions=True,
    )
    sent = time.perf_counter()
    failures = [o for o in outcomes if isinstance(o, BaseException)]
    for f in failures[:5]:
        stats.errors.append(f"connection failed: {f!r}")
    delivered, t1 = await waitForFiles(server.newDir, messages, deliveryTimeout)
    client1 = time.process_time()
    cpu1 = treeCPUSeconds(root)
    elapsed = t1 - t0
    result = {
        "connections": connections,
        "messages": messages,
        "accepted": stats.accepted,
        "rejected": stats.rejected,
        "failedConnections": len(failures),
        "delivered": delivered,
        "elapsed": elapsed,
        "sendElapsed": sent - t0,
        "rate": delivered / elapsed if elapsed > 0 else 0.0,
        "serverCPU": cpu1 - cpu0,
        "serverCPUmsPerMessage": (cpu1 - cpu0) * 1000 / delivered if delivered else float("nan"),
        "clientCPUmsPerMessage": (client1 - client0) * 1000 / messages,
        "errors": stats.errors,
        "smallestFile": smallestFile(server.newDir),
    }
    # Line ends may be stored as LF (Postfix), and Received: added: allow 10%.
    if result["smallestFile"] is not None and result["smallestFile"] < 0.9 * payloads.size:
        stats.errors.append(f"a delivered file has only {result['smallestFile']} octets")
    emptyDirectory(server.newDir)
    return result


async def idleConnections(server: Server, count: int) -> dict[str, Any]:
    """
    Open C{count} connections (greeting, EHLO, then silence) and compare the
    server's memory before and after.
    """
    root = server.rootPID()
    await asyncio.sleep(1)
    before = treeMemoryKB(root)
    opened: list[asyncio.StreamWriter] = []
    errors: list[str] = []
    gate = asyncio.Semaphore(50)

    async def openOne() -> None:
        async with gate:
            async with asyncio.timeout(REPLY_TIMEOUT):
                reader, writer = await asyncio.open_connection(HOST, server.port)
                opened.append(writer)
                code, _ = await readReply(reader)
                if code != 220:
                    raise SMTPReplyError(f"greeting {code}")
                await command(reader, writer, b"EHLO " + EHLO_NAME.encode() + b"\r\n", (250,))

    try:
        outcomes = await asyncio.gather(*(openOne() for _ in range(count)),
                                        return_exceptions=True)
        failed = [o for o in outcomes if isinstance(o, BaseException)]
        errors = [repr(f) for f in failed[:5]]
        await asyncio.sleep(2)
        after = treeMemoryKB(root)
    finally:
        for writer in opened:
            if not writer.is_closing():
                writer.write(b"QUIT\r\n")
            writer.close()
        await asyncio.gather(*(w.wait_closed() for w in opened), return_exceptions=True)
    idle = count - len(failed)
    return {
        "connections": idle,
        "failed": len(failed),
        "errors": errors,
        "before": before,
        "after": after,
        "rssKBPerConnection": (after["rss"] - before["rss"]) / idle if idle else float("nan"),
        "ussKBPerConnection": (after["uss"] - before["uss"]) / idle if idle else float("nan"),
    }


# ---------------------------------------------------------------------------
# The run and the table
# ---------------------------------------------------------------------------


def makeServer(name: str, workdir: str, args: argparse.Namespace) -> Server:
    if name == "mailhub":
        return Mailhub(workdir, args.python)
    if name == "aiosmtpd":
        return Aiosmtpd(workdir, args.python)
    if name == "postfix":
        return Postfix(workdir, processLimit=max(100, args.idle + 200))
    raise ValueError(name)


def fmtRate(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values):7.0f} ({min(values):.0f}-{max(values):.0f})"


def fmtRatio(values: list[float]) -> str:
    return f"{statistics.median(values):.2f}x" if values else "-"


def printReport(args, order, results, memory, skipped, payloads) -> None:
    print()
    print("=" * 100)
    print(f"SMTP receive, loopback, {payloads.size}-octet messages, one per transaction, "
          f"{args.messages} messages per level and repeat, {args.repeats} repeat(s)")
    print(f"python {platform.python_version()}, {os.cpu_count()} CPUs, "
          f"load average at end {open('/proc/loadavg').read().split()[:3]}")
    print("msg/s: median over repeats (min-max), time from first connect to the last file in new/.")
    print("CPU ms/msg: server process tree (utime+stime incl. reaped children) per delivered message.")
    print("vs mailhub: median over repeats of the per-repeat ratio peer/mailhub "
          "(msg/s: >1 = peer faster; CPU: >1 = peer costs more).")
    print("-" * 100)
    head = (f"{'conns':>5}  {'server':<9} {'msg/s median (min-max)':>24}  {'CPU ms/msg':>10}  "
            f"{'client ms/msg':>13}  {'msg/s vs mh':>11}  {'CPU vs mh':>9}  note")
    print(head)
    for level in args.levels:
        for name in order:
            runs = results.get((name, level), [])
            if not runs:
                continue
            rates = [r["rate"] for r in runs]
            cpus = [r["serverCPUmsPerMessage"] for r in runs]
            clients = [r["clientCPUmsPerMessage"] for r in runs]
            rateRatio, cpuRatio = [], []
            if name != "mailhub":
                mine = {r["repeat"]: r for r in runs}
                for m in results.get(("mailhub", level), []):
                    p = mine.get(m["repeat"])
                    if p and m["rate"] > 0 and m["serverCPUmsPerMessage"] > 0:
                        rateRatio.append(p["rate"] / m["rate"])
                        cpuRatio.append(p["serverCPUmsPerMessage"] / m["serverCPUmsPerMessage"])
            short = sum(r["messages"] - r["delivered"] for r in runs)
            note = ({"mailhub": "fsync", "postfix": "fsync", "aiosmtpd": "NO fsync"}[name])
            if short:
                note += f"; {short} NOT DELIVERED"
            print(f"{level:>5}  {name:<9} {fmtRate(rates):>24}  {statistics.median(cpus):10.2f}  "
                  f"{statistics.median(clients):13.2f}  "
                  f"{fmtRatio(rateRatio) if name != 'mailhub' else '1.00x':>11}  "
                  f"{fmtRatio(cpuRatio) if name != 'mailhub' else '1.00x':>9}  {note}")
    if memory:
        print("-" * 100)
        print(f"Idle connections (greeting + EHLO, then silence): memory of the server's "
              f"process tree, from /proc/PID/smaps_rollup")
        print(f"{'server':<9} {'conns':>5}  {'procs before/after':>18}  {'RSS MB before/after':>20}  "
              f"{'RSS KB/conn':>11}  {'USS KB/conn':>11}")
        for name in order:
            m = memory.get(name)
            if not m:
                continue
            b, a = m["before"], m["after"]
            fail = f"  ({m['failed']} failed: {m['errors'][:1]})" if m["failed"] else ""
            print(f"{name:<9} {m['connections']:>5}  {b['processes']:>8}/{a['processes']:<9}  "
                  f"{b['rss'] / 1024:>9.1f}/{a['rss'] / 1024:<10.1f}  "
                  f"{m['rssKBPerConnection']:>11.1f}  {m['ussKBPerConnection']:>11.1f}{fail}")
        print("RSS sums count shared pages once per process (overstates Postfix's one "
              "smtpd per connection); USS counts private pages only.")
    for name, why in skipped.items():
        print("-" * 100)
        print(f"SKIPPED {name}: {why}")
    print("=" * 100)


def raiseFileLimit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max(soft, needed)
    if hard != resource.RLIM_INFINITY:
        want = min(want, hard)
    if want > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    if want < needed:
        print(f"warning: open-file limit {want} < {needed} needed", file=sys.stderr)


async def benchmark(args: argparse.Namespace, workdir: str, servers: list[Server],
                    skipped: dict[str, str]) -> bool:
    """
    Start the servers, warm up, measure idle memory, run the load; print
    the table.  Return whether any server was measured.
    """
    payloads = Payloads(args.size)
    running: list[Server] = []
    for server in servers:
        print(f"starting {server.name} on {HOST}:{server.port} ...", flush=True)
        try:
            server.start()
            await server.waitReady()
            running.append(server)
        except SkipServer as e:
            skipped[server.name] = str(e)
            print(f"  skipping {server.name}: {e}", flush=True)
            server.stop()
    results: dict[tuple[str, int], list[dict[str, Any]]] = {}
    memory: dict[str, dict[str, Any]] = {}
    order = [s.name for s in running]

    def fail(server: Server, what: str, e: BaseException) -> None:
        why = f"{what} failed: {e!r}"
        if not server.alive():
            why += f"; the server died\n{server.logTail()}"
        skipped[server.name] = why
        print(f"  {server.name}: {why}", flush=True)
        running.remove(server)

    # Warm up (imports, caches, first processes) on one connection.
    for server in list(running):
        if args.warmup:
            try:
                r = await runLoad(server, 1, args.warmup, payloads, args.timeout)
                print(f"warm-up {server.name}: {r['delivered']}/{r['messages']} delivered, "
                      f"{r['rate']:.0f} msg/s", flush=True)
                if r["delivered"] < r["messages"]:
                    raise RuntimeError(f"only {r['delivered']} of {r['messages']} delivered; "
                                       f"errors {r['errors']}")
            except Exception as e:
                fail(server, "warm-up", e)

    if args.idle:
        for server in list(running):
            try:
                m = await idleConnections(server, args.idle)
                memory[server.name] = m
                print(f"idle {server.name}: {m['connections']} connections, "
                      f"{m['rssKBPerConnection']:.1f} KB RSS/conn, "
                      f"{m['ussKBPerConnection']:.1f} KB USS/conn", flush=True)
                await asyncio.sleep(1)
            except Exception as e:
                fail(server, "idle connections", e)

    for repeat in range(args.repeats):
        for level in args.levels:
            # Interleave the servers; rotate who goes first in each repeat.
            k = repeat % len(running) if running else 0
            for server in running[k:] + running[:k]:
                try:
                    r = await runLoad(server, level, args.messages, payloads, args.timeout)
                except Exception as e:
                    fail(server, f"load at {level} connections", e)
                    continue
                r["repeat"] = repeat
                results.setdefault((server.name, level), []).append(r)
                extra = ""
                if (r["delivered"] < r["messages"] or r["rejected"] or r["failedConnections"]
                        or r["errors"]):
                    extra = (f"  [delivered {r['delivered']}/{r['messages']}, rejected "
                             f"{r['rejected']}, failed connections {r['failedConnections']}, "
                             f"{r['errors'][:2]}]")
                print(f"repeat {repeat + 1}/{args.repeats} conns {level:>3} {server.name:<9} "
                      f"{r['rate']:7.0f} msg/s  {r['serverCPUmsPerMessage']:6.2f} CPU ms/msg  "
                      f"client {r['clientCPUmsPerMessage']:.2f} ms/msg{extra}", flush=True)
                if not server.alive():
                    fail(server, f"load at {level} connections", RuntimeError("server exited"))
                await asyncio.sleep(args.pause)

    printReport(args, order, results, memory, skipped, payloads)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({
                "arguments": {k: v for k, v in vars(args).items()},
                "messageSize": payloads.size,
                "results": [dict(server=n, level=l, **r) for (n, l), rs in results.items() for r in rs],
                "memory": memory,
                "skipped": skipped,
            }, f, indent=2)
        print(f"wrote {args.json}")
    return bool(results)


def parseArgs(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Benchmark SMTP receiving: mailhub, Postfix and aiosmtpd on loopback."
    )
    p.add_argument("--messages", type=int, default=2000, help="messages per level and repeat (2000)")
    p.add_argument("--repeats", type=int, default=3, help="repeats, servers interleaved in each (3)")
    p.add_argument("--levels", default="1,8,32", help="concurrent connections, comma-separated (1,8,32)")
    p.add_argument("--servers", default="mailhub,postfix,aiosmtpd", help="which servers, in order")
    p.add_argument("--idle", type=int, default=500, help="idle connections for the memory test; 0 skips (500)")
    p.add_argument("--size", type=int, default=10240, help="message size in octets (10240)")
    p.add_argument("--warmup", type=int, default=100, help="warm-up messages per server, not counted (100)")
    p.add_argument("--timeout", type=float, default=120.0,
                   help="seconds to wait for deliveries after the client has finished (120)")
    p.add_argument("--pause", type=float, default=0.5, help="seconds of rest between runs (0.5)")
    p.add_argument("--python", default=sys.executable,
                   help="interpreter for mailhub and aiosmtpd (this one)")
    p.add_argument("--workdir", help="parent for the temporary directory (system default)")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (configs, logs)")
    p.add_argument("--json", help="also write the raw results to this file")
    args = p.parse_args(argv)
    args.levels = [int(x) for x in args.levels.split(",") if x.strip()]
    args.servers = [x.strip() for x in args.servers.split(",") if x.strip()]
    for name in args.servers:
        if name not in ("mailhub", "postfix", "aiosmtpd"):
            p.error(f"unknown server {name!r}")
    if args.messages < 1 or args.repeats < 1 or not args.levels or min(args.levels) < 1:
        p.error("--messages, --repeats and --levels must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parseArgs(argv)
    raiseFileLimit(2 * max(args.idle, max(args.levels)) + 1024)
    # A polite kill (SIGTERM) unwinds through the finally below like Ctrl-C.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    workdir = tempfile.mkdtemp(prefix="mailhub-bench-", dir=args.workdir)
    servers: list[Server] = []
    skipped: dict[str, str] = {}
    measured = False
    try:
        for name in args.servers:
            servers.append(makeServer(name, workdir, args))
        measured = asyncio.run(benchmark(args, workdir, servers, skipped))
    finally:
        for server in servers:
            try:
                server.stop()
            except Exception as e:  # keep stopping the others
                print(f"stopping {server.name}: {e!r}", file=sys.stderr)
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0 if measured else 1


if __name__ == "__main__":
    sys.exit(main())
