"""
Receiving mail with C{smtplib}: the EHLO reply, a message stored intact
with its trace header, and who is (and is not) a recipient here.
"""

from __future__ import annotations

import re
import smtplib
from email.parser import BytesHeaderParser
from typing import Callable, Optional, Tuple

from tests.functional.support import (
    CLIENT_NAME,
    DOMAIN,
    HOSTNAME,
    SENDER,
    RunningServerTestCase,
    message,
)

MESSAGE_SIZE = 25 * 1024 * 1024

_QUEUED = re.compile(rb"2\.0\.0 Ok: queued as (\S+)")


#: The RCPT reply, and the reply after the message text (C{None} when RCPT
#: was refused).
Outcome = Tuple[Tuple[int, bytes], Optional[Tuple[int, bytes]]]


def deliver(recipient: str, text: bytes) -> Callable[[smtplib.SMTP], Outcome]:
    """
    A function for L{RunningServerTestCase.smtp}: one transaction to one
    recipient.
    """

    def work(client: smtplib.SMTP) -> Outcome:
        client.ehlo()
        code, reply = client.mail(SENDER)
        assert code == 250, (code, reply)
        rcpt = client.rcpt(recipient)
        result = client.data(text) if rcpt[0] == 250 else None
        client.quit()
        return rcpt, result

    return work


class ReceiveTests(RunningServerTestCase):
    """
    A plain ESMTP session with C{smtplib}.
    """

    limits = {"message_size": MESSAGE_SIZE}

    async def test_ehloAdvertisesExtensions(self) -> None:
        """
        EHLO lists PIPELINING, SIZE with the configured limit, 8BITMIME,
        ENHANCEDSTATUSCODES and (before TLS) STARTTLS.
        """

        def ehlo(client: smtplib.SMTP) -> tuple[int, bytes, dict[str, str]]:
            code, reply = client.ehlo()
            features = dict(client.esmtp_features)  # quit() forgets them
            client.quit()
            return code, reply, features

        code, reply, features = await self.smtp(ehlo)
        self.assertEqual(code, 250)
        self.assertEqual(reply.split(b"\n")[0], HOSTNAME.encode())
        self.assertEqual(features.get("size"), str(MESSAGE_SIZE))
        for extension in ("pipelining", "8bitmime", "enhancedstatuscodes", "starttls"):
            self.assertIn(extension, features)

    async def test_messageStoredIntactWithTraceHeaders(self) -> None:
        """
        A message to a local user lands in its C{new/} byte for byte (8-bit
        text and dot-stuffed lines included), after a C{Return-Path:} and a
        C{Received:} header that carries the queue id the client was given
        in C{250 2.0.0 Ok: queued as ID}.
        """
        text = message(
            "intact",
            b"Caf\xc3\xa9 cr\xc3\xa8me.\r\n.one leading dot\r\n..two\r\n.\r\n\r\nThe end.\r\n",
        )

        def send(client: smtplib.SMTP) -> tuple[int, bytes]:
            client.ehlo()
            self.assertEqual(client.mail(SENDER, ["BODY=8BITMIME"])[0], 250)
            self.assertEqual(client.rcpt(f"alice@{DOMAIN}")[0], 250)
            result = client.data(text)
            client.quit()
            return result

        code, reply = await self.smtp(send)
        self.assertEqual(code, 250)
        queued = _QUEUED.fullmatch(reply)
        self.assertIsNotNone(queued, reply)
        queueId = queued.group(1).decode("ascii")

        [stored] = self.server.messages("alice")
        self.assertTrue(stored.endswith(text), stored[-200:])
        trace = BytesHeaderParser().parsebytes(stored[: -len(text)])
        self.assertEqual(trace.keys(), ["Return-Path", "Received"])
        self.assertEqual(trace.get_payload(), "")
        self.assertEqual(trace["Return-Path"], f"<{SENDER}>")
        received = " ".join(trace["Received"].split())
        self.assertTrue(received.startswith(f"from {CLIENT_NAME} ([127.0.0.1])"), received)
        self.assertIn(f"by {HOSTNAME} (mailhub) with ESMTP id {queueId} ", received)
        self.assertIn(f"for <alice@{DOMAIN}>;", received)
        self.assertEqual(self.server.spoolFiles(), [])


