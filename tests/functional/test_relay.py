"""
The relay end to end: mail submitted to the real service (started through
the twistd plugin) for C{remote.test} goes out of the durable queue to a
fake remote MX (L{tests.functional.remote.FakeMX}, Twisted's ESMTP server
on 127.0.0.1) named by C{[relay.transport]}.

Waits are for events: the fake MX fires Deferreds when a message arrives
or a connection ends, and L{AttemptWatcher} fires when the relay manager
has finished an attempt (its outcome recorded on disk, its in-flight
marker gone).  Retries are never waited for: the default C{first_retry}
(five minutes) keeps deferred entries still, and the tests call
C{manager.flush()}.
"""

from __future__ import annotations

import email
import email.policy
import json
import os
import smtplib
from typing import Any, Mapping, Sequence

from twisted.internet.defer import Deferred, succeed
from twisted.internet.ssl import Certificate, trustRootFromCertificates
from twisted.names import dns
from twisted.internet.threads import deferToThread

from mailhub.relay.mx import MXResolver
from mailhub.relay.sender import parseRoute
from tests.functional.remote import MX_NAME, FakeMX, testCertificates
from tests.functional.support import (
    CLIENT_NAME,
    DOMAIN,
    HOSTNAME,
    OTHER_DOMAIN,
    PASSWORD,
    SENDER,
    SOCKET_GUARD,
    RunningServer,
    ServerTestCase,
    message,
    startService,
    tomlValue,
    unverified,
)

ALICE = f"alice@{DOMAIN}"
REMOTE = "remote.test"
BOB_REMOTE = f"bob@{REMOTE}"
NOBODY_REMOTE = f"nobody@{REMOTE}"

#: A body that dot-stuffing must carry through both hops unchanged.
BODY = b"Hello.\r\n.a line that starts with a dot\r\n..and two\r\n.\r\nlast line\r\n"


def writeRelayConfig(
    path: str,
    data: str,
    *,
    transport: Mapping[str, str],
    relay: Mapping[str, object] | None = None,
    trustedNetworks: Sequence[str] | None = None,
) -> str:
    """
    Like L{tests.functional.support.writeConfig}, with the C{[relay]} table
    and the transport routes of the test, and C{trusted_networks}.
    """
    lines = [
        f"hostname = {tomlValue(HOSTNAME)}",
        f"domains = {tomlValue([DOMAIN, OTHER_DOMAIN])}",
        f"data = {tomlValue(data)}",
    ]
    if trustedNetworks is not None:
        lines.append(f"trusted_networks = {tomlValue(list(trustedNetworks))}")
    lines += ["[listeners]", f"smtp = {tomlValue(['tcp:0:interface=127.0.0.1'])}"]
    for name in ("submission", "submissions", "pop3", "pop3s", "imap", "imaps"):
        lines.append(f"{name} = {tomlValue(['tcp:0:interface=127.0.0.1'])}")
    # DNS to a closed port on loopback: nothing leaves this machine.
    lines += ["[relay]", 'dns_servers = ["127.0.0.1:9"]']
    lines += [f"{key} = {tomlValue(value)}" for key, value in (relay or {}).items()]
    lines.append("[relay.transport]")
    routes = {"elsewhere.example": "[127.0.0.1]:1", **transport}
    lines += [f"{json.dumps(domain)} = {tomlValue(route)}" for domain, route in routes.items()]
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return path



class AttemptWatcher:
    """
    Says when the relay manager has finished attempts: wraps the manager
    instance's C{_finished} (called once an attempt's outcome is on disk
    and its in-flight marker is cleared), the class is untouched.
    """

    def __init__(self, manager: Any) -> None:
        self.finished: list[str] = []
        self._waiting: list[tuple[int, Deferred[None]]] = []
        original = manager._finished

        def finished(queueId: str) -> None:
            original(queueId)
            self.finished.append(queueId)
            ready = [(n, d) for n, d in self._waiting if n <= len(self.finished)]
            for item in ready:
                self._waiting.remove(item)
            for _, d in ready:
                d.callback(None)

        manager._finished = finished

    def wait(self, count: int) -> Deferred[None]:
        """
        Fires once C{count} attempts in all have finished.
        """
        if len(self.finished) >= count:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._waiting.append((count, d))
        return d


