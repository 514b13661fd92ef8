# -*- test-case-name: tests.auth.test_throttle -*-
"""
Slowing down password guessing: L{LoginThrottle} remembers recent failures
per peer address, and L{Authenticator} runs every login (SMTP AUTH, POP3,
IMAP4) through the portal, delays the answer to a failed one and writes the
line an operator (or fail2ban) greps for::

    login failed user=alice@example.test peer=203.0.113.7
    login user=alice@example.test peer=203.0.113.7

The throttle keeps no timers: entries carry the time of their last failure
and are pruned as new failures arrive, so there is nothing to stop.
"""

from __future__ import annotations

import ipaddress
import math
from collections import OrderedDict
from typing import Any

from twisted.cred.error import UnauthorizedLogin, UnhandledCredentials
from twisted.cred.portal import Portal
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger
from zope.interface.interface import InterfaceClass

from mailhub.errors import TemporaryAuthError

#: The most peers the throttle remembers; beyond it the oldest are dropped.
MAX_PEERS = 10_000

#: IPv6 peers are throttled per network of this prefix length: anyone who
#: holds one address of a /64 usually holds all of them.
IPV6_PREFIX = 64

#: The longest user name written to the log, after escaping.
MAX_LOGGED_USERNAME = 64


class _Entry:
    """
    The failures remembered for one peer.

    @ivar count: failures since the last success or since forgetting.
    @ivar last: when the last failure happened (reactor seconds).
    """

    __slots__ = ("count", "last")

    def __init__(self, count: int, last: float) -> None:
        self.count = count
        self.last = last


class LoginThrottle:
    """
    A growing, capped delay per peer for failed logins.

    After the M{n}th failure in a row from a peer the delay is
    M{min(cap, base * factor ** (n - 1))}: with the defaults 1, 2, 4, 8, 16,
    30, 30, ... seconds.  A success from the peer resets it; so does
    C{forgetAfter} seconds without a failure.

    IPv4 peers are tracked per address, IPv6 peers per /64 network
    (L{IPV6_PREFIX}); IPv4-mapped IPv6 addresses count as the IPv4 address.
    Anything that is not an IP address is tracked as the string it is.

    Memory is bounded: at most C{maxPeers} peers are remembered, the ones
    whose last failure is oldest are dropped first, and forgotten entries
    are pruned as failures are recorded.
    """

    def __init__(
        self,
        clock: IReactorTime,
        *,
        base: float = 1.0,
        factor: float = 2.0,
        cap: float = 30.0,
        forgetAfter: float = 900.0,
        maxPeers: int = MAX_PEERS,
    ) -> None:
        """
        @param clock: where the time comes from.
        @param base: the delay after the first failure, in seconds.
        @param factor: how much each further failure multiplies the delay
            (at least 1).
        @param cap: the longest delay, in seconds.
        @param forgetAfter: seconds after its last failure that a peer is
            forgotten.
        @param maxPeers: the most peers remembered at once.
        @raise ValueError: for a negative delay, a factor below 1, a
            non-positive C{forgetAfter} or C{maxPeers}.
        """
        if base < 0 or cap < 0:
            raise ValueError("base and cap must not be negative")
        if factor < 1:
            raise ValueError("factor must be at least 1")
        if forgetAfter <= 0:
            raise ValueError("forgetAfter must be positive")
        if maxPeers < 1:
            raise ValueError("maxPeers must be at least 1")
        self._clock = clock
        self._base = float(base)
        self._factor = float(factor)
        self._cap = float(cap)
        self._forgetAfter = float(forgetAfter)
        self._maxPeers = maxPeers
        # Ordered by the time of the last failure, oldest first.
        self._entries: OrderedDict[str, _Entry] = OrderedDict()

    def __len__(self) -> int:
        """
        @return: how many peers are remembered right now (forgotten ones not
            yet pruned included).
        """
        return len(self._entries)

    def failed(self, peer: str) -> float:
        """
        Record a failed login from C{peer}.

        @param peer: the peer's IP address, as text.
        @return: the seconds to wait before answering the failure.
        """
        now = self._clock.seconds()
        self._prune(now)
        key = peerKey(peer)
        entry = self._entries.pop(key, None)
        if entry is None or self._expired(entry, now):
            entry = _Entry(0, now)
        entry.count += 1
        entry.last = now
        self._entries[key] = entry
        while len(self._entries) > self._maxPeers:
            self._entries.popitem(last=False)
        return self._delayFor(entry.count)

    def succeeded(self, peer: str) -> None:
        """
        Forget the failures of C{peer}: it just logged in.

        @param peer: the peer's IP address, as text.
        """
        self._entries.pop(peerKey(peer), None)

    def delay(self, peer: str) -> float:
        """
        The delay the failures remembered for C{peer} call for, without
        recording anything: what the last L{failed} returned, or C{0.0} for
        a peer with no (unforgotten) failures.

        @param peer: the peer's IP address, as text.
        @return: seconds.
        """
        entry = self._entries.get(peerKey(peer))
        if entry is None or self._expired(entry, self._clock.seconds()):
            return 0.0
        return self._delayFor(entry.count)

    def _expired(self, entry: _Entry, now: float) -> bool:
        return now - entry.last >= self._forgetAfter

    def _prune(self, now: float) -> None:
        """
        Drop the entries, oldest first, that are old enough to forget.
        """
        while self._entries:
            oldest = next(iter(self._entries.values()))
            if not self._expired(oldest, now):
                return
            self._entries.popitem(last=False)

    def _delayFor(self, count: int) -> float:
        """
        M{min(cap, base * factor ** (count - 1))}, without overflowing for a
        very large C{count}.
        """
        if count <= 0 or self._base == 0:
            return 0.0
        if self._factor == 1 or self._cap <= self._base:
            return min(self._base, self._cap)
        if count - 1 >= math.log(self._cap / self._base, self._factor):
            return self._cap
        return min(self._cap, self._base * self._factor ** (count - 1))


