"""
Connection limits, end to end: the idle timeout and the per-peer
connection limit.
"""

from __future__ import annotations

from tests.functional.support import RunningServerTestCase


class IdleTimeoutTests(RunningServerTestCase):
    """
    A server with a half-second idle timeout.
    """

    limits = {"idle_timeout": 0.5}

    async def test_silentClientDisconnected(self) -> None:
        """
        A client that says nothing after the greeting gets C{421 4.4.2} and
        the connection is closed (the test waits for both events, not for
        a time).
        """
        client = await self.connect()
        self.assertEqual((await client.nextReply()).code, 220)
        timeout = await client.nextReply()
        self.assertEqual(timeout.code, 421)
        self.assertTrue(timeout.text.startswith("4.4.2 mx.test "), timeout)
        await client.closed
        await self.server.sessionsClosed()

    async def test_silenceAfterCommandDisconnected(self) -> None:
        """
        The timeout starts again with each command, and still ends a
        session that falls silent later.
        """
        client = await self.connect()
        self.assertEqual((await client.nextReply()).code, 220)
        client.write(b"EHLO client.test\r\n")
        self.assertEqual((await client.nextReply()).code, 250)
        client.write(b"NOOP\r\n")
        self.assertEqual((await client.nextReply()).code, 250)
        timeout = await client.nextReply()
        self.assertEqual(timeout.code, 421)
        self.assertTrue(timeout.text.startswith("4.4.2 "), timeout)
        await client.closed


class PerPeerLimitTests(RunningServerTestCase):
    """
    At most two connections from one address, loopback included.
    """

    limits = {"connections_per_peer": 2, "peer_limit_exempt": []}

    async def test_thirdConnectionRefused(self) -> None:
        """
        With two sessions open from 127.0.0.1, a third connection gets
        C{421 4.7.0} and is closed; once one of the two has quit, a new
        connection is greeted again.
        """
        first = await self.connect()
        second = await self.connect()
        # Greeted: the server has counted both.
        self.assertEqual((await first.nextReply()).code, 220)
        self.assertEqual((await second.nextReply()).code, 220)

        third = await self.connect()
        refused = await third.nextReply()
        self.assertEqual(refused.code, 421)
        self.assertTrue(refused.text.startswith("4.7.0 "), refused)
        await third.closed
        self.assertEqual(third.unread, [])

        # The server closes after 221, so it has forgotten the session by
        # the time the client sees the end of the connection.
        first.write(b"QUIT\r\n")
        self.assertEqual((await first.nextReply()).code, 221)
        await first.closed
        fourth = await self.connect()
        self.assertEqual((await fourth.nextReply()).code, 220)