class RelayTestCase(ServerTestCase):
    """
    A fake remote MX for C{remote.test} and a server that routes that
    domain to it.
    """

    timeout = 30

    def startRemote(self, tls: bool = False, credentials: dict[str, bytes] | None = None) -> FakeMX:
        remote = FakeMX(tls=tls, credentials=credentials)
        remote.start()
        self.addCleanup(remote.stop)
        return remote

    def startRelayServer(
        self,
        remote: FakeMX,
        *,
        relay: Mapping[str, object] | None = None,
        trustedNetworks: Sequence[str] | None = None,
        data: str | None = None,
        route: str | None = None,
    ) -> RunningServer:
        """
        Start a server routing C{remote.test} to C{remote} (through
        C{route} when given), with the mailboxes alice@ and bob@ (made only
        in a new data directory), and an L{AttemptWatcher} as
        C{self.attempts}.
        """
        new = data is None
        if data is None:
            data = os.path.abspath(self.mktemp())
        path = writeRelayConfig(
            os.path.abspath(self.mktemp()) + ".toml",
            data,
            transport={REMOTE: route or f"[127.0.0.1]:{remote.port}"},
            relay=relay,
            trustedNetworks=trustedNetworks,
        )
        server = RunningServer(startService(path), data)
        self.attempts = AttemptWatcher(server.service.manager)
        self.addCleanup(lambda: Deferred.fromCoroutine(server.stop()))
        if new:
            for name in ("alice", "bob"):
                server.createMailbox(name)
        self.server = server
        return server

    # Clients

    def submit(self, recipients: Sequence[str], text: bytes) -> Deferred[Any]:
        """
        Submit C{text} as alice (STARTTLS, AUTH PLAIN) on the submission
        port; fires with C{sendmail}'s refused recipients.
        """
        port = self.server.ports["submission"]

        def run() -> Any:
            client = smtplib.SMTP("127.0.0.1", port, local_hostname=CLIENT_NAME, timeout=SOCKET_GUARD)
            try:
                client.ehlo()
                client.starttls(context=unverified())
                client.ehlo()
                client.login(ALICE, PASSWORD)
                return client.sendmail(ALICE, list(recipients), text)
            finally:
                client.close()

        return deferToThread(run)

    # The queue

    @property
    def queueDirectory(self) -> str:
        return os.path.join(self.server.data, "queue")

    def queueFiles(self) -> list[str]:
        """
        The entries' files in C{DATA/queue/} (C{.msg}, C{.env}, C{.lock}).
        """
        if not os.path.isdir(self.queueDirectory):
            return []
        return sorted(
            n for n in os.listdir(self.queueDirectory) if n.rsplit(".", 1)[-1] in ("msg", "env", "lock")
        )

    def envelopes(self) -> list[dict[str, Any]]:
        """
        Every C{.env} record in the queue, its JSON parsed (the checksum
        line after it left off).
        """
        found = []
        for name in self.queueFiles():
            if name.endswith(".env"):
                with open(os.path.join(self.queueDirectory, name), "rb") as f:
                    found.append(json.loads(f.read().partition(b"\n")[0]))
        return found

    def assertQueueEmpty(self) -> None:
        self.assertEqual(self.queueFiles(), [])

    def assertDeferred(self, recipient: str, attempts: int = 1) -> dict[str, Any]:
        """
        The queue holds one entry, still pending for C{recipient}, with
        C{attempts} attempts; return its record.
        """
        [envelope] = self.envelopes()
        states = {r["address"]: r["state"] for r in envelope["recipients"]}
        self.assertEqual(states.get(recipient), "pending", envelope)
        self.assertEqual(envelope["attempts"], attempts, envelope)
        self.assertTrue(envelope["lastError"], envelope)
        queueId = envelope["id"]
        self.assertTrue(os.path.exists(os.path.join(self.queueDirectory, f"{queueId}.msg")))
        self.assertFalse(os.path.exists(os.path.join(self.queueDirectory, f"{queueId}.lock")))
        return envelope


