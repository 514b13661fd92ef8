"""
Command lines at and over C{line_length}, over a raw connection.
"""

from __future__ import annotations

from tests.functional.support import ReplyReader, RunningServerTestCase

LINE_LENGTH = 1000

#: A NOOP command of exactly C{LINE_LENGTH} octets, without its CRLF.
LONGEST = b"NOOP " + b"x" * (LINE_LENGTH - 5)


class CommandLineLengthTests(RunningServerTestCase):
    """
    A server whose longest line is 1000 octets (the smallest allowed).
    """

    limits = {"line_length": LINE_LENGTH}

    async def greeted(self) -> ReplyReader:
        client = await self.connect()
        self.assertEqual((await client.nextReply()).code, 220)
        return client

    async def test_longestCommandAccepted(self) -> None:
        """
        A command of exactly C{line_length} octets is answered.
        """
        client = await self.greeted()
        client.write(LONGEST + b"\r\n")
        self.assertEqual(await client.nextReply(), (250, "2.0.0 Ok"))

    async def test_longestCommandAcceptedWhenCRLFArrivesLater(self) -> None:
        """
        The same command is answered the same when its LF arrives in a later
        read than the rest of the line: the limit is on octets, not on how
        the network cut them.  (The first NOOP's reply shows the server has
        read everything up to the CR before the LF is sent.)
        """
        client = await self.greeted()
        client.write(b"NOOP\r\n" + LONGEST + b"\r")
        self.assertEqual(await client.nextReply(), (250, "2.0.0 Ok"))
        client.write(b"\n")
        self.assertEqual(await client.nextReply(), (250, "2.0.0 Ok"))


    async def test_longerCommandRefused(self) -> None:
        """
        One octet more is C{500 5.5.2}, and the session goes on.
        """
        client = await self.greeted()
        client.write(LONGEST + b"x\r\nNOOP\r\n")
        tooLong, noop = await client.replies(2)
        self.assertEqual(tooLong.code, 500)
        self.assertTrue(tooLong.text.startswith("5.5.2 "), tooLong)
        self.assertEqual(noop, (250, "2.0.0 Ok"))
