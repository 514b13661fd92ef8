#!/usr/bin/env python3
"""
Relay benchmark: mailhub beside Postfix, relaying to a loopback SMTP sink.

Starts a counting SMTP sink (C{benchmarks/relay_sink.py}, its own process),
then a private mailhub and a private Postfix on 127.0.0.1, each routing the
50 domains C{d0.test} ... C{d49.test} to the sink with a transport map.  The
same asyncio client (from C{smtp_receive.py}) sends 10 KB messages, each to
one recipient at a random one of the 50 domains, over 8 connections; the
clock runs from the first connect until the sink has counted every message:
messages/second from accept to the remote 250.  The servers are interleaved
in each repeat.  Then a memory check of mailhub's queue: a second mailhub
whose transport points at a closed port (127.0.0.1:1) is given
C{--deferred} messages, and its RSS is printed per 1,000 queued.

    python benchmarks/relay.py                        # full run
    python benchmarks/relay.py --messages 300 --repeats 1 --deferred 2000

Nothing leaves 127.0.0.1.  See C{benchmarks/README.md}, "Relay".
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import shutil
import signal
import statistics
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import smtp_receive as sr  # noqa: E402
from smtp_receive import (  # noqa: E402
    HERE, HOST, REPLY_TIMEOUT, SENDER, EHLO_NAME, SkipServer, Server, LoadStats,
    Payloads, command, freePort, raiseFileLimit, readReply,
    treeCPUSeconds, treeMemoryKB,
)

DOMAINS = [f"d{i}.test" for i in range(50)]


# ---------------------------------------------------------------------------
# The sink
# ---------------------------------------------------------------------------


class Sink(Server):
    name = "sink"

    def __init__(self, workdir: str, python: str) -> None:
        super().__init__(workdir)
        self.python = python
        self.control = freePort()

    def start(self) -> None:
        self.spawn([self.python, os.path.join(HERE, "relay_sink.py"),
                    "--port", str(self.port), "--control", str(self.control)])

    async def count(self) -> int:
        async with asyncio.timeout(10):
            reader, writer = await asyncio.open_connection(HOST, self.control)
            try:
                writer.write(b"COUNT\n")
                line = await reader.readline()
            finally:
                writer.close()
        return int(line.split()[0])


# ---------------------------------------------------------------------------
# mailhub and Postfix, relaying
# ---------------------------------------------------------------------------


def mailhubConfig(port: int, route: str, concurrency: int, perDomain: int) -> str:
    lines = [
        'hostname = "relay.test"',
        'domains = ["relay.test"]',
        'trusted_networks = ["127.0.0.0/8"]',
        "",
        "[listeners]",
        f'smtp = ["tcp:{port}:interface={HOST}"]',
        "submission = []",
        "submissions = []",
        "pop3 = []",
        "pop3s = []",
        "imap = []",
        "imaps = []",
        "",
        "[relay]",
        'dns_servers = ["127.0.0.1:9"]',
        f"concurrency = {concurrency}",
        f"per_domain = {perDomain}",
        "",
        "[relay.transport]",
    ]
    lines += [f'"{d}" = "{route}"' for d in DOMAINS]
    return "\n".join(lines) + "\n"


class MailhubRelay(sr.Mailhub):
    name = "mailhub"

    def __init__(self, workdir: str, python: str, route: str,
                 concurrency: int, perDomain: int) -> None:
        super().__init__(workdir, python)
        with open(self.configPath, "w") as f:
            f.write(mailhubConfig(self.port, route, concurrency, perDomain))
        self.queueDir = os.path.join(self.dataDir, "queue")

    def queued(self) -> int:
        try:
            return sum(1 for n in os.listdir(self.queueDir) if n.endswith(".env"))
        except FileNotFoundError:
            return 0


class MailhubDeferred(MailhubRelay):
    name = "mailhub-deferred"


POSTFIX_MASTER_CF = """\
# service type  private unpriv  chroot  wakeup  maxproc command
{host}:{port} inet n    -       n       -       -       smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""