class DeliveryTests(RelayTestCase):
    """
    Mail that reaches the remote MX.
    """

    async def test_submittedMessageRelayed(self) -> None:
        """
        A message alice submits to bob@remote.test reaches the remote MX
        as it was submitted, after our C{Received:} header, without a
        C{Return-Path:}; the queue is empty afterwards.
        """
        remote = self.startRemote()
        self.startRelayServer(remote)
        original = message("relayed", BODY, to=BOB_REMOTE)

        self.assertEqual(await self.submit([BOB_REMOTE], original), {})
        await remote.waitMessages(1)
        await self.attempts.wait(1)

        [received] = remote.messages
        self.assertEqual((received.sender, received.recipients), (ALICE, (BOB_REMOTE,)))
        self.assertFalse(received.tls)
        head, sep, rest = received.data.partition(b"\r\nFrom: ")
        self.assertTrue(sep, received.data)
        # Exactly our trace header, then the message byte for byte.
        self.assertEqual(b"From: " + rest, original)
        self.assertTrue(head.startswith(b"Received: from " + CLIENT_NAME.encode()), head)
        self.assertIn(b"with ESMTPSA", head)
        self.assertIn(HOSTNAME.encode(), head)
        self.assertNotIn(b"return-path", received.data.lower())
        self.assertQueueEmpty()

    async def test_opportunisticTLS(self) -> None:
        """
        A remote MX that offers STARTTLS (any certificate: this one's CA is
        unknown) gets the message under TLS.
        """
        remote = self.startRemote(tls=True)
        self.startRelayServer(remote)

        await self.submit([BOB_REMOTE], message("secret", to=BOB_REMOTE))
        await remote.waitMessages(1)
        await self.attempts.wait(1)

        [received] = remote.messages
        self.assertTrue(received.tls)
        self.assertEqual(received.recipients, (BOB_REMOTE,))
        self.assertQueueEmpty()

    async def test_verifyPolicyDefers(self) -> None:
        """
        With C{verify_domains = ["remote.test"]} and a route to
        C{[127.0.0.1]}, the certificate (for mx.remote.test, from an unknown
        CA) does not verify: nothing is sent, the entry stays queued with a
        TLS error.
        """
        remote = self.startRemote(tls=True)
        self.startRelayServer(remote, relay={"verify_domains": [REMOTE]})

        await self.submit([BOB_REMOTE], message("verified only", to=BOB_REMOTE))
        await self.attempts.wait(1)
        await remote.waitClosed(remote.connections)

        self.assertEqual(remote.messages, [])
        self.assertEqual(remote.rcpts, [])
        envelope = self.assertDeferred(BOB_REMOTE)
        self.assertIn("TLS", envelope["lastError"])

    async def test_temporaryFailureThenFlush(self) -> None:
        """
        A 451 to RCPT defers the recipient (one attempt recorded on disk);
        a flush tries again and the remote takes it.
        """
        remote = self.startRemote()
        remote.temporaryFailures = 1
        self.startRelayServer(remote)

        await self.submit([BOB_REMOTE], message("again", to=BOB_REMOTE))
        await self.attempts.wait(1)
        envelope = self.assertDeferred(BOB_REMOTE)
        self.assertIn("451", envelope["lastError"])
        self.assertEqual(remote.messages, [])

        await self.server.service.manager.flush()
        await remote.waitMessages(1)
        await self.attempts.wait(2)

        self.assertEqual([m.recipients for m in remote.messages], [(BOB_REMOTE,)])
        self.assertEqual(remote.rcpts, [BOB_REMOTE, BOB_REMOTE])
        self.assertQueueEmpty()

    async def test_permanentFailureBounced(self) -> None:
        """
        One recipient refused with 550, another accepted, in one message:
        the accepted one gets it, the refused one is bounced at once with a
        delivery status report in alice's (the sender's) mailbox.
        """
        remote = self.startRemote()
        remote.rcptCodes[NOBODY_REMOTE] = 550
        self.startRelayServer(remote)

        await self.submit([NOBODY_REMOTE, BOB_REMOTE], message("half", to=BOB_REMOTE))
        await remote.waitMessages(1)
        await self.attempts.wait(1)

        [received] = remote.messages
        self.assertEqual(received.recipients, (BOB_REMOTE,))
        self.assertQueueEmpty()

        [report] = self.server.messages("alice")
        parsed = email.message_from_bytes(report, policy=email.policy.compat32)
        self.assertEqual(parsed.get_content_type(), "multipart/report")
        self.assertEqual(parsed.get_param("report-type"), "delivery-status")
        self.assertEqual(parsed["To"], f"<{ALICE}>")
        self.assertTrue(report.startswith(b"Return-Path: <>\r\n"), report[:80])
        [status] = [p for p in parsed.walk() if p.get_content_type() == "message/delivery-status"]
        text = report.decode("ascii")
        self.assertIn(f"Final-Recipient: rfc822; {NOBODY_REMOTE}", text)
        self.assertIn("Action: failed", text)
        self.assertIn("Status: 5.1.1", text)
        self.assertNotIn(f"Final-Recipient: rfc822; {BOB_REMOTE}", text)
        self.assertIsNotNone(status)

    async def test_onlyPendingRecipientRetried(self) -> None:
        """
        Of two recipients, one taken and one deferred with 451: the flush
        tries only the deferred one, so the other gets no second copy.
        """
        remote = self.startRemote()
        remote.rcptCodes[NOBODY_REMOTE] = 451
        self.startRelayServer(remote)

        await self.submit([BOB_REMOTE, NOBODY_REMOTE], message("split", to=BOB_REMOTE))
        await remote.waitMessages(1)
        await self.attempts.wait(1)
        envelope = self.assertDeferred(NOBODY_REMOTE)
        states = {r["address"]: r["state"] for r in envelope["recipients"]}
        self.assertEqual(states[BOB_REMOTE], "sent")

        del remote.rcptCodes[NOBODY_REMOTE]
        await self.server.service.manager.flush()
        await remote.waitMessages(2)
        await self.attempts.wait(2)

        self.assertEqual(
            [m.recipients for m in remote.messages], [(BOB_REMOTE,), (NOBODY_REMOTE,)]
        )
        self.assertEqual(remote.rcpts, [BOB_REMOTE, NOBODY_REMOTE, NOBODY_REMOTE])
        self.assertQueueEmpty()

    async def test_tlsFailureFallsBackToPlainText(self) -> None:
        """
        Opportunistic TLS: a remote that offers STARTTLS but whose handshake
        fails gets the message on a second connection, in plain text.
        """
        remote = self.startRemote(tls="broken")
        self.startRelayServer(remote)

        await self.submit([BOB_REMOTE], message("plain after all", to=BOB_REMOTE))
        await remote.waitMessages(1)
        await self.attempts.wait(1)

        [received] = remote.messages
        self.assertFalse(received.tls)
        self.assertEqual(remote.connections, 2)
        self.assertQueueEmpty()

    async def test_largeMessageDotStuffing(self) -> None:
        """
        A message of more than three 64 KiB chunks of lines that are a lone
        dot arrives byte for byte: the chunk boundaries fall at a line's
        start, between its dot and its CR and between its CR and LF.
        """
        remote = self.startRemote()
        self.startRelayServer(remote)
        original = message("dots", b".\r\n" * 70000, to=BOB_REMOTE)

        await self.submit([BOB_REMOTE], original)
        await remote.waitMessages(1)
        await self.attempts.wait(1)

        [received] = remote.messages
        self.assertTrue(received.data.endswith(b"\r\n" + original))
        self.assertGreater(len(received.data), 3 * 2**16 + 2)
        self.assertQueueEmpty()

    async def test_delayWarning(self) -> None:
        """
        With a tiny C{delay_warning}, a deferred recipient earns alice one
        "delayed" report, and only one: a second deferred attempt sends
        none.
        """
        remote = self.startRemote()
        remote.temporaryFailures = 10**6
        self.startRelayServer(remote, relay={"delay_warning": 1e-6})

        await self.submit([BOB_REMOTE], message("late", to=BOB_REMOTE))
        await self.attempts.wait(1)
        envelope = self.assertDeferred(BOB_REMOTE)
        self.assertTrue(envelope["warned"])
        [report] = self.server.messages("alice")
        text = report.decode("ascii")
        self.assertIn("report-type=delivery-status", text)
        self.assertIn("Action: delayed", text)
        self.assertIn(f"Final-Recipient: rfc822; {BOB_REMOTE}", text)
        self.assertIn("Will-Retry-Until:", text)

        await self.server.service.manager.flush()
        await self.attempts.wait(2)
        self.assertDeferred(BOB_REMOTE, attempts=2)
        self.assertEqual(len(self.server.messages("alice")), 1)

    async def test_lifetimeExpired(self) -> None:
        """
        With a tiny C{lifetime}, the first deferred attempt is the last: the
        recipient is bounced ("giving up"), the entry removed.
        """
        remote = self.startRemote()
        remote.temporaryFailures = 10**6
        self.startRelayServer(remote, relay={"lifetime": 1e-6})

        await self.submit([BOB_REMOTE], message("too late", to=BOB_REMOTE))
        await self.attempts.wait(1)

        self.assertQueueEmpty()
        [report] = self.server.messages("alice")
        text = report.decode("ascii")
        self.assertIn("Action: failed", text)
        self.assertIn(f"Final-Recipient: rfc822; {BOB_REMOTE}", text)
        self.assertIn("giving up after 1 attempts", text)
        self.assertIn("Status: 4.7.1", text)


