"""
A crash test: C{twistd mailhub} killed with SIGKILL at random moments while
it accepts mail and relays it, then started again on the same data
directory.

No accepted message may be lost: every message that got C{250} from the
server must, in the end, have reached the remote (a sink SMTP server run by
this test, up across every restart) or still be in the queue.  A message
may reach the remote twice, but only where the kill fell between the
remote's C{250} and the server's record of it (the window RFC 1047
describes); duplicates are counted and reported, not failed.

The seed of the kill times is C{MAILHUB_CRASH_SEED} from the environment
(default C{1047}); each round uses its own derived seed.
"""

from __future__ import annotations

import email.parser
import os
import random
import signal
import smtplib
import socket
import sys
import threading
import time
from collections import Counter
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.error import ConnectError
from twisted.internet.protocol import ProcessProtocol, Protocol, ServerFactory
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.logger import Logger
from twisted.mail import smtp
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from zope.interface import implementer

from tests.functional.support import PROJECT_ROOT, tomlValue

#: C{twistd}, run by this interpreter (as in L{tests.functional.test_twistd}).
TWISTD = [
    "-c",
    "import sys; from twisted.scripts.twistd import run; sys.argv[0] = 'twistd'; sys.exit(run())",
]

HOSTNAME = "crash.test"
REMOTE = "remote.test"
SENDER = "crash@client.test"
RECIPIENT = f"someone@{REMOTE}"

#: Rounds that end in SIGKILL (one more, unkilled, follows).
ROUNDS = 4
#: The kill falls this long (seconds, uniform) after sending starts.
KILL_WINDOW = 0.3
#: At most this many messages are sent in one round.
MAX_PER_ROUND = 400
#: Polling: the interval, and the number of polls before giving up.
POLL = 0.05
START_POLLS = 200  # 10 s for twistd to listen
DRAIN_POLLS = 300  # 15 s for the queue to empty in the last round
EXIT_POLLS = 200  # 10 s for a process to end after a signal

#: A guard on the blocking client's sockets, never an assertion.
SOCKET_GUARD = 10

log = Logger()


def freePort() -> int:
    """
    A port on 127.0.0.1 that was free a moment ago (the child must know
    its port before it starts, and keep it across restarts).
    """
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
    finally:
        s.close()


def messageIdOf(data: bytes) -> str | None:
    """
    The Message-ID header of a message (header block only), or C{None}.
    """
    headers = email.parser.BytesHeaderParser().parsebytes(data)
    value = headers.get("Message-ID")
    return str(value).strip() if value is not None else None


# The sink: the remote MTA, up across all restarts.


@implementer(smtp.IMessage)
class SinkMessage:
    def __init__(self, sink: "Sink") -> None:
        self.sink = sink
        self.lines: list[bytes] = []

    def lineReceived(self, line: bytes) -> None:
        self.lines.append(line)

    def eomReceived(self) -> Deferred[bytes]:
        # Recorded before the 250 goes out: a kill of the server after this
        # and before its record of the 250 makes a duplicate.
        self.sink.received(b"\r\n".join(self.lines) + b"\r\n")
        d: Deferred[bytes] = Deferred()
        d.callback(b"sink")
        return d

    def connectionLost(self) -> None:
        self.lines = []


@implementer(smtp.IMessageDelivery)
class Sink:
    """
    Accepts every message and counts each Message-ID it sees.
    """

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        #: The server run (round) in which each Message-ID was received,
        #: once per copy.
        self.rounds: dict[str, list[int]] = {}
        #: The run now delivering to the sink (the test sets it).
        self.round = -1
        self.withoutId = 0

    def received(self, data: bytes) -> None:
        messageId = messageIdOf(data)
        if messageId is None:
            self.withoutId += 1
        else:
            self.counts[messageId] += 1
            self.rounds.setdefault(messageId, []).append(self.round)

    def receivedHeader(self, helo: Any, origin: Any, recipients: Any) -> bytes:
        return b"Received: by sink.test"

    def validateFrom(self, helo: Any, origin: Any) -> Any:
        return origin

    def validateTo(self, user: Any) -> Any:
        return lambda: SinkMessage(self)


