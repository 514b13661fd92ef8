"""
SMTP smuggling, end to end: only C{<CRLF>.<CRLF>} ends the message text
(RFC 5321 §4.1.1.4), so commands hidden behind a bare-LF "end of data"
stay text of the one message.
"""

from __future__ import annotations

from tests.functional.support import DOMAIN, SENDER, RunningServerTestCase, message

#: The fake ends of data that other servers have taken for the real one.
FAKE_ENDS = {
    "LF.LF": b"\n.\n",
    "CRLF.LF": b"\r\n.\n",
    "LF.CRLF": b"\n.\r\n",
}


class SmugglingTests(RunningServerTestCase):
    """
    One raw session that tries each fake end of data.
    """

    async def test_fakeEndOfDataIsText(self) -> None:
        """
        A message whose text holds a fake end of data followed by a whole
        second transaction (MAIL, RCPT bob, DATA, text) is stored as one
        message for alice holding that transaction as text: the server
        answers once for it, and bob gets nothing.
        """
        client = await self.connect()
        self.assertEqual((await client.nextReply()).code, 220)
        client.write(b"EHLO client.test\r\n")
        self.assertEqual((await client.nextReply()).code, 250)

        for name, fakeEnd in FAKE_ENDS.items():
            smuggled = (
                b"MAIL FROM:<evil@x>\r\n"
                b"RCPT TO:<bob@" + DOMAIN.encode() + b">\r\n"
                b"DATA\r\n"
                b"Subject: smuggled after " + name.encode() + b"\r\n"
                b"\r\n"
                b"Smuggled text.\r\n"
            )
            text = message(f"carrier {name}", b"Innocent text." + fakeEnd + smuggled)
            client.write(f"MAIL FROM:<{SENDER}>\r\nRCPT TO:<alice@{DOMAIN}>\r\nDATA\r\n".encode())
            self.assertEqual([r.code for r in await client.replies(3)], [250, 250, 354], name)
            client.write(text + b".\r\nNOOP\r\n")
            # One reply for the message, then NOOP's (not MAIL's 2.1.0).
            queued, noop = await client.replies(2)
            self.assertEqual(queued.code, 250, name)
            self.assertTrue(queued.text.startswith("2.0.0 Ok: queued as "), (name, queued))
            self.assertEqual((noop.code, noop.text), (250, "2.0.0 Ok"), name)

        client.write(b"QUIT\r\n")
        self.assertEqual((await client.nextReply()).code, 221)
        await client.closed
        self.assertEqual(client.unread, [])

        stored = self.server.messages("alice")
        self.assertEqual(len(stored), len(FAKE_ENDS))
        for name in FAKE_ENDS:
            [carrier] = [m for m in stored if f"Subject: carrier {name}\r\n".encode() in m]
            self.assertIn(b"MAIL FROM:<evil@x>\r\nRCPT TO:<bob@", carrier, name)
            self.assertIn(f"Subject: smuggled after {name}\r\n".encode(), carrier, name)
            self.assertTrue(carrier.endswith(b"Smuggled text.\r\n"), name)
        self.assertEqual(self.server.messages("bob"), [])

    async def test_overlongLineStaysInData(self) -> None:
        """
        A line over C{line_length} inside the message does not drop the
        session back to command mode: the commands after it are text, the
        message is refused with C{500 5.5.2} at the real end of data, and
        nothing is delivered to anyone.
        """
        client = await self.connect()
        self.assertEqual((await client.nextReply()).code, 220)
        client.write(
            f"EHLO client.test\r\nMAIL FROM:<{SENDER}>\r\nRCPT TO:<alice@{DOMAIN}>\r\nDATA\r\n".encode()
        )
        self.assertEqual([r.code for r in await client.replies(4)], [250, 250, 250, 354])
        text = message(
            "long line",
            b"x" * 20000 + b"\r\n"
            b"MAIL FROM:<evil@x>\r\nRCPT TO:<bob@" + DOMAIN.encode() + b">\r\nDATA\r\n"
            b"Subject: smuggled\r\n\r\nSmuggled.\r\n",
        )
        client.write(text + b".\r\nNOOP\r\n")
        refused, noop = await client.replies(2)
        self.assertEqual(refused.code, 500)
        self.assertTrue(refused.text.startswith("5.5.2 "), refused)
        self.assertEqual((noop.code, noop.text), (250, "2.0.0 Ok"))
        client.write(b"QUIT\r\n")
        self.assertEqual((await client.nextReply()).code, 221)
        await client.closed
        self.assertEqual(self.server.messages("alice"), [])
        self.assertEqual(self.server.messages("bob"), [])