def peerKey(peer: str) -> str:
    """
    The key a peer is throttled under: an IPv4 address as itself, an IPv6
    address as its /64 network (L{IPV6_PREFIX}), an IPv4-mapped IPv6
    address as the IPv4 address, anything else unchanged.

    @param peer: a peer address as text (C{"203.0.113.7"}, C{"2001:db8::1"}).
    @return: the throttle key.
    """
    try:
        address = ipaddress.ip_address(peer)
    except ValueError:
        return peer
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, IPV6_PREFIX), strict=False))
    return str(address)


def sanitise(text: object, limit: int = MAX_LOGGED_USERNAME) -> str:
    """
    Make a peer-supplied value safe for a one-line log that tools parse.

    Printable ASCII passes, except C{=} and C{\\}; everything else (space,
    control characters, non-ASCII, as UTF-8 bytes) is written as C{\\xNN},
    so a user name like C{"x peer=10.0.0.1"} cannot forge a field and no
    line break gets through.  The result is cut at C{limit} characters, an
    escape never split, with C{...} marking the cut.

    @param text: a user name, as C{bytes} or C{str} (anything else is
        turned into C{str} first).
    @param limit: the most characters of escaped text to keep.
    @return: the escaped text, or C{"-"} if it is empty.
    """
    if isinstance(text, str):
        raw = text.encode("utf-8", "surrogateescape")
    elif isinstance(text, bytes):
        raw = text
    else:
        raw = str(text).encode("utf-8", "surrogateescape")
    pieces: list[str] = []
    length = 0
    for byte in raw:
        if 0x21 <= byte <= 0x7E and byte not in (0x3D, 0x5C):  # not "=", "\"
            piece = chr(byte)
        else:
            piece = f"\\x{byte:02x}"
        if length + len(piece) > limit:
            pieces.append("...")
            break
        pieces.append(piece)
        length += len(piece)
    return "".join(pieces) or "-"


