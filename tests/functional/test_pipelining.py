"""
Pipelining (RFC 2920) over a raw connection: commands written at once are
answered one reply each, in order.
"""

from __future__ import annotations

from tests.functional.support import DOMAIN, SENDER, RunningServerTestCase, message


class PipeliningTests(RunningServerTestCase):
    """
    One raw client that writes several commands in one go.
    """

    async def test_transactionInTwoWrites(self) -> None:
        """
        MAIL, three RCPTs (one unknown) and DATA in one write get their five
        replies in order; then the message, the final dot and QUIT in one
        write get C{250} and C{221}, and the server closes.  Both known
        recipients get the message.
        """
        client = await self.connect()
        self.assertEqual((await client.nextReply()).code, 220)
        client.write(b"EHLO client.test\r\n")
        self.assertIn("PIPELINING", (await client.nextReply()).text.split("\n"))

        client.write(
            f"MAIL FROM:<{SENDER}>\r\n"
            f"RCPT TO:<alice@{DOMAIN}>\r\n"
            f"RCPT TO:<nobody@{DOMAIN}>\r\n"
            f"RCPT TO:<bob@{DOMAIN}>\r\n"
            "DATA\r\n".encode("ascii")
        )
        replies = await client.replies(5)
        self.assertEqual(
            [(r.code, r.text.split(" ", 1)[0]) for r in replies],
            [(250, "2.1.0"), (250, "2.1.5"), (550, "5.1.1"), (250, "2.1.5"), (354, "End")],
        )

        text = message("pipelined")
        client.write(text + b".\r\nQUIT\r\n")
        queued, bye = await client.replies(2)
        self.assertEqual(queued.code, 250)
        self.assertTrue(queued.text.startswith("2.0.0 Ok: queued as "), queued)
        self.assertEqual((bye.code, bye.text), (221, "2.0.0 Bye"))
        await client.closed
        self.assertEqual(client.unread, [])
        for name in ("alice", "bob"):
            [stored] = self.server.messages(name)
            self.assertTrue(stored.endswith(text), name)