class LoopTests(RelayTestCase):
    """
    A route back to the server's own MX listener is a configuration error:
    the message is bounced, not sent round in a loop.
    """

    async def test_routeToOwnListenerBounced(self) -> None:
        """
        With C{remote.test} routed to C{[127.0.0.1]:PORT}, PORT the server's
        own SMTP listener, nothing is sent anywhere: the recipient is
        bounced at the first attempt with a reason (C{5.4.6}) saying the
        mail loops back to this server, and the queue is empty.  (The
        listener's port is known only once bound, so the test sets the
        route of the running manager, as C{[relay.transport]} would.)
        """
        remote = self.startRemote()
        # Trusted, the MX listener would take the message back for relaying.
        server = self.startRelayServer(remote, trustedNetworks=["127.0.0.0/8"])
        loop = parseRoute(f"[127.0.0.1]:{server.port}")
        manager = server.service.manager
        original = manager.route
        manager.route = lambda domain: loop if domain == REMOTE else original(domain)

        await self.submit([BOB_REMOTE], message("round and round", to=BOB_REMOTE))
        await self.attempts.wait(1)

        self.assertEqual(remote.connections, 0)
        self.assertQueueEmpty()
        self.assertEqual(len(self.attempts.finished), 1)
        [report] = server.messages("alice")
        text = report.decode("ascii")
        self.assertIn("Action: failed", text)
        self.assertIn(f"Final-Recipient: rfc822; {BOB_REMOTE}", text)
        self.assertIn(
            f"<{BOB_REMOTE}>: 5.4.6 the route to 127.0.0.1 loops back to myself: "
            f"127.0.0.1 [127.0.0.1]:{server.port} is where this server listens",
            " ".join(text.split()),
        )
        # Nobody else got anything: not bob (a local mailbox) by a detour.
        self.assertEqual(server.messages("bob"), [])