class SinkFactory(ServerFactory):
    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.connections: set[Any] = set()
        self._idle: list[Deferred[None]] = []

    def buildProtocol(self, addr: Any) -> Any:
        factory = self

        class SinkESMTP(smtp.ESMTP):
            timeout = None  # no timer outlives the test

            def connectionMade(self) -> None:
                factory.connections.add(self)
                super().connectionMade()

            def connectionLost(self, reason: Failure) -> None:
                super().connectionLost(reason)
                factory.connections.discard(self)
                if not factory.connections:
                    waiting, factory._idle = factory._idle, []
                    for d in waiting:
                        d.callback(None)

        p = SinkESMTP()
        p.factory = self
        p.delivery = self.sink
        p.host = b"sink.test"
        return p

    def closeAll(self) -> Deferred[None]:
        """
        Close every open connection; fires when all are gone.
        """
        d: Deferred[None] = Deferred()
        if not self.connections:
            d.callback(None)
            return d
        self._idle.append(d)
        for p in list(self.connections):
            p.transport.abortConnection()
        return d


# The server process.


class ServerProcess(ProcessProtocol):
    """
    One C{twistd -n mailhub} child; its output goes to C{logPath}.
    """

    def __init__(self, logPath: str) -> None:
        self.log = open(logPath, "wb")
        self.ended: Deferred[Any] = Deferred()
        self.status: Any = None

    def outReceived(self, data: bytes) -> None:
        self.log.write(data)

    errReceived = outReceived

    def processEnded(self, reason: Failure) -> None:
        self.status = reason.value
        self.log.close()
        self.ended.callback(reason.value)

    @property
    def running(self) -> bool:
        return not self.ended.called

    def tail(self) -> str:
        with open(self.log.name, "rb") as f:
            return f.read()[-3000:].decode("utf-8", "replace")


class Sender:
    """
    Sends messages to C{RECIPIENT} through the server, one after the other
    on one connection, until told to stop or the server goes away.

    @ivar accepted: Message-IDs that got C{250} after DATA.
    @ivar unknown: the Message-ID in flight when the connection broke (the
        server may or may not have queued it).
    """

    def __init__(self, port: int, round: int) -> None:
        self.port = port
        self.round = round
        self.accepted: list[str] = []
        self.refused: list[str] = []
        self.unknown: list[str] = []
        self.stop = threading.Event()
        self.error: str = ""

    def message(self, messageId: str) -> bytes:
        return (
            f"From: <{SENDER}>\r\n"
            f"To: <{RECIPIENT}>\r\n"
            f"Subject: crash round {self.round}\r\n"
            f"Message-ID: {messageId}\r\n"
            "\r\n"
            f"Body of {messageId}.\r\n"
        ).encode("ascii")

    def run(self) -> None:
        try:
            client = smtplib.SMTP(
                "127.0.0.1", self.port, local_hostname="client.test", timeout=SOCKET_GUARD
            )
        except OSError as e:
            self.error = f"connect: {e!r}"
            return
        try:
            client.ehlo()
            for n in range(MAX_PER_ROUND):
                if self.stop.is_set():
                    break
                messageId = f"<r{self.round}.n{n}.{os.getpid()}@client.test>"
                inFlight = False
                try:
                    client.mail(SENDER)
                    code, _ = client.rcpt(RECIPIENT)
                    if code != 250:
                        self.refused.append(messageId)
                        client.rset()
                        continue
                    inFlight = True
                    code, _ = client.data(self.message(messageId))
                    inFlight = False
                except (OSError, smtplib.SMTPException) as e:
                    if inFlight:
                        self.unknown.append(messageId)
                    self.error = repr(e)
                    return
                (self.accepted if code == 250 else self.refused).append(messageId)
        except (OSError, smtplib.SMTPException) as e:
            self.error = repr(e)
        finally:
            client.close()


