# -*- test-case-name: tests.relay.test_lifecycle -*-
"""
The whole life of a queued message through the real relay pieces: the
L{Relay} hand-over, the on-disk L{Queue}, the L{RelayManager}, the
L{SMTPSender} with its L{MXResolver} over a fake L{IResolver}, all on one
L{MemoryReactorClock} (the clock, and the reactor the sender connects
through), against a remote SMTP server scripted on a L{StringTransport}.

Each unit is tested on its own elsewhere (C{test_queue}, C{test_manager}
with a scripted sender, C{test_sender}, C{test_mx}); here they are wired
as L{mailhub.service} wires them.
"""

from __future__ import annotations

import itertools
from typing import Any

from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.testing import MemoryReactorClock
from twisted.names import dns
from twisted.trial.unittest import SynchronousTestCase

from mailhub.address import parsePath
from mailhub.config import Relay as RelaySettings
from mailhub.envelope import Envelope, Session
from mailhub.relay.enqueue import Relay
from mailhub.relay.manager import RelayManager
from mailhub.relay.mx import MXResolver
from mailhub.relay.policy import RetryPolicy
from mailhub.relay.queue import Queue
from mailhub.relay.sender import SMTPSender
from mailhub.relay.values import PENDING, QueueEntry
from mailhub.service import RELAY_CONNECTION_CACHE_TIME
from tests.relay.test_mx import FakeResolver
from tests.relay.test_sender import _Script as _SenderScript

MINUTE = 60.0
HOUR = 60 * MINUTE
DAY = 24 * HOUR

#: The configuration's defaults: the retry schedule and limits the
#: service runs with unless told otherwise.
SETTINGS = RelaySettings()

QUEUE_ID = "6B0859B70D30AC"

MESSAGE = (
    b"Received: from client.example.test by mx.test\r\n"
    b"From: alice@example.test\r\n"
    b"To: bob@remote.test, carol@remote.test\r\n"
    b"Subject: hello\r\n"
    b"\r\n"
    b"line one\r\n"
    b".hidden dot\r\n"
)

#: The message as it goes over the wire after C{354}: dot-stuffed, then
#: the final dot.
WIRE = MESSAGE.replace(b"\r\n.", b"\r\n..") + b".\r\n"

MAIL = b"MAIL FROM:<alice@example.test> SIZE=%d\r\n" % len(MESSAGE)

#: The remote's address (TEST-NET-1: nothing connects anywhere, the
#: connection is made by hand from the factory the reactor was given).
REMOTE_ADDRESS = "192.0.2.1"


def defaultPolicy() -> RetryPolicy:
    """
    The retry policy built from the configuration's defaults, as
    L{mailhub.service} builds it.
    """
    return RetryPolicy(
        firstRetry=SETTINGS.firstRetry,
        factor=SETTINGS.retryFactor,
        maxRetry=SETTINGS.maxRetry,
        delayWarning=SETTINGS.delayWarning,
        lifetime=SETTINGS.lifetime,
    )


class _Script(_SenderScript):
    """
    The remote side of one connection made through the
    L{MemoryReactorClock} (C{tests.relay.test_sender}'s, which can also
    read a whole streamed message).
    """

    def __init__(self, reactor: MemoryReactorClock, index: int) -> None:
        super().__init__(self, reactor, index)

    def takeMessage(self, reply: bytes) -> bytes:
        """
        Read the whole message the client streams after C{354}, then send
        C{reply}; return what the client wrote.
        """
        while self.transport.producer is not None:
            self.transport.producer.resumeProducing()
        return self.say(reply)