class ReportingTests(RelayTestCase):
    """
    What the relay records about a remote's reply: in the queue, in the
    bounce, in the log.
    """

    async def test_remoteReplyRecordedOnce(self) -> None:
        """
        The remote's reply is recorded as it was given: C{lastError} of a
        451 is C{"451 4.7.1 <bob@remote.test>: try again later"}, and the
        bounce of a 550 says C{Diagnostic-Code: smtp; 550 5.1.1 <...>: no
        such user here}, the code and enhanced code once each.
        """
        remote = self.startRemote()
        remote.rcptCodes[NOBODY_REMOTE] = 550
        remote.temporaryFailures = 1
        self.startRelayServer(remote)

        await self.submit([BOB_REMOTE, NOBODY_REMOTE], message("codes", to=BOB_REMOTE))
        await self.attempts.wait(1)

        envelope = self.assertDeferred(BOB_REMOTE)
        responses = {r["address"]: r["response"] for r in envelope["recipients"]}
        [report] = self.server.messages("alice")
        unfolded = report.replace(b"\r\n ", b" ").decode("ascii")
        self.assertEqual(
            (
                envelope["lastError"],
                responses[NOBODY_REMOTE],
                "Diagnostic-Code: smtp; 550 5.1.1 <nobody@remote.test>: no such user here\r\n"
                in unfolded,
            ),
            (
                "451 4.7.1 <bob@remote.test>: try again later",
                "550 5.1.1 <nobody@remote.test>: no such user here",
                True,
            ),
        )


    async def test_senderLogNamesQueueId(self) -> None:
        """
        The sender's log lines about an attempt (C{relay id=... tls=...})
        name the entry's queue id, like the manager's lines do.
        """
        from twisted.logger import globalLogPublisher

        events: list[dict[str, Any]] = []

        def observe(event: dict[str, Any]) -> None:
            if str(event.get("log_format", "")).startswith("relay id={queueId}"):
                events.append(event)

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)
        remote = self.startRemote()
        remote.temporaryFailures = 1
        self.startRelayServer(remote)

        await self.submit([BOB_REMOTE], message("logged", to=BOB_REMOTE))
        await self.attempts.wait(1)
        [envelope] = self.envelopes()

        self.assertTrue(events)
        self.assertEqual({e["queueId"] for e in events}, {envelope["id"]})