class AddressingTests(RunningServerTestCase):
    """
    Who the server takes mail for: local users, postmaster, aliases,
    subaddresses; and nobody else.
    """

    aliases = {"info": ["alice", "bob"]}

    async def test_unknownLocalUserRefused(self) -> None:
        """
        RCPT of a user without a mailbox in a local domain: C{550 5.1.1}.
        """
        (code, reply), _ = await self.smtp(deliver(f"nobody@{DOMAIN}", message("x")))
        self.assertEqual(code, 550)
        self.assertTrue(reply.startswith(b"5.1.1 "), reply)

    async def test_remoteDomainRefused(self) -> None:
        """
        RCPT in a domain that is not local, from an untrusted client:
        C{550 5.7.1}; not an open relay.
        """
        (code, reply), _ = await self.smtp(deliver("someone@elsewhere.test", message("x")))
        self.assertEqual(code, 550)
        self.assertTrue(reply.startswith(b"5.7.1 "), reply)

    async def test_postmasterWithoutDomain(self) -> None:
        """
        C{RCPT TO:<postmaster>} (RFC 5321 §4.1.1.3) is accepted and
        delivered to postmaster of the primary domain, whose mailbox the
        server made at start.
        """
        text = message("to the postmaster", to="postmaster")
        (code, _), (dataCode, _) = await self.smtp(deliver("postmaster", text))
        self.assertEqual((code, dataCode), (250, 250))
        [stored] = self.server.messages("postmaster", DOMAIN)
        self.assertTrue(stored.endswith(text))

    async def test_aliasDeliversOneCopyToEachTarget(self) -> None:
        """
        An alias with two targets delivers exactly one copy to each.
        """
        text = message("to everyone", to=f"info@{DOMAIN}")
        (code, _), (dataCode, _) = await self.smtp(deliver(f"info@{DOMAIN}", text))
        self.assertEqual((code, dataCode), (250, 250))
        for name in ("alice", "bob"):
            stored = self.server.messages(name)
            self.assertEqual(len(stored), 1, name)
            self.assertTrue(stored[0].endswith(text), name)
        self.assertEqual(self.server.messages("info"), [])

    async def test_aliasAndItsTargetDeliverOnce(self) -> None:
        """
        A transaction to an alias and to one of its targets (in another
        spelling too) leaves one copy per mailbox.
        """

        def send(client: smtplib.SMTP) -> list[int]:
            client.ehlo()
            client.mail(SENDER)
            codes = [
                client.rcpt(address)[0]
                for address in (f"info@{DOMAIN}", f"alice@{DOMAIN}", f"ALICE+x@{DOMAIN}")
            ]
            codes.append(client.data(text)[0])
            client.quit()
            return codes

        text = message("once each", to=f"info@{DOMAIN}")
        self.assertEqual(await self.smtp(send), [250, 250, 250, 250])
        self.assertEqual(len(self.server.messages("alice")), 1)
        self.assertEqual(len(self.server.messages("bob")), 1)

    async def test_subaddressDeliversToUser(self) -> None:
        """
        C{alice+tag@} is delivered to alice.
        """
        text = message("tagged", to=f"alice+tag@{DOMAIN}")
        (code, _), (dataCode, _) = await self.smtp(deliver(f"alice+tag@{DOMAIN}", text))
        self.assertEqual((code, dataCode), (250, 250))
        [stored] = self.server.messages("alice")
        self.assertTrue(stored.endswith(text))
        self.assertEqual(self.server.messages("bob"), [])

    async def test_upperCaseAddressDeliversToUser(self) -> None:
        """
        C{ALICE@EXAMPLE.TEST} is alice.
        """
        text = message("shouting", to=f"ALICE@{DOMAIN.upper()}")
        (code, _), (dataCode, _) = await self.smtp(deliver(f"ALICE@{DOMAIN.upper()}", text))
        self.assertEqual((code, dataCode), (250, 250))
        [stored] = self.server.messages("alice")
        self.assertTrue(stored.endswith(text))


class AliasLoopTests(RunningServerTestCase):
    """
    Aliases that point at each other and never reach a mailbox.
    """

    aliases = {"loop": "loop2", "loop2": "loop"}

    async def test_loopingAliasRefusedAtRcpt(self) -> None:
        """
        RCPT to an alias that only loops is refused with a permanent error,
        rather than accepted for a message that can never be delivered.
        """
        (code, reply), result = await self.smtp(deliver(f"loop@{DOMAIN}", message("loop")))
        # What the server logs today when it takes such a message.
        self.flushLoggedErrors(IndexError)
        self.assertEqual((code, result), (550, None), reply)

