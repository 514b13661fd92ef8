"""
POP3 end to end: the real service, messages delivered over SMTP, read back
with C{poplib} (STLS on the plain port, implicit TLS on pop3s) and with
Twisted's own L{AdvancedPOP3Client}.
"""

from __future__ import annotations

import base64
import os
import poplib
import smtplib
from typing import Any, Callable, TypeVar

from tests.functional.support import (
    CLIENT_NAME,
    DOMAIN,
    PASSWORD,
    SENDER,
    SOCKET_GUARD,
    RunningServerTestCase,
    message,
    popSession,
    unverified,
)
from twisted.internet import reactor
from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import SSL4ClientEndpoint, connectProtocol
from twisted.internet.ssl import CertificateOptions
from twisted.mail.pop3 import AdvancedPOP3Client

_T = TypeVar("_T")

ALICE = f"alice@{DOMAIN}"



def wholeMessage(lines: list[bytes]) -> bytes:
    """
    The message text of a multi-line response as C{poplib} gives it
    (lines without CRLF, dot-unstuffed).
    """
    return b"".join(line + b"\r\n" for line in lines)


class _ClosingPOP3Client(AdvancedPOP3Client):
    """
    Twisted's POP3 client that says when its connection has gone.
    """

    def __init__(self) -> None:
        self.closed: Deferred[None] = Deferred()

    def connectionLost(self, reason: Any) -> None:
        AdvancedPOP3Client.connectionLost(self, reason)
        self.closed.callback(None)