class SmarthostTests(RelayTestCase):
    """
    Routes from the configuration instead of MX lookups: the smarthost
    (with AUTH, its certificate checked) and a C{[relay.transport]} entry
    written Postfix's way.  DNS goes to a closed port, so a message
    delivered was never looked up.
    """

    elsewhere = "carol@smart.test"

    def startSmarthost(self, remote: FakeMX, host: str, **relay: object) -> RunningServer:
        """
        A server whose smarthost is C{[host]:port} of C{remote}, with the
        C{smarthost_*} keys in C{relay}; its sender trusts the test CA and
        resolves L{MX_NAME} to 127.0.0.1 (the running server's sender is
        given them, as the configuration has no key for either).
        """
        from tests.relay.test_mx import FakeResolver

        server = self.startRelayServer(remote, relay={"smarthost": f"[{host}]:{remote.port}", **relay})
        sender = server.service.manager.sender
        resolver = FakeResolver()
        resolver.add(MX_NAME, dns.A, "127.0.0.1")
        sender.mx = MXResolver(resolver, sender.mx.localNames)
        sender._trustRoot = trustRootFromCertificates([Certificate.loadPEM(testCertificates().caPEM)])
        return server

    async def test_authenticatedVerified(self) -> None:
        """
        With credentials and no C{smarthost_tls} the smarthost's certificate
        is verified against its name; then AUTH PLAIN, and the message goes
        to it for a domain that has no route of its own.
        """
        remote = self.startRemote(tls=True, credentials={"relay-user": b"pass word"})
        self.startSmarthost(remote, MX_NAME, smarthost_user="relay-user", smarthost_password="pass word")

        await self.submit([self.elsewhere], message("smart", to=self.elsewhere))
        await remote.waitMessages(1)
        await self.attempts.wait(1)

        [received] = remote.messages
        self.assertEqual((received.recipients, received.tls), ((self.elsewhere,), True))
        self.assertEqual(remote.logins, [b"relay-user"])
        self.assertQueueEmpty()

    async def test_verifyFailureDeferred(self) -> None:
        """
        With credentials (and no C{smarthost_tls}), a smarthost whose
        certificate does not name it (here: connected to as C{[127.0.0.1]},
        the certificate is for L{MX_NAME}) gets neither the credentials nor
        the message: the entry stays queued, deferred with a TLS error.
        """
        remote = self.startRemote(tls=True, credentials={"relay-user": b"secret"})
        self.startSmarthost(remote, "127.0.0.1", smarthost_user="relay-user", smarthost_password="secret")

        await self.submit([self.elsewhere], message("not to strangers", to=self.elsewhere))
        await self.attempts.wait(1)
        await remote.waitClosed(remote.connections)

        self.assertEqual((remote.logins, remote.rcpts, remote.messages), ([], [], []))
        envelope = self.assertDeferred(self.elsewhere)
        self.assertIn("TLS", envelope["lastError"])

    async def test_transportSmtpPrefix(self) -> None:
        """
        A C{[relay.transport]} entry written C{"smtp:[127.0.0.1]:PORT"}
        routes its domain there.
        """
        remote = self.startRemote()
        self.startRelayServer(remote, route=f"smtp:[127.0.0.1]:{remote.port}")

        await self.submit([BOB_REMOTE], message("postfix style", to=BOB_REMOTE))
        await remote.waitMessages(1)
        await self.attempts.wait(1)

        self.assertEqual([m.recipients for m in remote.messages], [(BOB_REMOTE,)])
        self.assertQueueEmpty()