POSTFIX_MAIN_CF = """\
# A private relaying Postfix for benchmarks/relay.py: loopback only; the
# 50 benchmark domains go to the sink by transport map, everything else to
# the error transport, so nothing ever leaves 127.0.0.1.
compatibility_level = 3.6
queue_directory = {root}/queue
data_directory = {root}/data
mail_owner = postfix
setgid_group = postdrop
myhostname = postfix.relay.test
mydomain = relay.test
myorigin = $myhostname
mydestination =
inet_interfaces = {host}
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relay_domains =
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
alias_maps =
alias_database =
local_recipient_maps =
local_transport = error:local delivery is off in this instance
default_transport = error:this instance never sends mail out
relay_transport = error:this instance never sends mail out
transport_maps = texthash:{root}/transport
smtp_tls_security_level = none
smtp_dns_support_level = disabled
maillog_file = {root}/log/maillog
maillog_file_prefixes = {root}
smtpd_banner = $myhostname ESMTP
biff = no
append_dot_mydomain = no
default_process_limit = 200
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
smtpd_client_message_rate_limit = 0
smtpd_client_recipient_rate_limit = 0
"""


class PostfixRelay(sr.Postfix):
    name = "postfix"

    def __init__(self, workdir: str, sinkPort: int) -> None:
        super().__init__(workdir, processLimit=200)
        self.sinkPort = sinkPort

    def start(self) -> None:
        # smtp_receive's start-up (permissions, check, start, master pid)
        # with this file's main.cf/master.cf; the transport map sits beside
        # conf/, which that start-up creates.
        with open(os.path.join(self.workdir, "transport"), "w") as f:
            for d in DOMAINS:
                f.write(f"{d} smtp:[{HOST}]:{self.sinkPort}\n")
        saved = sr.POSTFIX_MAIN_CF, sr.POSTFIX_MASTER_CF
        sr.POSTFIX_MAIN_CF, sr.POSTFIX_MASTER_CF = POSTFIX_MAIN_CF, POSTFIX_MASTER_CF
        try:
            super().start()
        finally:
            sr.POSTFIX_MAIN_CF, sr.POSTFIX_MASTER_CF = saved

    def queued(self) -> int:
        n = 0
        for sub in ("incoming", "active", "deferred", "maildrop"):
            for _, _, files in os.walk(os.path.join(self.workdir, "queue", sub)):
                n += len(files)
        return n


# ---------------------------------------------------------------------------
# Load
# ---------------------------------------------------------------------------


async def clientSession(port: int, numbers: range, payloads: Payloads,
                        recipients: list[str], stats: LoadStats) -> None:
    """
    smtp_receive's client, with a recipient per message: greeting, EHLO,
    then MAIL/RCPT/DATA for each message (lock-step), then QUIT.
    """
    async with asyncio.timeout(REPLY_TIMEOUT):
        reader, writer = await asyncio.open_connection(HOST, port, limit=1 << 16)
    try:
        async with asyncio.timeout(REPLY_TIMEOUT):
            code, lines = await readReply(reader)
            if code != 220:
                raise sr.SMTPReplyError(f"greeting {lines[-1]!r}")
            await command(reader, writer, b"EHLO " + EHLO_NAME.encode() + b"\r\n", (250,))
        mail = f"MAIL FROM:<{SENDER}>\r\n".encode()
        for n in numbers:
            try:
                async with asyncio.timeout(REPLY_TIMEOUT):
                    await command(reader, writer, mail, (250,))
                    await command(reader, writer, f"RCPT TO:<{recipients[n]}>\r\n".encode(),
                                  (250, 251))
                    await command(reader, writer, b"DATA\r\n", (354,))
                    writer.write(payloads(n))
                    code, lines = await readReply(reader)
                    if code != 250:
                        raise sr.SMTPReplyError(f"end of data -> {lines[-1]!r}")
                stats.accepted += 1
            except sr.SMTPReplyError as e:
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


def split(messages: int, connections: int, start: int = 0) -> list[range]:
    connections = max(1, min(connections, messages))
    share, extra = divmod(messages, connections)
    ranges = []
    for i in range(connections):
        count = share + (1 if i < extra else 0)
        ranges.append(range(start, start + count))
        start += count
    return ranges