class POP3Tests(RunningServerTestCase):
    """
    The POP3 listeners with real mail client libraries.
    """

    def setUp(self) -> None:
        super().setUp()
        self._popDrained: list[Deferred[None]] = []
        for name in ("pop3", "pop3s"):
            factory = self.server.service.factories[name]
            original = factory.disconnected

            def disconnected(session: Any, original: Any = original) -> None:
                original(session)
                self._checkDrained()

            # An instance attribute: the class is untouched.
            factory.disconnected = disconnected
        # Run after the server's stop is registered, so runs before it.
        self.addCleanup(self.popSessionsClosed)

    # Helpers

    def _popFactories(self) -> list[Any]:
        return [self.server.service.factories[name] for name in ("pop3", "pop3s")]

    def _checkDrained(self) -> None:
        if not any(f.sessions for f in self._popFactories()):
            waiting, self._popDrained = self._popDrained, []
            for d in waiting:
                d.callback(None)

    def popSessionsClosed(self) -> Deferred[None]:
        """
        Fires once the server has no POP3 session open (on either port).
        """
        if not any(f.sessions for f in self._popFactories()):
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._popDrained.append(d)
        return d

    async def deliver(self, *subjects: str) -> None:
        """
        Deliver one message per subject to alice over SMTP (the MX port).
        """

        def work(client: smtplib.SMTP) -> None:
            for subject in subjects:
                refused = client.sendmail(SENDER, [ALICE], message(subject))
                assert refused == {}, refused
            client.quit()

        await self.smtp(work)

    def stored(self) -> dict[str, bytes]:
        """
        Alice's message files in C{new/} and C{cur/}: file name to content.
        """
        files = {}
        for directory in ("new", "cur"):
            path = os.path.join(self.server.maildir("alice"), directory)
            if not os.path.isdir(path):
                continue
            for name in os.listdir(path):
                with open(os.path.join(path, name), "rb") as f:
                    files[f"{directory}/{name}"] = f.read()
        return files

    def pop(
        self,
        work: Callable[[poplib.POP3], _T],
        *,
        implicit: bool = False,
        login: bool = True,
        starttls: bool = True,
        quit: bool = True,
    ) -> Deferred[_T]:
        """
        L{popSession} as alice on this test's server.
        """
        return popSession(
            self.server.ports, ALICE, work, implicit=implicit, login=login, starttls=starttls, quit=quit
        )

    # Tests

    async def test_retrieveAfterSTLS(self) -> None:
        """
        After STLS and USER/PASS, STAT/LIST/UIDL/RETR/TOP match the files.
        """
        await self.deliver("first", "second")
        files = self.stored()
        self.assertEqual(len(files), 2)

        def work(client: poplib.POP3) -> Any:
            stat = client.stat()
            listing = client.list()[1]
            uidl = client.uidl()[1]
            retrieved = [client.retr(n)[1] for n in (1, 2)]
            top = client.top(1, 0)[1]
            return stat, listing, uidl, retrieved, top

        stat, listing, uidl, retrieved, top = await self.pop(work)
        byName = {name.split("/", 1)[1].split(":")[0]: data for name, data in files.items()}
        self.assertEqual(stat, (2, sum(len(d) for d in files.values())))
        uids = {}
        for line in uidl:
            number, uid = line.split()
            uids[int(number)] = uid.decode("ascii")
        self.assertEqual(set(uids.values()), set(byName))
        sizes = {int(n): int(s) for n, s in (line.split() for line in listing)}
        self.assertEqual(sizes, {n: len(byName[uid]) for n, uid in uids.items()})
        for number, lines in zip((1, 2), retrieved):
            self.assertEqual(wholeMessage(lines), byName[uids[number]])
        header = byName[uids[1]].split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"
        self.assertEqual(wholeMessage(top), header)

    async def test_capabilitiesBeforeAndAfterSTLS(self) -> None:
        """
        Before STLS CAPA has STLS but no USER/SASL and USER is -ERR; after, both.
        """

        def work(client: poplib.POP3) -> Any:
            before = client.capa()
            try:
                client.user(ALICE)
            except poplib.error_proto as e:
                refused = e.args[0]
            else:
                refused = None
            client.stls(unverified())
            after = client.capa()
            return before, refused, after

        before, refused, after = await self.pop(work, starttls=False, login=False)
        self.assertIn("STLS", before)
        self.assertNotIn("USER", before)
        self.assertNotIn("SASL", before)
        self.assertIsNotNone(refused)
        self.assertTrue(refused.startswith(b"-ERR [AUTH]"), refused)
        for capability in ("USER", "UIDL", "TOP"):
            self.assertIn(capability, after)
        self.assertEqual(after["SASL"], ["PLAIN"])
        self.assertNotIn("STLS", after)

    async def test_implicitTLSAuthPlain(self) -> None:
        """
        On pop3s, AUTH PLAIN works at once, with no STLS.
        """
        await self.deliver("implicit")

        def work(client: poplib.POP3) -> Any:
            capa = client.capa()
            token = base64.b64encode(f"\0{ALICE}\0{PASSWORD}".encode()).decode()
            login = client._shortcmd(f"AUTH PLAIN {token}")
            return capa, login, client.stat()

        capa, login, stat = await self.pop(work, implicit=True, login=False)
        self.assertNotIn("STLS", capa)
        self.assertIn("USER", capa)
        self.assertTrue(login.startswith(b"+OK"), login)
        self.assertEqual(stat[0], 1)

    async def test_wrongPassword(self) -> None:
        """
        A wrong password is refused with -ERR [AUTH], after the throttle's delay.
        """

        def work(client: poplib.POP3) -> Any:
            client.user(ALICE)
            try:
                client.pass_("wrong")
            except poplib.error_proto as e:
                return e.args[0]
            return None

        start = reactor.seconds()
        reply = await self.pop(work, login=False)
        self.assertIsNotNone(reply)
        self.assertTrue(reply.startswith(b"-ERR [AUTH]"), reply)
        # The throttle's first delay is one second.
        self.assertGreaterEqual(reactor.seconds() - start, 0.9)

    async def test_deleteAndQuitRemoves(self) -> None:
        """
        DELE 1 then QUIT removes the file from the Maildir.
        """
        await self.deliver("doomed")
        self.assertEqual(len(self.stored()), 1)
        await self.pop(lambda client: client.dele(1))
        self.assertEqual(self.stored(), {})

    async def test_deleteResetKeeps(self) -> None:
        """
        DELE 1, RSET, then QUIT keeps the message.
        """
        await self.deliver("kept")
        before = self.stored()

        def work(client: poplib.POP3) -> Any:
            client.dele(1)
            client.rset()
            return client.stat()

        self.assertEqual((await self.pop(work))[0], 1)
        self.assertEqual(self.stored(), before)

    async def test_deleteThenDropKeeps(self) -> None:
        """
        DELE 1 then closing the connection without QUIT keeps the message.
        """
        await self.deliver("dropped")
        before = self.stored()
        await self.pop(lambda client: client.dele(1), quit=False)
        await self.popSessionsClosed()
        self.assertEqual(self.stored(), before)
        # And the lock is gone: the next session sees it.
        self.assertEqual((await self.pop(lambda client: client.stat()))[0], 1)

    async def test_retrieveMarksSeen(self) -> None:
        """
        RETR then QUIT moves the file to cur/ with :2,S; its UIDL stays.
        """
        await self.deliver("read me")
        [name] = self.stored()
        self.assertTrue(name.startswith("new/"), name)
        base = name[len("new/") :]

        def work(client: poplib.POP3) -> Any:
            client.retr(1)
            return client.uidl(1)

        first = await self.pop(work)
        self.assertEqual(list(self.stored()), [f"cur/{base}:2,S"])
        second = await self.pop(lambda client: client.uidl(1))
        self.assertEqual(first, second)
        self.assertEqual(first.split()[-1], base.encode("ascii"))

    async def test_secondSessionInUse(self) -> None:
        """
        A second session for the same user gets -ERR [IN-USE]; after QUIT, one works.
        """
        await self.deliver("busy")

        def work(client: poplib.POP3) -> Any:
            # The first session is open and logged in; try a second one.
            def second(other: poplib.POP3) -> Any:
                other.user(ALICE)
                try:
                    other.pass_(PASSWORD)
                except poplib.error_proto as e:
                    return e.args[0]
                return None

            other = poplib.POP3_SSL(
                "127.0.0.1", self.server.ports["pop3s"], timeout=SOCKET_GUARD, context=unverified()
            )
            try:
                reply = second(other)
                other.quit()
            finally:
                other.close()
            return reply

        reply = await self.pop(work)
        self.assertIsNotNone(reply)
        self.assertTrue(reply.startswith(b"-ERR [IN-USE]"), reply)
        self.assertEqual((await self.pop(lambda client: client.stat()))[0], 1)

    async def test_snapshotAtLogin(self) -> None:
        """
        Mail delivered during a session appears only in the next session.
        """
        await self.deliver("before")

        def work(client: poplib.POP3) -> Any:
            before = client.stat()

            def send() -> None:
                smtp = smtplib.SMTP(
                    "127.0.0.1", self.server.port, local_hostname=CLIENT_NAME, timeout=SOCKET_GUARD
                )
                try:
                    smtp.sendmail(SENDER, [ALICE], message("during"))
                    smtp.quit()
                finally:
                    smtp.close()

            send()
            return before, client.stat(), len(client.uidl()[1])

        before, after, uids = await self.pop(work)
        self.assertEqual(len(self.stored()), 2)
        self.assertEqual(before[0], 1)
        self.assertEqual(after, before)
        self.assertEqual(uids, 1)
        self.assertEqual((await self.pop(lambda client: client.stat()))[0], 2)

    async def test_twistedClient(self) -> None:
        """
        Twisted's AdvancedPOP3Client logs in over pop3s and retrieves the message.
        """
        await self.deliver("twisted")
        [content] = self.stored().values()
        endpoint = SSL4ClientEndpoint(
            reactor, "127.0.0.1", self.server.ports["pop3s"], CertificateOptions(verify=False)
        )
        client = await connectProtocol(endpoint, _ClosingPOP3Client())
        try:
            await client.login(ALICE.encode("ascii"), PASSWORD.encode("ascii"))
            lines = await client.retrieve(0)
            uids = await client.listUID()
            await client.quit()
        finally:
            if not client.closed.called:
                client.transport.loseConnection()
            await client.closed
        self.assertEqual(wholeMessage(lines), content)
        self.assertEqual(len(uids), 1)