class UnreachableRemoteTests(RelayTestCase):
    """
    Remote MXs that break the session: the recipient is deferred, the
    entry stays queued.
    """

    async def test_closedWithoutGreeting(self) -> None:
        """
        A remote that closes the connection as soon as it has accepted it
        (no greeting): deferred.
        """
        remote = self.startRemote()
        remote.mode = "close"
        self.startRelayServer(remote)

        await self.submit([BOB_REMOTE], message("nobody home", to=BOB_REMOTE))
        await self.attempts.wait(1)

        self.assertEqual(remote.connections, 1)
        envelope = self.assertDeferred(BOB_REMOTE)
        self.assertIn("connection closed by the remote", envelope["lastError"])

    async def test_hangingRemoteTimesOut(self) -> None:
        """
        A remote that accepts the connection and never greets: the greeting
        timeout ends the attempt, deferred.  The timeouts are not in the
        configuration, so this test shortens the greeting timeout of the
        running server's sender (a reactor timer, not a sleep).
        """
        from attrs import evolve

        remote = self.startRemote()
        remote.mode = "hang"
        server = self.startRelayServer(remote)
        sender = server.service.manager.sender
        sender.timeouts = evolve(sender.timeouts, greeting=0.05)

        await self.submit([BOB_REMOTE], message("silence", to=BOB_REMOTE))
        await self.attempts.wait(1)
        await remote.waitClosed(1)

        envelope = self.assertDeferred(BOB_REMOTE)
        self.assertIn("timeout", envelope["lastError"])

    async def test_droppedInData(self) -> None:
        """
        A remote that drops the connection in the middle of the message:
        nothing is delivered, the recipient stays pending; a flush with the
        remote healed delivers it once.
        """
        remote = self.startRemote()
        remote.dropInData = 2
        self.startRelayServer(remote)

        await self.submit([BOB_REMOTE], message("cut short", BODY * 50, to=BOB_REMOTE))
        await self.attempts.wait(1)

        self.assertEqual(remote.drops, 1)
        self.assertEqual(remote.messages, [])
        self.assertDeferred(BOB_REMOTE)

        remote.dropInData = None
        await self.server.service.manager.flush()
        await self.attempts.wait(2)
        self.assertEqual(len(remote.messages), 1)
        self.assertQueueEmpty()