class CrashTests(TestCase):
    """
    SIGKILL the server at random points; nothing accepted is lost.
    """

    timeout = 60

    def setUp(self) -> None:
        self.directory = os.path.abspath(self.mktemp())
        os.makedirs(self.directory)
        self.data = os.path.join(self.directory, "data")
        self.sink = Sink()
        self.sinkFactory = SinkFactory(self.sink)
        self.sinkPort = reactor.listenTCP(0, self.sinkFactory, interface="127.0.0.1")
        self.addCleanup(self.sinkPort.stopListening)
        self.addCleanup(self.sinkFactory.closeAll)
        self.port = freePort()
        self.config = self.writeConfig()
        self.processes: list[ServerProcess] = []
        self.addCleanup(self.killLeftovers)

    def writeConfig(self) -> str:
        path = os.path.join(self.directory, "crash.toml")
        sinkPort = self.sinkPort.getHost().port
        lines = [
            f"hostname = {tomlValue(HOSTNAME)}",
            f"domains = {tomlValue([HOSTNAME])}",
            f"data = {tomlValue(self.data)}",
            f"trusted_networks = {tomlValue(['127.0.0.0/8'])}",
            "[listeners]",
            f"smtp = {tomlValue([f'tcp:{self.port}:interface=127.0.0.1'])}",
            "submission = []",
            "submissions = []",
            "pop3 = []",
            "pop3s = []",
            "imap = []",
            "imaps = []",
            "[relay]",
            'dns_servers = ["127.0.0.1:9"]',
            "first_retry = 0.5",
            "max_retry = 1",
            "[relay.transport]",
            f'"{REMOTE}" = "[127.0.0.1]:{sinkPort}"',
        ]
        with open(path, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
        return path

    async def killLeftovers(self) -> None:
        """
        Whatever the test's outcome, no child outlives it.
        """
        for process in self.processes:
            if process.running:
                process.transport.signalProcess("KILL")
                await process.ended

    # The child

    async def start(self, number: int) -> ServerProcess:
        """
        Start C{twistd -n mailhub} and wait until its SMTP port accepts a
        connection (the restart is clean) or fail.
        """
        path = os.environ.get("PYTHONPATH")
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([PROJECT_ROOT] + ([path] if path else []))
        process = ServerProcess(os.path.join(self.directory, f"twistd-{number}.log"))
        reactor.spawnProcess(
            process,
            sys.executable,
            [sys.executable, *TWISTD, "-n", "--pidfile=", "mailhub", "--config", self.config],
            env=env,
            path=self.directory,
        )
        self.processes.append(process)
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.port, timeout=2)
        for _ in range(START_POLLS):
            if not process.running:
                self.fail(f"start {number}: twistd ended ({process.status}):\n{process.tail()}")
            try:
                probe = await connectProtocol(endpoint, Protocol())
            except ConnectError:
                await deferLater(reactor, POLL, lambda: None)
                continue
            probe.transport.loseConnection()
            return process
        self.fail(f"start {number}: port {self.port} never accepted:\n{process.tail()}")

    async def ended(self, process: ServerProcess, what: str) -> None:
        for _ in range(EXIT_POLLS):
            if not process.running:
                return
            await deferLater(reactor, POLL, lambda: None)
        process.transport.signalProcess("KILL")
        await process.ended
        self.fail(f"{what}: the process did not end:\n{process.tail()}")

    # Inspection

    def queued(self) -> dict[str, str]:
        """
        The Message-ID of each entry left in C{DATA/queue} (an entry is
        its C{.env}; C{.msg} files without one are leftovers), to the
        states of its recipients.
        """
        from mailhub.relay.queue import Queue

        queue = Queue(os.path.join(self.data, "queue"), clock=reactor)
        result = {}
        for queueId in queue.ids():
            entry = queue.get(queueId)
            if entry is None:
                continue
            with open(queue.messagePath(queueId), "rb") as f:
                messageId = messageIdOf(f.read())
            if messageId is not None:
                result[messageId] = ",".join(r.state for r in entry.recipients)
        return result

    def pendingEntries(self) -> int:
        queue = os.path.join(self.data, "queue")
        if not os.path.isdir(queue):
            return 0
        return sum(1 for name in os.listdir(queue) if name.endswith(".env"))

    # The test

    async def test_killedServerLosesNothing(self) -> None:
        """
        Over L{ROUNDS} rounds of accept-relay-SIGKILL and one final clean
        run, every accepted message reaches the sink or is still queued.
        """
        started = time.monotonic()
        seed = int(os.environ.get("MAILHUB_CRASH_SEED", "1047"))
        accepted: list[str] = []
        unknown: list[str] = []
        perRound = []
        for number in range(ROUNDS):
            chooser = random.Random(f"{seed}-{number}")
            delay = chooser.uniform(0, KILL_WINDOW)
            self.sink.round = number
            process = await self.start(number)
            sender = Sender(self.port, number)
            sending = deferToThread(sender.run)
            await deferLater(reactor, delay, lambda: None)
            process.transport.signalProcess("KILL")
            sender.stop.set()
            await sending
            await self.ended(process, f"round {number}")
            self.assertEqual(
                getattr(process.status, "signal", None),
                signal.SIGKILL,
                f"round {number}: ended by {process.status!r}, not by SIGKILL",
            )
            accepted += sender.accepted
            unknown += sender.unknown
            perRound.append(
                f"round {number}: kill after {delay * 1000:.0f} ms; "
                f"{len(sender.accepted)} accepted, {len(sender.unknown)} in flight, "
                f"{len(sender.refused)} refused; sink has {sum(self.sink.counts.values())}; "
                f"{self.pendingEntries()} queued; client: {sender.error or 'stopped'}"
            )

        # The last run: not killed, the queue drains.
        self.sink.round = ROUNDS
        process = await self.start(ROUNDS)
        for _ in range(DRAIN_POLLS):
            if self.pendingEntries() == 0:
                break
            await deferLater(reactor, POLL, lambda: None)
        process.transport.signalProcess("TERM")
        await self.ended(process, "final run")
        # twistd ends by re-raising the SIGTERM it handled (so its status
        # says why it stopped), after a complete shutdown.
        self.assertIn(
            (getattr(process.status, "exitCode", None), getattr(process.status, "signal", None)),
            [(0, None), (None, signal.SIGTERM)],
            f"final run: ended by {process.status!r}:\n{process.tail()}",
        )
        self.assertIn("Server Shut Down.", process.tail(), "final run: no clean shutdown")
        await self.sinkFactory.closeAll()

        queued = self.queued()
        counts = self.sink.counts
        once = [m for m in accepted if counts[m] == 1]
        duplicated = [m for m in accepted if counts[m] > 1]
        stillQueued = [m for m in accepted if counts[m] == 0 and m in queued]
        lost = [m for m in accepted if counts[m] == 0 and m not in queued]
        unknownDelivered = [m for m in unknown if counts[m] > 0]
        unknownQueued = [m for m in unknown if counts[m] == 0 and m in queued]
        # A copy too many can only come from a kill: never two copies from
        # one run of the server, and every earlier copy from a killed run.
        twiceInOneRun = sorted(
            m for m, rounds in self.sink.rounds.items() if len(set(rounds)) != len(rounds)
        )
        byKill = Counter(r for m in duplicated for r in self.sink.rounds[m][:-1])
        accepted_ = set(accepted) | set(unknown)
        strangers = sorted(m for m in counts if m not in accepted_)
        summary = "\n".join(
            [
                f"crash test, seed {seed}, {time.monotonic() - started:.1f} s",
                *perRound,
                f"accepted (250) {len(accepted)}: delivered once {len(once)}, "
                f"duplicated {len(duplicated)} "
                f"({sum(counts[m] - 1 for m in duplicated)} extra copies), "
                f"still queued {len(stillQueued)}, lost {len(lost)}",
                f"in flight at a kill {len(unknown)}: delivered {len(unknownDelivered)}, "
                f"queued {len(unknownQueued)}, "
                f"neither {len(unknown) - len(unknownDelivered) - len(unknownQueued)}",
                "copies repeated after the kill of round: "
                + (", ".join(f"{r}: {n}" for r, n in sorted(byKill.items())) or "none"),
                f"queue left: {len(queued)} entries; sink messages without Message-ID: "
                f"{self.sink.withoutId}; not sent by the test: {len(strangers)}",
            ]
        )
        log.info("{summary}", summary=summary)
        with open(os.path.join(self.directory, "summary.txt"), "w") as f:
            f.write(summary + "\n")
        print("\n" + summary)

        self.assertTrue(accepted, "no message was accepted in any round")
        self.assertEqual(lost, [], summary)
        self.assertEqual(strangers, [], summary)
        self.assertEqual(twiceInOneRun, [], summary)
        self.assertTrue(all(r < ROUNDS for r in byKill), summary)
        self.assertEqual(self.sink.withoutId, 0, summary)