class LifecycleTests(SynchronousTestCase):
    """
    The relay's real pieces wired together, driven by one
    L{MemoryReactorClock}.
    """

    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.reactor.advance(1_800_000_000)
        self.directory = self.mktemp()
        self.resolver = FakeResolver()
        self.resolver.add("remote.test", dns.MX, (10, "mx.remote.test"))
        self.resolver.add("mx.remote.test", dns.A, REMOTE_ADDRESS)
        #: Every report sent: C{(to, message)}.
        self.reports: list[tuple[str, bytes]] = []
        self.reportIds = itertools.count()
        #: Connections the tests have answered so far.
        self.connections = 0
        self.start()

    def start(self, policy: RetryPolicy | None = None, **kwargs: Any) -> None:
        """
        A new queue object over the test's directory, a new sender and a
        new manager, started: what a (re)started server makes.
        """
        self.queue = Queue(self.directory, clock=self.reactor)
        mx = MXResolver(self.resolver, ["mx.test"])
        self.sender = SMTPSender(
            self.reactor,
            self.resolver,
            "mx.test",
            mxResolver=mx,
            connectionCacheTime=RELAY_CONNECTION_CACHE_TIME,
        )
        self.manager = RelayManager(
            clock=self.reactor,
            queue=self.queue,
            sender=self.sender,
            policy=policy if policy is not None else defaultPolicy(),
            runBlocking=maybeDeferred,
            route=lambda domain: None,
            sendBounce=self.sendBounce,
            hostname="mx.test",
            newMessageId=lambda: f"report{next(self.reportIds)}@mx.test",
            concurrency=kwargs.pop("concurrency", SETTINGS.concurrency),
            perDomain=kwargs.pop("perDomain", SETTINGS.perDomain),
            **kwargs,
        )
        self.relay = Relay(self.reactor, self.queue, self.manager, maybeDeferred)
        self.manager.startService()

    def stop(self, *cached: _Script) -> None:
        """
        Stop the manager: the connections the sender keeps for reuse are
        ended with QUIT (answered here), and nothing is left scheduled.

        @param cached: the connections kept idle, which the stop closes.
        """
        d = self.manager.stopService()
        for script in cached:
            self.assertEqual(script.say(b"221 2.0.0 bye\r\n"), b"QUIT\r\n")
            self.assertFalse(script.transport.connected)
        self.successResultOf(d)
        self.queue.close()
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def sendBounce(self, to: str, message: bytes) -> Deferred[None]:
        self.reports.append((to, message))
        return succeed(None)

    def queueMessage(self, recipients: list[str], queueId: str = QUEUE_ID) -> QueueEntry:
        """
        Queue C{MESSAGE} from alice@example.test as an SMTP session does:
        written durably, then handed to the manager.
        """
        envelope = Envelope(
            queueId=queueId,
            sender=parsePath("<alice@example.test>"),
            recipients=(),
            session=Session(peer="192.0.2.7"),
        )
        entry = self.successResultOf(
            Deferred.fromCoroutine(self.relay.enqueue(envelope, MESSAGE, None, len(MESSAGE), recipients))
        )
        self.relay.release(entry)
        return entry

    # The remote

    def newConnections(self) -> int:
        """
        How many connections were made that no test has answered yet.
        """
        return len(self.reactor.tcpClients) - self.connections

    def connection(self) -> _Script:
        """
        Answer the one new connection to the remote with its greeting, and
        its EHLO.
        """
        self.assertEqual(self.newConnections(), 1)
        script = _Script(self.reactor, self.connections)
        self.connections += 1
        self.assertEqual((script.host, script.port), (REMOTE_ADDRESS, 25))
        script.say(b"220 mx.remote.test ESMTP\r\n")
        self.assertEqual(script.say(b"250-mx.remote.test\r\n250 SIZE 10000000\r\n"), b"EHLO mx.test\r\n")
        return script

    def greylist(self) -> None:
        """
        Answer a new connection as a greylisting remote: C{451} to the one
        recipient, then QUIT.
        """
        script = self.connection()
        self.assertEqual(script.say(b"250 2.1.0 ok\r\n"), MAIL)
        self.assertEqual(script.say(b"451 4.7.1 greylisted, come back later\r\n"), b"RCPT TO:<bob@remote.test>\r\n")
        self.assertEqual(script.say(b"221 2.0.0 bye\r\n"), b"QUIT\r\n")
        self.assertFalse(script.transport.connected)

    def advanceToAttempt(self, when: float) -> None:
        """
        Advance the clock to C{when}: no connection is made until a
        second before it, one is made at it.
        """
        self.assertGreater(when - 1, self.reactor.seconds())
        self.reactor.advance(when - 1 - self.reactor.seconds())
        self.assertEqual(self.newConnections(), 0, "connected before the retry was due")
        self.reactor.advance(1)
        self.assertEqual(self.newConnections(), 1, "no connection when the retry was due")

    # The tests

    def test_transientThenDelivered(self) -> None:
        """
        Two recipients at one domain: the remote answers C{451} to MAIL;
        the attempt is recorded on disk, and the retry comes exactly
        C{firstRetry} (5 minutes) later, not a second before; the remote
        takes the message then, and the entry leaves the queue without a
        report.
        """
        entry = self.queueMessage(["bob@remote.test", "carol@remote.test"])
        self.assertEqual(self.queue.ids(), [QUEUE_ID])
        self.assertEqual(self.newConnections(), 0)
        self.reactor.advance(0)
        first = self.connection()
        self.assertEqual(first.say(b"451 4.3.0 try again later\r\n"), MAIL)
        self.assertEqual(first.say(b"221 2.0.0 bye\r\n"), b"QUIT\r\n")
        self.assertFalse(first.transport.connected)

        recorded = self.queue.get(QUEUE_ID)
        assert recorded is not None
        self.assertEqual(recorded.attempts, 1)
        self.assertEqual(recorded.nextAttempt, entry.created + 5 * MINUTE)
        self.assertEqual(
            [(r.state, r.response, r.remoteMTA) for r in recorded.recipients],
            [(PENDING, "451 4.3.0 try again later", "mx.remote.test")] * 2,
        )
        self.assertFalse(self.queue.inFlight(QUEUE_ID))

        self.advanceToAttempt(entry.created + 5 * MINUTE)
        second = self.connection()
        self.assertEqual(second.say(b"250 2.1.0 ok\r\n"), MAIL)
        self.assertEqual(second.say(b"250 2.1.5 ok\r\n"), b"RCPT TO:<bob@remote.test>\r\n")
        self.assertEqual(second.say(b"250 2.1.5 ok\r\n"), b"RCPT TO:<carol@remote.test>\r\n")
        self.assertEqual(second.say(b"354 go ahead\r\n"), b"DATA\r\n")
        self.assertEqual(second.takeMessage(b"250 2.0.0 queued as R1\r\n"), WIRE)
        self.assertEqual(self.queue.ids(), [])
        self.assertEqual(self.reports, [])
        # The connection is kept for the next message to the host, until
        # the manager stops.
        self.assertTrue(second.transport.connected)
        self.stop(second)

    def test_oneBouncedOneSent(self) -> None:
        """
        A C{550 5.1.1} to one recipient and C{250} to the other in the
        same transaction: the message goes to the one, the other is
        bounced at once (one report to the sender, about it alone), and
        the entry leaves the queue.
        """
        self.queueMessage(["bob@remote.test", "carol@remote.test"])
        self.reactor.advance(0)
        script = self.connection()
        self.assertEqual(script.say(b"250 2.1.0 ok\r\n"), MAIL)
        self.assertEqual(
            script.say(b"550 5.1.1 <bob@remote.test>: no such user\r\n"), b"RCPT TO:<bob@remote.test>\r\n"
        )
        self.assertEqual(script.say(b"250 2.1.5 ok\r\n"), b"RCPT TO:<carol@remote.test>\r\n")
        self.assertEqual(script.say(b"354 go ahead\r\n"), b"DATA\r\n")
        self.assertEqual(script.takeMessage(b"250 2.0.0 queued as R1\r\n"), WIRE)

        self.assertEqual(self.queue.ids(), [])
        self.assertEqual(len(self.reports), 1)
        to, report = self.reports[0]
        self.assertEqual(to, "alice@example.test")
        self.assertIn(b"Final-Recipient: rfc822; bob@remote.test\r\n", report)
        self.assertIn(b"Action: failed\r\n", report)
        self.assertIn(b"Status: 5.1.1\r\n", report)
        self.assertIn(b"Remote-MTA: dns; mx.remote.test\r\n", report)
        self.assertIn(b"Diagnostic-Code: smtp; 550 5.1.1 <bob@remote.test>: no such user\r\n", report)
        self.assertNotIn(b"Final-Recipient: rfc822; carol@remote.test", report)
        # The original headers come back with the report.
        self.assertIn(b"Subject: hello\r\n", report)
        self.stop(script)

    def test_delayWarningAndExpiry(self) -> None:
        """
        A remote that keeps answering C{451}: each retry comes exactly when
        the policy's schedule says (5, 10, 20 minutes, then every 30
        minutes), never earlier; the first attempt at least 4 hours after
        the message was queued warns its sender (C{Action: delayed}), once;
        the attempt at the end of the lifetime (5 days) is the last, and
        bounces the message (C{Action: failed}); then the queue is empty
        and stopping leaves nothing scheduled.
        """
        entry = self.queueMessage(["bob@remote.test"])
        created = entry.created
        # The schedule, worked out here from the configuration's numbers.
        end = created + SETTINGS.lifetime
        times = [created]
        delay = SETTINGS.firstRetry
        while times[-1] < end:
            times.append(min(times[-1] + delay, end))
            delay = min(delay * SETTINGS.retryFactor, SETTINGS.maxRetry)
        self.assertEqual(
            [t - created for t in times[:6]],
            [0, 5 * MINUTE, 15 * MINUTE, 35 * MINUTE, 65 * MINUTE, 95 * MINUTE],
        )
        assert SETTINGS.delayWarning is not None
        self.assertEqual(times[-1], end)
        warnAt = next(t for t in times if t - created >= SETTINGS.delayWarning)
        self.assertEqual(warnAt - created, 4 * HOUR + 5 * MINUTE)

        self.reactor.advance(0)
        self.greylist()
        for when in times[1:]:
            self.advanceToAttempt(when)
            self.greylist()
            if when < warnAt:
                self.assertEqual(self.reports, [])
            elif when < end:
                self.assertEqual(len(self.reports), 1)
                self.assertEqual(self.queue.ids(), [QUEUE_ID])
        # Every attempt was made, at its time, and no other.
        self.assertEqual(self.connections, len(times))

        self.assertEqual(self.queue.ids(), [])
        self.assertEqual([to for to, _ in self.reports], ["alice@example.test"] * 2)
        warning, bounce = (report for _, report in self.reports)
        self.assertIn(b"Action: delayed\r\n", warning)
        self.assertIn(b"Status: 4.7.1\r\n", warning)
        self.assertIn(b"Will-Retry-Until: ", warning)
        self.assertIn(b"Action: failed\r\n", bounce)
        # The status of the last reply, as Postfix reports an expiry.
        self.assertIn(b"Status: 4.7.1\r\n", bounce)
        self.assertIn(b"Final-Recipient: rfc822; bob@remote.test\r\n", bounce)
        self.assertIn(b"giving up after %d attempts" % len(times), bounce)
        self.assertEqual(self.newConnections(), 0)
        self.stop()

    def test_shortLifetime(self) -> None:
        """
        A policy with a shorter warning and lifetime than the defaults
        (as a configuration may give): the warning and the bounce follow
        it, and the last attempt is cut short to the lifetime's end.
        """
        self.stop()
        policy = RetryPolicy(firstRetry=10 * MINUTE, factor=1.0, maxRetry=10 * MINUTE,
                             delayWarning=25 * MINUTE, lifetime=45 * MINUTE)
        self.start(policy)
        entry = self.queueMessage(["bob@remote.test"])
        self.reactor.advance(0)
        self.greylist()
        for minutes in [10, 20, 30, 40, 45]:
            self.advanceToAttempt(entry.created + minutes * MINUTE)
            self.greylist()
            expected = {10: 0, 20: 0, 30: 1, 40: 1, 45: 2}[minutes]
            self.assertEqual(len(self.reports), expected, f"after the attempt at {minutes} minutes")
        self.assertIn(b"Action: delayed\r\n", self.reports[0][1])
        self.assertIn(b"Action: failed\r\n", self.reports[1][1])
        self.assertEqual(self.queue.ids(), [])
        self.stop()

    def test_restart(self) -> None:
        """
        A transient failure, then the server stops; a new manager (with a
        new queue object and sender) over the same directory retries at
        the time recorded on disk, not before, and delivers.
        """
        entry = self.queueMessage(["bob@remote.test"])
        self.reactor.advance(0)
        self.greylist()
        self.reactor.advance(2 * MINUTE)
        self.stop()

        # Down for a minute; then a new server.
        self.reactor.advance(MINUTE)
        self.start()
        self.reactor.advance(0)
        self.assertEqual(self.newConnections(), 0)
        self.advanceToAttempt(entry.created + 5 * MINUTE)
        script = self.connection()
        self.assertEqual(script.say(b"250 2.1.0 ok\r\n"), MAIL)
        self.assertEqual(script.say(b"250 2.1.5 ok\r\n"), b"RCPT TO:<bob@remote.test>\r\n")
        self.assertEqual(script.say(b"354 go ahead\r\n"), b"DATA\r\n")
        self.assertEqual(script.takeMessage(b"250 2.0.0 queued as R1\r\n"), WIRE)
        self.assertEqual(self.queue.ids(), [])
        self.assertEqual(self.reports, [])
        self.stop(script)

    def test_perDomainLimit(self) -> None:
        """
        With one transaction at a time per domain, a second message to
        the same domain waits for the first's transaction, then goes over
        the same connection (kept for reuse, RSET first).
        """
        self.stop()
        self.start(perDomain=1)
        self.queueMessage(["bob@remote.test"], "QUEUE1")
        self.queueMessage(["carol@remote.test"], "QUEUE2")
        self.reactor.advance(0)
        script = self.connection()
        self.assertEqual(script.say(b"250 2.1.0 ok\r\n"), MAIL)
        self.assertEqual(script.say(b"250 2.1.5 ok\r\n"), b"RCPT TO:<bob@remote.test>\r\n")
        self.assertEqual(script.say(b"354 go ahead\r\n"), b"DATA\r\n")
        self.assertEqual(self.newConnections(), 0)
        self.assertEqual(script.takeMessage(b"250 2.0.0 queued as R1\r\n"), WIRE)
        self.assertEqual(self.queue.ids(), ["QUEUE2"])
        # The second transaction, on the same connection.
        self.assertEqual(script.say(b"250 2.0.0 reset\r\n"), b"RSET\r\n")
        self.assertEqual(script.say(b"250 2.1.0 ok\r\n"), MAIL)
        self.assertEqual(script.say(b"250 2.1.5 ok\r\n"), b"RCPT TO:<carol@remote.test>\r\n")
        self.assertEqual(script.say(b"354 go ahead\r\n"), b"DATA\r\n")
        self.assertEqual(script.takeMessage(b"250 2.0.0 queued as R2\r\n"), WIRE)
        self.assertEqual(self.newConnections(), 0)
        self.assertEqual(self.queue.ids(), [])
        # Unused for the cache's time: closed with QUIT.
        self.reactor.advance(RELAY_CONNECTION_CACHE_TIME)
        self.assertEqual(script.say(b"221 2.0.0 bye\r\n"), b"QUIT\r\n")
        self.assertFalse(script.transport.connected)
        self.assertEqual(self.reactor.getDelayedCalls(), [])
        self.stop()