class RestartTests(RelayTestCase):
    """
    The queue outlives the server.
    """

    async def test_deferredEntryDeliveredAfterRestart(self) -> None:
        """
        An entry deferred when the server stops is delivered by the next
        server on the same data directory, once, after a flush.
        """
        remote = self.startRemote()
        remote.temporaryFailures = 10**6
        first = self.startRelayServer(remote)
        data = first.data

        await self.submit([BOB_REMOTE], message("survives", to=BOB_REMOTE))
        await self.attempts.wait(1)
        self.assertDeferred(BOB_REMOTE)
        await first.stop()
        self.assertFalse(first.service.running)
        self.assertDeferred(BOB_REMOTE)

        remote.temporaryFailures = 0
        self.startRelayServer(remote, data=data)
        await self.server.service.manager.flush()
        await remote.waitMessages(1)
        await self.attempts.wait(1)

        self.assertEqual(len(remote.messages), 1)
        self.assertEqual(remote.messages[0].recipients, (BOB_REMOTE,))
        self.assertQueueEmpty()


class TrustedNetworkTests(RelayTestCase):
    """
    Relaying without AUTH on the MX port.
    """

    def sendPlain(self) -> Deferred[Any]:
        """
        MAIL and RCPT to bob@remote.test on the MX port, no TLS, no AUTH;
        then the message if RCPT was taken.  Fires with the RCPT reply.
        """

        def work(client: smtplib.SMTP) -> Any:
            client.ehlo()
            client.docmd("MAIL", f"FROM:<{SENDER}>")
            rcpt = client.docmd("RCPT", f"TO:<{BOB_REMOTE}>")
            if rcpt[0] == 250:
                code, _ = client.data(message("trusted", to=BOB_REMOTE))
                assert code == 250, code
            return rcpt

        return self.smtp(work)

    async def test_trustedNetworkRelays(self) -> None:
        """
        A client in C{trusted_networks} relays without authenticating.
        """
        remote = self.startRemote()
        self.startRelayServer(remote, trustedNetworks=["127.0.0.0/8"])

        code, _ = await self.sendPlain()
        self.assertEqual(code, 250)
        await remote.waitMessages(1)
        await self.attempts.wait(1)

        [received] = remote.messages
        self.assertEqual((received.sender, received.recipients), (SENDER, (BOB_REMOTE,)))
        self.assertQueueEmpty()

    async def test_nullSenderRelayedNotBounced(self) -> None:
        """
        A message from C{<>} (a report) relayed for a trusted client goes
        out with C{MAIL FROM:<>}; refused with 550, it is dropped without a
        report (no report about a report).
        """
        remote = self.startRemote()
        remote.rcptCodes[NOBODY_REMOTE] = 550
        self.startRelayServer(remote, trustedNetworks=["127.0.0.0/8"])

        def work(client: smtplib.SMTP) -> Any:
            return client.sendmail("", [BOB_REMOTE, NOBODY_REMOTE], message("report", to=BOB_REMOTE))

        self.assertEqual(await self.smtp(work), {})
        await remote.waitMessages(1)
        await self.attempts.wait(1)

        [received] = remote.messages
        self.assertEqual((received.sender, received.recipients), ("", (BOB_REMOTE,)))
        self.assertQueueEmpty()
        self.assertEqual(self.server.messages("alice"), [])
        self.assertEqual(self.server.messages("postmaster"), [])
        # Only the original was queued: no report entry followed it.
        self.assertEqual(len(self.attempts.finished), 1)

    async def test_untrustedRelayDenied(self) -> None:
        """
        Without C{trusted_networks}, relaying is denied: 550 5.7.1, and
        nothing is queued.
        """
        remote = self.startRemote()
        self.startRelayServer(remote)

        code, text = await self.sendPlain()
        self.assertEqual((code, text[:5]), (550, b"5.7.1"))
        self.assertQueueEmpty()
        self.assertEqual(remote.connections, 0)