class _PeerPortal:
    """
    A portal-shaped view of an L{Authenticator} for one connection: hand it
    to a Twisted mail protocol as its C{portal} and every login it makes
    goes through the throttle with the peer's address.
    """

    def __init__(self, authenticator: Authenticator, peer: str) -> None:
        self._authenticator = authenticator
        self._peer = peer

    def login(self, credentials: Any, mind: object, *interfaces: InterfaceClass) -> Deferred:
        """
        Like L{Portal.login}, through the throttle.
        """
        return self._authenticator.login(credentials, self._peer, *interfaces, mind=mind)

    def listCredentialsInterfaces(self) -> list:
        """
        Like L{Portal.listCredentialsInterfaces}.
        """
        return self._authenticator.portal.listCredentialsInterfaces()


class Authenticator:
    """
    Logs users in through one portal, throttled per peer.

    A wrong user name or password (L{UnauthorizedLogin}) is recorded with
    the throttle, logged as C{login failed user=... peer=...} and delivered
    only after the throttle's delay.  A success resets the peer and is
    logged as C{login user=... peer=...}.  A L{TemporaryAuthError} (the
    password service is down) or any other error is logged and passed on
    at once, and does not count against the peer; so does
    L{UnhandledCredentials} (no checker for that kind of credentials).

    The user name in the log is the one the client sent, escaped with
    L{sanitise}; passwords are never logged.
    """

    log = Logger()

    def __init__(
        self,
        portal: Portal,
        throttle: LoginThrottle,
        clock: IReactorTime,
        *,
        log: Logger | None = None,
    ) -> None:
        """
        @param portal: the portal that checks credentials and finds avatars.
        @param throttle: remembers failures per peer.
        @param clock: schedules the delayed answer to a failure.
        @param log: where to log; the class's logger by default.
        """
        self.portal = portal
        self.throttle = throttle
        self._clock = clock
        if log is not None:
            self.log = log

    def portalFor(self, peer: str) -> _PeerPortal:
        """
        A portal stand-in bound to one peer, for protocols (Twisted's SMTP,
        POP3 and IMAP4 servers) that call C{self.portal.login(credentials,
        mind, *interfaces)} themselves.

        @param peer: the peer's IP address, as text.
        @return: an object with C{login} and C{listCredentialsInterfaces}.
        """
        return _PeerPortal(self, peer)

    def login(
        self, credentials: Any, peer: str, *interfaces: InterfaceClass, mind: object = None
    ) -> Deferred:
        """
        Log in through the portal.

        @param credentials: the credentials the client offered.
        @param peer: the peer's IP address, as text.
        @param interfaces: the avatar interfaces the protocol accepts.
        @param mind: passed to the portal.
        @return: a L{Deferred} firing with the portal's C{(interface,
            avatar, logout)}, or failing with L{UnauthorizedLogin} after the
            throttle's delay, or with L{TemporaryAuthError} or another error
            at once.  Cancelling it during the delay cancels the delay.
        """
        return Deferred.fromCoroutine(self._login(credentials, peer, interfaces, mind))

    async def _login(
        self, credentials: Any, peer: str, interfaces: tuple[InterfaceClass, ...], mind: object
    ) -> Any:
        user = sanitise(getattr(credentials, "username", ""))
        peerText = sanitise(peer, limit=128)
        try:
            result = await self.portal.login(credentials, mind, *interfaces)
        except UnauthorizedLogin:
            delay = self.throttle.failed(peer)
            self.log.info(
                "login failed user={user} peer={peer}", user=user, peer=peerText, delay=delay
            )
            if delay > 0:
                await deferLater(self._clock, delay)
            raise
        except UnhandledCredentials:
            # The protocol offered a mechanism no checker handles (CRAM-MD5
            # over hashed passwords): a configuration matter, not a guess.
            self.log.warn(
                "login refused user={user} peer={peer}: no checker for {kind}",
                user=user,
                peer=peerText,
                kind=type(credentials).__name__,
            )
            raise
        except TemporaryAuthError as e:
            self.log.warn(
                "login unavailable user={user} peer={peer}: {reason}",
                user=user,
                peer=peerText,
                reason=str(e),
            )
            raise
        except CancelledError:
            raise
        except Exception:
            self.log.failure("login error user={user} peer={peer}", user=user, peer=peerText)
            raise
        self.throttle.succeeded(peer)
        self.log.info("login user={user} peer={peer}", user=user, peer=peerText)
        return result