def recipientsFor(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [f"user{rng.randrange(1000)}@{rng.choice(DOMAINS)}" for _ in range(count)]


async def runLoad(server: Server, sink: Sink, connections: int, messages: int,
                  payloads: Payloads, timeout: float, seed: int) -> dict[str, Any]:
    """
    Send C{messages} over C{connections} connections; wait until the sink
    has counted them all.
    """
    recipients = recipientsFor(messages, seed)
    stats = LoadStats()
    base = await sink.count()
    root = server.rootPID()
    cpu0 = treeCPUSeconds(root)
    sinkCPU0 = treeCPUSeconds(sink.rootPID())
    client0 = time.process_time()
    t0 = time.perf_counter()
    outcomes = await asyncio.gather(
        *(clientSession(server.port, r, payloads, recipients, stats)
          for r in split(messages, connections)),
        return_exceptions=True,
    )
    sent = time.perf_counter()
    for f in [o for o in outcomes if isinstance(o, BaseException)][:5]:
        stats.errors.append(f"connection failed: {f!r}")
    deadline = sent + timeout
    while True:
        got = await sink.count() - base
        now = time.perf_counter()
        if got >= stats.accepted or now > deadline:
            break
        await asyncio.sleep(0.01)
    client1 = time.process_time()
    cpu1 = treeCPUSeconds(root)
    sinkCPU1 = treeCPUSeconds(sink.rootPID())
    elapsed = now - t0
    return {
        "messages": messages, "accepted": stats.accepted, "rejected": stats.rejected,
        "relayed": got, "elapsed": elapsed, "acceptElapsed": sent - t0,
        "rate": got / elapsed if elapsed > 0 else 0.0,
        "acceptRate": stats.accepted / (sent - t0) if sent > t0 else 0.0,
        "cpuMs": (cpu1 - cpu0) * 1000 / got if got else float("nan"),
        "sinkCpuMs": (sinkCPU1 - sinkCPU0) * 1000 / got if got else float("nan"),
        "clientCpuMs": (client1 - client0) * 1000 / messages,
        "errors": stats.errors,
    }


async def waitDrained(server: Server, timeout: float = 60.0) -> int:
    """
    Wait until the server's queue is empty (deletes after the 250 can lag
    behind the sink's count); return what is left.
    """
    deadline = time.monotonic() + timeout
    while True:
        left = server.queued()  # type: ignore[attr-defined]
        if left == 0 or time.monotonic() > deadline:
            return left
        await asyncio.sleep(0.1)


async def deferredMemory(server: MailhubDeferred, total: int, step: int,
                         connections: int, payloads: Payloads) -> list[dict[str, Any]]:
    """
    Queue C{total} messages that cannot be delivered (their route is a
    closed port) in steps of C{step}; after each, the server's memory.
    """
    rows = []
    await asyncio.sleep(1)
    m = treeMemoryKB(server.rootPID())
    rows.append({"queued": server.queued(), "rss": m["rss"], "uss": m["uss"], "seconds": 0.0})
    print(f"deferred: {rows[-1]['queued']:>7} queued  RSS {m['rss'] / 1024:7.1f} MB", flush=True)
    recipients = recipientsFor(total, 99)
    t0 = time.perf_counter()
    done = 0
    while done < total:
        n = min(step, total - done)
        stats = LoadStats()
        outcomes = await asyncio.gather(
            *(clientSession(server.port, r, payloads, recipients, stats)
              for r in split(n, connections, done)),
            return_exceptions=True,
        )
        bad = [o for o in outcomes if isinstance(o, BaseException)]
        if bad or stats.rejected:
            raise RuntimeError(f"deferred load: {stats.rejected} rejected, "
                               f"{stats.errors[:2]} {bad[:2]!r}")
        done += n
        await asyncio.sleep(1)  # let the first (failing) attempts run
        m = treeMemoryKB(server.rootPID())
        rows.append({"queued": server.queued(), "rss": m["rss"], "uss": m["uss"],
                     "seconds": time.perf_counter() - t0})
        print(f"deferred: {rows[-1]['queued']:>7} queued  RSS {m['rss'] / 1024:7.1f} MB  "
              f"USS {m['uss'] / 1024:7.1f} MB  ({rows[-1]['seconds']:.0f} s)", flush=True)
        if not server.alive():
            raise RuntimeError(f"mailhub exited\n{server.logTail()}")
    return rows


# ---------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------


def fmtRange(values: list[float], fmt: str = ".0f") -> str:
    if not values:
        return "-"
    return (f"{statistics.median(values):{fmt}} "
            f"({min(values):{fmt}}-{max(values):{fmt}})")


def printReport(args, order, results, skipped, deferred, payloads) -> None:
    bar = "=" * 100
    print()
    print(bar)
    print(f"Relay to a loopback sink: {payloads.size}-octet messages, one recipient each at one "
          f"of {len(DOMAINS)} domains, {args.connections} client connections, "
          f"{args.messages} messages per run, {args.repeats} repeat(s), servers interleaved")
    print(f"python {platform.python_version()}, {os.cpu_count()} CPUs, load average at end "
          f"{open('/proc/loadavg').read().split()[:3]}")
    print("msg/s: messages counted by the sink / time from the first connect to the sink's "
          "last 250 (median, min-max).")
    print("accept msg/s: messages accepted / time the client took to send them.")
    print("CPU ms/msg: the server's whole process tree per relayed message; ratio is "
          "mailhub/Postfix per repeat, median.")
    print("-" * 100)
    print(f"{'server':<9} {'msg/s median (min-max)':>24}  {'accept msg/s':>20}  "
          f"{'CPU ms/msg':>16}  {'mh/pf msg/s':>11}  {'mh/pf CPU':>9}  note")
    for name in order:
        runs = results.get(name, [])
        if not runs:
            continue
        rr, cr = [], []
        if name == "mailhub":
            other = {r["repeat"]: r for r in results.get("postfix", [])}
            for m in runs:
                p = other.get(m["repeat"])
                if p and p["rate"] > 0 and p["cpuMs"] > 0:
                    rr.append(m["rate"] / p["rate"])
                    cr.append(m["cpuMs"] / p["cpuMs"])
        short = sum(r["messages"] - r["relayed"] for r in runs)
        note = "fsync" + (f"; {short} NOT RELAYED" if short else "")
        ratio = f"{statistics.median(rr):.2f}x" if rr else "-"
        cpuRatio = f"{statistics.median(cr):.2f}x" if cr else "-"
        print(f"{name:<9} {fmtRange([r['rate'] for r in runs]):>24}  "
              f"{fmtRange([r['acceptRate'] for r in runs]):>20}  "
              f"{fmtRange([r['cpuMs'] for r in runs], '.2f'):>16}  {ratio:>11}  "
              f"{cpuRatio:>9}  {note}")
    sinkCpu = [r["sinkCpuMs"] for rs in results.values() for r in rs]
    clientCpu = [r["clientCpuMs"] for rs in results.values() for r in rs]
    if sinkCpu:
        print(f"(sink CPU {statistics.median(sinkCpu):.2f} ms/msg, client CPU "
              f"{statistics.median(clientCpu):.2f} ms/msg, medians over all runs)")
    if deferred:
        print("-" * 100)
        print("mailhub queue memory, transport to a closed port (127.0.0.1:1): every message "
              "deferred")
        print(f"{'queued':>8}  {'RSS MB':>8}  {'USS MB':>8}  {'RSS KB/msg since start':>22}  "
              f"{'seconds':>7}")
        first = deferred[0]
        for row in deferred:
            grown = row["queued"] - first["queued"]
            per = (row["rss"] - first["rss"]) / grown if grown else 0.0
            print(f"{row['queued']:>8}  {row['rss'] / 1024:>8.1f}  {row['uss'] / 1024:>8.1f}  "
                  f"{per:>22.2f}  {row['seconds']:>7.0f}")
    for name, why in skipped.items():
        print("-" * 100)
        print(f"SKIPPED {name}: {why}")
    print(bar)


async def benchmark(args, workdir: str, holder: list[Server], skipped: dict[str, str]) -> bool:
    payloads = Payloads(args.size)
    sink = Sink(workdir, args.python)
    holder.append(sink)
    sink.start()
    await sink.waitReady()
    print(f"sink on {HOST}:{sink.port} (control {sink.control})", flush=True)
    route = f"[{HOST}]:{sink.port}"
    servers: list[Server] = []
    for name in args.servers:
        s: Server
        if name == "mailhub":
            s = MailhubRelay(workdir, args.python, route, args.concurrency, args.per_domain)
        else:
            s = PostfixRelay(workdir, sink.port)
        holder.append(s)
        print(f"starting {name} on {HOST}:{s.port} ...", flush=True)
        try:
            s.start()
            await s.waitReady()
            servers.append(s)
        except SkipServer as e:
            skipped[name] = str(e)
            print(f"  skipping {name}: {e}", flush=True)
            s.stop()

    def fail(s: Server, what: str, e: BaseException) -> None:
        why = f"{what} failed: {e!r}"
        if not s.alive():
            why += f"; the server died\n{s.logTail()}"
        skipped[s.name] = why
        print(f"  {s.name}: {why}", flush=True)
        servers.remove(s)

    for s in list(servers):
        if args.warmup:
            try:
                r = await runLoad(s, sink, args.connections, args.warmup, payloads,
                                  args.timeout, seed=7)
                print(f"warm-up {s.name}: {r['relayed']}/{r['messages']} relayed, "
                      f"{r['rate']:.0f} msg/s", flush=True)
                if r["relayed"] < r["messages"]:
                    raise RuntimeError(f"only {r['relayed']} of {r['messages']} relayed; "
                                       f"errors {r['errors']}; see {s.logPath}")
                await waitDrained(s)
            except Exception as e:
                fail(s, "warm-up", e)

    order = [s.name for s in servers]
    results: dict[str, list[dict[str, Any]]] = {}
    for repeat in range(args.repeats):
        k = repeat % len(servers) if servers else 0
        for s in servers[k:] + servers[:k]:
            try:
                r = await runLoad(s, sink, args.connections, args.messages, payloads,
                                  args.timeout, seed=1000 + repeat)
            except Exception as e:
                fail(s, "load", e)
                continue
            r["repeat"] = repeat
            results.setdefault(s.name, []).append(r)
            left = await waitDrained(s)
            extra = ""
            if r["relayed"] < r["messages"] or r["rejected"] or r["errors"] or left:
                extra = (f"  [relayed {r['relayed']}/{r['messages']}, rejected {r['rejected']}, "
                         f"left in queue {left}, {r['errors'][:2]}]")
            print(f"repeat {repeat + 1}/{args.repeats} {s.name:<8} {r['rate']:7.0f} msg/s "
                  f"(accept {r['acceptRate']:.0f})  {r['cpuMs']:6.2f} CPU ms/msg{extra}",
                  flush=True)
            await asyncio.sleep(args.pause)

    deferred: list[dict[str, Any]] = []
    if args.deferred:
        for s in servers:  # free the CPU for the memory check
            s.stop()
        d = MailhubDeferred(workdir, args.python, f"[{HOST}]:1",
                            args.concurrency, args.per_domain)
        holder.append(d)
        try:
            d.start()
            await d.waitReady()
            deferred = await deferredMemory(d, args.deferred, args.step, args.connections,
                                            payloads)
        except Exception as e:
            skipped["deferred memory check"] = repr(e)
        finally:
            d.stop()

    printReport(args, order, results, skipped, deferred, payloads)
    return bool(results)


def parseArgs(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Relay benchmark: mailhub and Postfix to a loopback sink.")
    p.add_argument("--messages", type=int, default=2000, help="messages per run (2000)")
    p.add_argument("--repeats", type=int, default=3, help="repeats, servers interleaved (3)")
    p.add_argument("--connections", type=int, default=8, help="client connections (8)")
    p.add_argument("--servers", default="mailhub,postfix", help="which servers, in order")
    p.add_argument("--size", type=int, default=10240, help="message size in octets (10240)")
    p.add_argument("--warmup", type=int, default=100, help="warm-up messages per server (100)")
    p.add_argument("--concurrency", type=int, default=20, help="mailhub [relay] concurrency (20)")
    p.add_argument("--per-domain", type=int, default=4, help="mailhub [relay] per_domain (4)")
    p.add_argument("--deferred", type=int, default=10000,
                   help="messages for the queue memory check; 0 skips (10000; the issue asks 100000)")
    p.add_argument("--step", type=int, default=1000, help="memory sample every N queued (1000)")
    p.add_argument("--timeout", type=float, default=300.0,
                   help="seconds to wait for the sink after the client has finished (300)")
    p.add_argument("--pause", type=float, default=1.0, help="seconds of rest between runs (1)")
    p.add_argument("--python", default=sys.executable, help="interpreter for mailhub and the sink")
    p.add_argument("--workdir", help="parent for the temporary directory")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = p.parse_args(argv)
    args.servers = [x.strip() for x in args.servers.split(",") if x.strip()]
    for name in args.servers:
        if name not in ("mailhub", "postfix"):
            p.error(f"unknown server {name!r}")
    return args


def main(argv=None) -> int:
    args = parseArgs(argv)
    raiseFileLimit(4096)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    workdir = tempfile.mkdtemp(prefix="mailhub-relay-", dir=args.workdir)
    holder: list[Server] = []
    skipped: dict[str, str] = {}
    ok = False
    try:
        ok = asyncio.run(benchmark(args, workdir, holder, skipped))
    finally:
        for s in reversed(holder):
            try:
                s.stop()
            except Exception as e:
                print(f"stopping {s.name}: {e!r}", file=sys.stderr)
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
