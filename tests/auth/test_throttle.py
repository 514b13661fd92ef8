"""
Tests for L{mailhub.auth.throttle}: the per-peer delay, and logins through
L{Authenticator} on a L{Clock}.
"""

from __future__ import annotations

from typing import Any

from twisted.cred.checkers import ICredentialsChecker, InMemoryUsernamePasswordDatabaseDontUse
from twisted.cred.credentials import IUsernamePassword, UsernameHashedPassword, UsernamePassword
from twisted.cred.error import UnauthorizedLogin, UnhandledCredentials
from twisted.cred.portal import IRealm, Portal
from twisted.internet.defer import CancelledError, Deferred, fail
from twisted.internet.task import Clock
from twisted.logger import Logger, formatEvent
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import Interface, implementer
from zope.interface.verify import verifyObject

from mailhub.auth.throttle import MAX_PEERS, Authenticator, LoginThrottle, peerKey, sanitise
from mailhub.errors import TemporaryAuthError


class ThrottleTests(SynchronousTestCase):
    """
    L{LoginThrottle} grows, caps, resets and forgets the delay per peer.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1795700000)
        self.throttle = LoginThrottle(self.clock)

    def test_growsAndCaps(self) -> None:
        """
        With the defaults the delays double from one second up to thirty.
        """
        delays = [self.throttle.failed("203.0.113.7") for _ in range(8)]
        self.assertEqual(delays, [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0])
        self.assertEqual(self.throttle.delay("203.0.113.7"), 30.0)

    def test_parameters(self) -> None:
        """
        C{base}, C{factor} and C{cap} shape the curve.
        """
        throttle = LoginThrottle(self.clock, base=0.5, factor=3.0, cap=10.0)
        self.assertEqual([throttle.failed("p") for _ in range(5)], [0.5, 1.5, 4.5, 10.0, 10.0])

    def test_noOverflow(self) -> None:
        """
        A peer that fails very often stays at the cap.
        """
        throttle = LoginThrottle(self.clock, factor=1e6, cap=30.0)
        for _ in range(1000):
            delay = throttle.failed("p")
        self.assertEqual(delay, 30.0)

    def test_flatAndZero(self) -> None:
        """
        A factor of 1 keeps the delay at C{base}; a base of 0 turns it off.
        """
        flat = LoginThrottle(self.clock, factor=1.0)
        self.assertEqual([flat.failed("p") for _ in range(3)], [1.0, 1.0, 1.0])
        off = LoginThrottle(self.clock, base=0.0)
        self.assertEqual([off.failed("p") for _ in range(3)], [0.0, 0.0, 0.0])

    def test_badParameters(self) -> None:
        """
        Nonsense parameters are refused.
        """
        for kwargs in (
            {"base": -1.0},
            {"cap": -1.0},
            {"factor": 0.5},
            {"forgetAfter": 0.0},
            {"maxPeers": 0},
        ):
            self.assertRaises(ValueError, LoginThrottle, self.clock, **kwargs)

    def test_perPeer(self) -> None:
        """
        Failures from one peer do not slow down another.
        """
        self.throttle.failed("203.0.113.7")
        self.throttle.failed("203.0.113.7")
        self.assertEqual(self.throttle.delay("203.0.113.7"), 2.0)
        self.assertEqual(self.throttle.delay("203.0.113.8"), 0.0)
        self.assertEqual(self.throttle.failed("203.0.113.8"), 1.0)

    def test_successResets(self) -> None:
        """
        A success forgets the peer's failures.
        """
        for _ in range(4):
            self.throttle.failed("203.0.113.7")
        self.throttle.succeeded("203.0.113.7")
        self.assertEqual(self.throttle.delay("203.0.113.7"), 0.0)
        self.assertEqual(self.throttle.failed("203.0.113.7"), 1.0)
        self.throttle.succeeded("198.51.100.1")  # never failed: nothing happens

    def test_forgetAfter(self) -> None:
        """
        C{forgetAfter} seconds after its last failure a peer starts afresh;
        a failure before that keeps the count going.
        """
        throttle = LoginThrottle(self.clock, forgetAfter=900.0)
        throttle.failed("p")
        self.clock.advance(899)
        self.assertEqual(throttle.failed("p"), 2.0)
        self.clock.advance(899)
        self.assertEqual(throttle.delay("p"), 2.0)
        self.clock.advance(1)
        self.assertEqual(throttle.delay("p"), 0.0)
        self.assertEqual(throttle.failed("p"), 1.0)

    def test_prunesForgotten(self) -> None:
        """
        Forgotten peers are dropped as new failures come in.
        """
        for i in range(100):
            self.throttle.failed(f"192.0.2.{i}")
        self.assertEqual(len(self.throttle), 100)
        self.clock.advance(900)
        self.throttle.failed("198.51.100.1")
        self.assertEqual(len(self.throttle), 1)

    def test_boundedMemory(self) -> None:
        """
        At most C{maxPeers} peers are remembered: the one whose last failure
        is oldest goes first.
        """
        throttle = LoginThrottle(self.clock, maxPeers=3)
        for peer in ("a", "b", "c"):
            throttle.failed(peer)
            self.clock.advance(1)
        throttle.failed("a")  # now the newest
        throttle.failed("d")
        self.assertEqual(len(throttle), 3)
        self.assertEqual(throttle.delay("b"), 0.0)
        self.assertEqual(throttle.delay("a"), 2.0)
        self.assertEqual(throttle.delay("c"), 1.0)
        self.assertEqual(throttle.delay("d"), 1.0)

    def test_defaultBound(self) -> None:
        """
        By default ten thousand peers are remembered, no more.
        """
        self.assertEqual(MAX_PEERS, 10_000)
        for i in range(MAX_PEERS + 500):
            self.throttle.failed(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}")
        self.assertEqual(len(self.throttle), MAX_PEERS)
        self.assertEqual(self.throttle.delay("10.0.0.0"), 0.0)

    def test_ipv6Network(self) -> None:
        """
        IPv6 peers are throttled per /64; IPv4-mapped addresses count as
        their IPv4 address.
        """
        self.throttle.failed("2001:db8:1:2::1")
        self.assertEqual(self.throttle.failed("2001:db8:1:2:ffff::9"), 2.0)
        self.assertEqual(self.throttle.delay("2001:db8:1:3::1"), 0.0)
        self.throttle.failed("::ffff:192.0.2.1")
        self.assertEqual(self.throttle.delay("192.0.2.1"), 1.0)
        self.assertEqual(peerKey("2001:DB8:1:2::1"), "2001:db8:1:2::/64")
        self.assertEqual(peerKey("192.0.2.1"), "192.0.2.1")
        self.assertEqual(peerKey("unix-socket"), "unix-socket")


class SanitiseTests(SynchronousTestCase):
    """
    L{sanitise} makes a peer-supplied user name safe for a log line.
    """

    def test_table(self) -> None:
        """
        Printable ASCII passes; space, control characters, C{=}, C{\\} and
        non-ASCII are escaped; empty becomes C{-}.
        """
        for given, expected in [
            ("alice@example.test", "alice@example.test"),
            (b"alice@example.test", "alice@example.test"),
            ("x peer=10.0.0.1", "x\\x20peer\\x3d10.0.0.1"),
            ("a\r\nlogin user=root", "a\\x0d\\x0alogin\\x20user\\x3droot"),
            ("back\\slash", "back\\x5cslash"),
            ("jörg", "j\\xc3\\xb6rg"),
            (b"\xff", "\\xff"),
            ("", "-"),
            (b"", "-"),
            (None, "None"),
        ]:
            self.assertEqual(sanitise(given), expected, given)

    def test_truncated(self) -> None:
        """
        Long names are cut, never inside an escape, and marked.
        """
        self.assertEqual(sanitise("a" * 100), "a" * 64 + "...")
        self.assertEqual(sanitise("a" * 62 + " b"), "a" * 62 + "...")
        self.assertEqual(sanitise("a" * 64), "a" * 64)


class IAvatar(Interface):
    """
    What the test realm hands out.
    """


@implementer(IRealm)
class AvatarRealm:
    """
    Hands out the avatar id as the avatar, and counts logouts.
    """

    def __init__(self) -> None:
        self.logouts = 0

    def requestAvatar(self, avatarId: Any, mind: Any, *interfaces: Any) -> tuple[Any, Any, Any]:
        def logout() -> None:
            self.logouts += 1

        return interfaces[0], avatarId, logout


@implementer(ICredentialsChecker)
class ScriptedChecker:
    """
    A checker that fails with a given exception, or defers forever.
    """

    credentialInterfaces = (IUsernamePassword,)

    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.pending: list[Deferred[Any]] = []

    def requestAvatarId(self, credentials: Any) -> Deferred[Any]:
        if self.error is not None:
            return fail(self.error)
        d: Deferred[Any] = Deferred()
        self.pending.append(d)
        return d


class AuthenticatorTests(SynchronousTestCase):
    """
    L{Authenticator} logs in through the portal, delays failures by the
    throttle's delay and logs one line per login with the peer.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.events: list[dict[str, Any]] = []
        self.throttle = LoginThrottle(self.clock)
        self.realm = AvatarRealm()
        checker = InMemoryUsernamePasswordDatabaseDontUse(alice=b"secret")
        self.authenticator = self.makeAuthenticator(checker)

    def makeAuthenticator(self, checker: ICredentialsChecker) -> Authenticator:
        return Authenticator(
            Portal(self.realm, [checker]),
            self.throttle,
            self.clock,
            log=Logger(observer=self.events.append),
        )

    def lines(self) -> list[str]:
        return [formatEvent(event) for event in self.events]

    def test_fakesProvideInterfaces(self) -> None:
        """
        The test's checker and realm provide their interfaces.
        """
        self.assertTrue(verifyObject(ICredentialsChecker, ScriptedChecker()))
        self.assertTrue(verifyObject(IRealm, AvatarRealm()))

    def test_success(self) -> None:
        """
        A good password yields the portal's result at once, resets the
        peer and logs C{login user=... peer=...}.
        """
        self.throttle.failed("203.0.113.7")
        d = self.authenticator.login(UsernamePassword(b"alice", b"secret"), "203.0.113.7", IAvatar)
        interface, avatar, logout = self.successResultOf(d)
        self.assertIs(interface, IAvatar)
        self.assertEqual(avatar, b"alice")
        self.assertEqual(self.throttle.delay("203.0.113.7"), 0.0)
        self.assertEqual(self.lines(), ["login user=alice peer=203.0.113.7"])

    def test_failureDelayed(self) -> None:
        """
        A wrong password fails only after the throttle's delay, which grows
        with each failure; each failure is logged with the peer, never the
        password.
        """
        for expectedDelay in (1.0, 2.0, 4.0):
            d = self.authenticator.login(
                UsernamePassword(b"alice", b"guess"), "203.0.113.7", IAvatar
            )
            self.assertNoResult(d)
            self.clock.advance(expectedDelay - 0.001)
            self.assertNoResult(d)
            self.clock.advance(0.001)
            self.failureResultOf(d, UnauthorizedLogin)
        self.assertEqual(self.lines(), ["login failed user=alice peer=203.0.113.7"] * 3)
        self.assertEqual([event["delay"] for event in self.events], [1.0, 2.0, 4.0])
        for event in self.events:
            self.assertNotIn(b"guess", repr(event).encode())
            self.assertNotIn("guess", repr(event))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_unknownUserDelayed(self) -> None:
        """
        An unknown user counts as a failure like a wrong password.
        """
        d = self.authenticator.login(UsernamePassword(b"mallory", b"x"), "203.0.113.7", IAvatar)
        self.assertNoResult(d)
        self.clock.advance(1)
        self.failureResultOf(d, UnauthorizedLogin)
        self.assertEqual(self.lines(), ["login failed user=mallory peer=203.0.113.7"])

    def test_hostileUserNameSanitised(self) -> None:
        """
        A user name with a line break or a forged field is escaped in the
        log line.
        """
        d = self.authenticator.login(
            UsernamePassword(b"x peer=10.0.0.1\r\nlogin user=root", b"x"), "203.0.113.7", IAvatar
        )
        self.clock.advance(1)
        self.failureResultOf(d, UnauthorizedLogin)
        (line,) = self.lines()
        self.assertEqual(
            line,
            "login failed user=x\\x20peer\\x3d10.0.0.1\\x0d\\x0alogin\\x20user\\x3droot"
            " peer=203.0.113.7",
        )

    def test_temporaryNotCounted(self) -> None:
        """
        A L{TemporaryAuthError} passes through at once, is logged, and does
        not count against the peer.
        """
        authenticator = self.makeAuthenticator(ScriptedChecker(TemporaryAuthError("down")))
        d = authenticator.login(UsernamePassword(b"alice", b"secret"), "203.0.113.7", IAvatar)
        self.failureResultOf(d, TemporaryAuthError)
        self.assertEqual(self.throttle.delay("203.0.113.7"), 0.0)
        self.assertEqual(self.lines(), ["login unavailable user=alice peer=203.0.113.7: down"])

    def test_otherErrorNotCounted(self) -> None:
        """
        Any other error passes through at once, logged with its traceback,
        and does not count against the peer.
        """
        authenticator = self.makeAuthenticator(ScriptedChecker(ZeroDivisionError()))
        d = authenticator.login(UsernamePassword(b"alice", b"secret"), "203.0.113.7", IAvatar)
        self.failureResultOf(d, ZeroDivisionError)
        self.assertEqual(self.throttle.delay("203.0.113.7"), 0.0)
        self.assertEqual(self.lines(), ["login error user=alice peer=203.0.113.7"])
        self.assertIn("log_failure", self.events[0])

    def test_unhandledCredentialsNotCounted(self) -> None:
        """
        Credentials no checker handles are refused at once, logged without
        a traceback, and do not count against the peer.
        """
        authenticator = self.makeAuthenticator(ScriptedChecker())
        d = authenticator.login(UsernameHashedPassword(b"alice", b"digest"), "203.0.113.7", IAvatar)
        self.failureResultOf(d, UnhandledCredentials)
        self.assertEqual(self.throttle.delay("203.0.113.7"), 0.0)
        self.assertEqual(
            self.lines(),
            ["login refused user=alice peer=203.0.113.7: no checker for UsernameHashedPassword"],
        )

    def test_cancelDuringDelay(self) -> None:
        """
        Cancelling a failed login while it waits (the client went away)
        leaves no timer behind.
        """
        d = self.authenticator.login(UsernamePassword(b"alice", b"guess"), "203.0.113.7", IAvatar)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_cancelDuringCheck(self) -> None:
        """
        Cancelling while the checker works is not logged as an error.
        """
        checker = ScriptedChecker()
        authenticator = self.makeAuthenticator(checker)
        d = authenticator.login(UsernamePassword(b"alice", b"secret"), "203.0.113.7", IAvatar)
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertEqual(self.lines(), [])

    def test_portalFor(self) -> None:
        """
        L{Authenticator.portalFor} gives Twisted's mail protocols a
        portal-shaped object that logs in through the throttle for one peer.
        """
        portal = self.authenticator.portalFor("198.51.100.2")
        self.assertEqual(
            portal.listCredentialsInterfaces(),
            self.authenticator.portal.listCredentialsInterfaces(),
        )
        self.assertIn(IUsernamePassword, portal.listCredentialsInterfaces())
        d = portal.login(UsernamePassword(b"alice", b"nope"), None, IAvatar)
        self.assertNoResult(d)
        self.clock.advance(1)
        self.failureResultOf(d, UnauthorizedLogin)
        self.assertEqual(self.throttle.delay("198.51.100.2"), 1.0)
        d = portal.login(UsernamePassword(b"alice", b"secret"), None, IAvatar)
        self.assertEqual(self.successResultOf(d)[1], b"alice")
        self.assertEqual(self.throttle.delay("198.51.100.2"), 0.0)
        self.assertEqual(
            self.lines(),
            ["login failed user=alice peer=198.51.100.2", "login user=alice peer=198.51.100.2"],
        )
