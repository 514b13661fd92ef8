# -*- test-case-name: tests.auth.test_checkers -*-
"""
The credential checkers mailhub ships: plain C{twisted.cred}
L{ICredentialsChecker} providers for L{IUsernamePassword}, so any
third-party checker plugs into the same portal.

  - L{PasswordFileChecker}: the users file (hashed passwords).
  - L{HTTPChecker}: asks an HTTPS password service.
  - L{MemoryChecker}: a dictionary, for tests and embedding.

Contract shared by all three:

  - The user name is an address; it is decoded as UTF-8 (when it comes as
    C{bytes}, as Twisted's mail protocols send it) and lower-cased.
  - The avatar id is that canonical lower-case address as C{str} (the
    realm also accepts C{bytes}, see L{mailhub.auth.realm.avatarAddress}).
  - A wrong password and an unknown user fail alike, with
    L{UnauthorizedLogin} and the same message (L{REFUSED}).
  - A check that could not be made (unreadable users file, password service
    down or answering nonsense, too many logins being checked at once)
    fails with
    L{TemporaryAuthError}: the protocol answers "try again later", and the
    throttle does not count it.
  - Passwords are never logged.
"""

from __future__ import annotations

import hmac
import ipaddress
import threading
from typing import TYPE_CHECKING, Any, Callable, Mapping, TypeVar
from urllib.parse import urlsplit

from treq.client import HTTPClient
from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import (
    CancelledError,
    Deferred,
    DeferredSemaphore,
    TimeoutError,
    fail,
    succeed,
)
from twisted.internet.protocol import Protocol
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import Agent, HTTPConnectionPool, ResponseDone
from twisted.web.http import PotentialDataLoss
from zope.interface import implementer

from mailhub.auth import passwords
from mailhub.auth.passwords import verifyPassword
from mailhub.auth.throttle import sanitise
from mailhub.errors import TemporaryAuthError

if TYPE_CHECKING:
    from mailhub.auth.userfile import UserFile

_T = TypeVar("_T")

#: The one message of every refused login, whatever the reason.
REFUSED = "Invalid user name or password"

#: The most password verifications a checker runs at once (each Argon2
#: verification holds a thread and 64 MiB for a tenth of a second or more).
MAX_CONCURRENT = 4

#: The most verifications a checker lets wait for a thread; beyond, logins
#: fail with L{TemporaryAuthError} at once.
MAX_WAITING = 256

#: Host names a plain C{http://} password service URL may use.
LOOPBACK_NAMES = frozenset({"localhost"})


def canonicalUsername(username: bytes | str) -> str | None:
    """
    The lookup form of a user name: text, lower case.

    @param username: as the protocol received it.
    @return: the lower-cased address, or C{None} if C{bytes} that are not
        UTF-8 (no such user can exist).
    """
    if isinstance(username, bytes):
        try:
            username = username.decode("utf-8")
        except UnicodeDecodeError:
            return None
    return username.lower()


def _passwordBytes(password: bytes | str) -> bytes:
    if isinstance(password, str):
        return password.encode("utf-8", "surrogateescape")
    return password


def _passwordText(password: bytes | str) -> str:
    """
    The password as L{verifyPassword} takes it: text, bytes that are not
    UTF-8 kept as lone surrogates (which it turns back into those bytes).
    """
    if isinstance(password, bytes):
        return password.decode("utf-8", "surrogateescape")
    return password


def _verify(stored: str | None, password: str) -> bool:
    """
    Verify C{password} against C{stored}, or, for a user who does not
    exist (C{stored} is C{None}), against L{DUMMY_HASH} to spend the same
    time, and answer C{False}.  Blocking: runs in a thread.

    L{DUMMY_HASH} is made on first use (a hashing, so here, off the reactor
    thread), not when this module is imported.
    """
    if stored is None:
        verifyPassword(passwords.DUMMY_HASH, password)
        return False
    return verifyPassword(stored, password)


class _Worker:
    """
    Runs blocking checks in a thread pool, at most C{maxConcurrent} at a
    time, or synchronously when there is no reactor.

    Each Argon2 verification holds 64 MiB and a thread for a tenth of a
    second or more, and the reactor's thread pool also resolves host names:
    a burst of logins must neither exhaust memory nor starve it.  Beyond
    C{maxWaiting} queued checks a login fails at once with
    L{TemporaryAuthError}.
    """

    def __init__(self, reactor: Any, threadpool: Any, maxConcurrent: int, maxWaiting: int) -> None:
        if maxConcurrent < 1 or maxWaiting < 0:
            raise ValueError("maxConcurrent must be at least 1 and maxWaiting not negative")
        self._reactor = reactor
        self._threadpool = threadpool
        self._semaphore = DeferredSemaphore(maxConcurrent)
        self._maxWaiting = maxWaiting

    @property
    def running(self) -> int:
        """
        How many checks hold a thread now.
        """
        return self._semaphore.limit - self._semaphore.tokens

    async def run(self, f: Callable[..., _T], *args: Any) -> _T:
        """
        Call C{f(*args)} in the thread pool.

        @raise TemporaryAuthError: too many checks are waiting already.
        """
        if self._reactor is None:
            return f(*args)
        if not self._semaphore.tokens and len(self._semaphore.waiting) >= self._maxWaiting:
            raise TemporaryAuthError("too many logins being checked at once")
        await self._semaphore.acquire()
        try:
            pool = self._threadpool
            if pool is None:
                pool = self._reactor.getThreadPool()
            work = deferToThreadPool(self._reactor, pool, f, *args)
        except BaseException:
            self._semaphore.release()
            raise

        def release(result: object) -> object:
            self._semaphore.release()
            return result

        work.addBoth(release)
        # A thread cannot be stopped: if the login is cancelled, stop
        # waiting for it but keep its slot until it is done.
        result: Deferred[_T] = Deferred()
        work.chainDeferred(result)
        return await result


class _ThreadedChecker:
    """
    What the file and memory checkers share: blocking work in a L{_Worker},
    whatever goes wrong there logged and reported as L{TemporaryAuthError}.
    """

    log = Logger()
    _worker: _Worker

    async def _inThread(self, address: str | None, f: Callable[..., _T], *args: Any) -> _T:
        try:
            return await self._worker.run(f, *args)
        except (TemporaryAuthError, CancelledError):
            raise
        except Exception:
            # The thread pool is gone, the file system failed, out of
            # memory: not a wrong password.
            self.log.failure(
                "cannot check the password of user={user}", user=sanitise(address or "")
            )
            raise TemporaryAuthError("the password cannot be checked now")


@implementer(ICredentialsChecker)
class PasswordFileChecker(_ThreadedChecker):
    """
    Checks user names and passwords against the users file.

    The lookup (a C{stat} of the file, and a re-read after it changed) and
    the verification of the password hash both run in a thread pool, never
    on the reactor thread; this checker's lookups are serialised with a
    lock, since L{UserFile} reloads itself without one.  An unknown user is
    verified against L{DUMMY_HASH}, so it takes as long as a wrong password
    and fails the same way.

    A login never rewrites the file, not even to re-hash a password stored
    with an imported scheme (bcrypt, SHA512-CRYPT; see L{needsRehash}): the
    C{mailhub user} command edits the same file, and two writers would
    race.  Re-hashing happens when the operator sets the password.

    @ivar users: the users file.
    """

    credentialInterfaces = (IUsernamePassword,)
    log = Logger()

    def __init__(
        self,
        users: UserFile,
        reactor: Any,
        threadpool: Any = None,
        *,
        maxConcurrent: int = MAX_CONCURRENT,
        maxWaiting: int = MAX_WAITING,
    ) -> None:
        """
        @param users: the users file, with C{lookup(address)}.
        @param reactor: an L{IReactorFromThreads} (results come back through
            C{callFromThread}); also an L{IReactorThreads} when no
            C{threadpool} is given.
        @param threadpool: where to look up and verify: anything with
            C{callInThreadWithCallback}, like a L{ThreadPool}; the reactor's
            thread pool (asked for at the first login) by default.
        @param maxConcurrent: the most checks running at once.
        @param maxWaiting: the most checks waiting for a thread; beyond, a
            login fails at once with L{TemporaryAuthError}.
        """
        self.users = users
        self._lookupLock = threading.Lock()
        self._worker = _Worker(reactor, threadpool, maxConcurrent, maxWaiting)

    def requestAvatarId(self, credentials: IUsernamePassword) -> Deferred[str]:
        """
        Check a user name and password.

        @param credentials: an L{IUsernamePassword} provider.
        @return: a L{Deferred} firing with the user's lower-case address, or
            failing with L{UnauthorizedLogin} or L{TemporaryAuthError}.
        """
        return Deferred.fromCoroutine(self._check(credentials))

    async def _check(self, credentials: IUsernamePassword) -> str:
        address = canonicalUsername(credentials.username)
        password = _passwordText(credentials.password)
        avatarId = await self._inThread(address, self._lookUpAndVerify, address, password)
        if avatarId is None:
            raise UnauthorizedLogin(REFUSED)
        return avatarId

    def _lookUpAndVerify(self, address: str | None, password: str) -> str | None:
        """
        Blocking: runs in a thread.

        @return: the avatar id, or C{None} if the user is unknown or the
            password wrong.
        """
        entry = None
        if address is not None:
            with self._lookupLock:
                entry = self.users.lookup(address)
        if entry is None:
            _verify(None, password)
            return None
        if not _verify(entry.password, password):
            return None
        return str(entry.address).lower()


@implementer(ICredentialsChecker)
class MemoryChecker(_ThreadedChecker):
    """
    Checks user names and passwords against a dictionary, for tests and
    for embedding mailhub.

    A value that starts with C{"{"} is a stored hash (C{"{ARGON2ID}$..."},
    as in the users file) and is checked with L{verifyPassword}; any other
    value is the password in plain text, compared in constant time.  (So a
    plain-text password cannot start with C{"{"}.)  When any value is a
    hash, an unknown user is verified against L{DUMMY_HASH}.

    Without a reactor, hashes are verified synchronously, on the calling
    thread; give a reactor (and optionally a thread pool) to verify them in
    a thread pool as L{PasswordFileChecker} does.
    """

    credentialInterfaces = (IUsernamePassword,)
    log = Logger()

    def __init__(
        self, users: Mapping[str, str], *, reactor: Any = None, threadpool: Any = None
    ) -> None:
        """
        @param users: address to password, or to stored hash.  Addresses
            are matched in lower case.
        @param reactor: see L{PasswordFileChecker.__init__}; C{None} to
            verify hashes synchronously.
        @param threadpool: see L{PasswordFileChecker.__init__}.
        """
        self.users = {address.lower(): password for address, password in users.items()}
        self._hashed = any(password.startswith("{") for password in self.users.values())
        self._worker = _Worker(reactor, threadpool, MAX_CONCURRENT, MAX_WAITING)

    def requestAvatarId(self, credentials: IUsernamePassword) -> Deferred[str]:
        """
        Check a user name and password.

        @param credentials: an L{IUsernamePassword} provider.
        @return: a L{Deferred} firing with the user's lower-case address, or
            failing with L{UnauthorizedLogin} or L{TemporaryAuthError}.
        """
        return Deferred.fromCoroutine(self._check(credentials))

    async def _check(self, credentials: IUsernamePassword) -> str:
        address = canonicalUsername(credentials.username)
        stored = None if address is None else self.users.get(address)
        if stored is not None and not stored.startswith("{"):
            if hmac.compare_digest(_passwordBytes(stored), _passwordBytes(credentials.password)):
                assert address is not None
                return address
            raise UnauthorizedLogin(REFUSED)
        if stored is None and not self._hashed:
            raise UnauthorizedLogin(REFUSED)
        password = _passwordText(credentials.password)
        if not await self._inThread(address, _verify, stored, password) or address is None:
            raise UnauthorizedLogin(REFUSED)
        return address


def checkServiceURL(url: str) -> None:
    """
    Refuse a password service URL that would send passwords in the clear.

    C{https://} is accepted (the certificate is verified when connecting);
    C{http://} only to a loopback address: C{127.0.0.0/8}, C{::1} or
    C{localhost}.

    @param url: the URL.
    @raise ValueError: saying what is wrong, for the caller to turn into a
        L{mailhub.errors.ConfigError}.
    """
    try:
        parts = urlsplit(url)
        parts.port  # raises ValueError for a bad port
    except ValueError as e:
        raise ValueError(f"not a URL: {e}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise ValueError("the password service URL must start with https://")
    host = parts.hostname
    if not host:
        raise ValueError("the password service URL has no host")
    if scheme == "http" and not isLoopback(host):
        raise ValueError(
            "plain http:// would send passwords in the clear: use https://"
            " (http:// is allowed only to 127.0.0.0/8, ::1 or localhost)"
        )


def isLoopback(host: str) -> bool:
    """
    @param host: a host name or IP address (IPv6 without brackets).
    @return: whether C{host} is C{localhost}, in C{127.0.0.0/8} or C{::1}.
    """
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _redacted(url: str) -> str:
    """
    The URL without any user name, password, query or fragment, for logs.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port is not None else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


class _Drain(Protocol):
    """
    Reads a response body and throws it away.

    @ivar done: fires when the body has been read; cancelling it stops
        reading (and so closes the connection).
    """

    def __init__(self) -> None:
        self.done: Deferred[None] = Deferred(self._stop)

    def _stop(self, done: Deferred[None]) -> None:
        if self.transport is not None:
            self.transport.stopProducing()

    def dataReceived(self, data: bytes) -> None:
        pass

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        if reason is None or reason.check(ResponseDone, PotentialDataLoss):
            self.done.callback(None)
        else:
            self.done.errback(reason)


def _timedOut(result: object, timeout: float) -> None:
    """
    Whatever a timed-out request ended with, report the timeout.
    """
    raise TimeoutError(timeout, "password service")


@implementer(ICredentialsChecker)
class HTTPChecker:
    """
    Asks a password service over HTTPS.

    The request is C{POST url} with a JSON body (C{Content-Type:
    application/json}, UTF-8)::

        {"username": "alice@example.test", "password": "secret"}

    where the user name is the canonical lower-case address.  The answer's
    status decides, its body is read and ignored:

      - C{2xx}: accepted; the avatar id is that user name.
      - C{401}, C{403}: L{UnauthorizedLogin}.
      - anything else (redirects are not followed), a connection error, or
        no complete answer within C{timeout} seconds: L{TemporaryAuthError}.

    Certificates are verified (Twisted's C{BrowserLikePolicyForHTTPS});
    connections are kept open between checks (L{close} closes them).
    The password is never logged, nor the URL's user name, password or
    query.

    @ivar url: the password service URL.
    """

    credentialInterfaces = (IUsernamePassword,)
    log = Logger()

    def __init__(self, url: str, reactor: Any, *, timeout: float = 5.0, client: Any = None) -> None:
        """
        @param url: an C{https://} URL, or C{http://} to a loopback address.
        @param reactor: the reactor (an L{IReactorTime}; also what the
            default client connects with).
        @param timeout: seconds to wait for a complete answer.
        @param client: a C{treq} L{HTTPClient} (or anything with its
            C{post}); by default one over an L{Agent} with a persistent
            connection pool on C{reactor}.
        @raise ValueError: if C{url} is not acceptable (see
            L{checkServiceURL}) or C{timeout} is not positive.
        """
        checkServiceURL(url)
        if not timeout > 0:
            raise ValueError("the password service timeout must be positive")
        self.url = url
        self._where = _redacted(url)
        self._reactor = reactor
        self._timeout = timeout
        self._pool = None
        if client is None:
            self._pool = HTTPConnectionPool(reactor, persistent=True)
            client = HTTPClient(Agent(reactor, pool=self._pool))
        self._client = client

    def close(self) -> Deferred[None]:
        """
        Close the connections kept open to the password service.

        @return: a L{Deferred} that fires once they are closed.
        """
        if self._pool is None:
            return succeed(None)
        return self._pool.closeCachedConnections()

    def requestAvatarId(self, credentials: IUsernamePassword) -> Deferred[str]:
        """
        Ask the password service.

        @param credentials: an L{IUsernamePassword} provider.
        @return: a L{Deferred} firing with the user's lower-case address, or
            failing with L{UnauthorizedLogin} or L{TemporaryAuthError} (or
            L{CancelledError} if the caller cancels it).
        """
        username = canonicalUsername(credentials.username)
        password = credentials.password
        if isinstance(password, bytes):
            try:
                password = password.decode("utf-8")
            except UnicodeDecodeError:
                password = None
        if username is None or password is None:
            # JSON carries text: such a user or password cannot exist there.
            return fail(UnauthorizedLogin(REFUSED))
        d = Deferred.fromCoroutine(self._ask(username, password))
        d.addTimeout(self._timeout, self._reactor, onTimeoutCancel=_timedOut)
        d.addErrback(self._classify, username)
        return d

    async def _ask(self, username: str, password: str) -> str:
        response = await self._client.post(
            self.url,
            json={"username": username, "password": password},
            headers={"Accept": ["application/json"]},
            allow_redirects=False,
            unbuffered=True,
            reactor=self._reactor,
        )
        drain = _Drain()
        response.deliverBody(drain)
        await drain.done
        if 200 <= response.code < 300:
            return username
        if response.code in (401, 403):
            raise UnauthorizedLogin(REFUSED)
        raise TemporaryAuthError(f"the password service answered {response.code}")

    def _classify(self, failure: Failure, username: str) -> Failure:
        """
        Let refusals and cancellation through; log anything else and turn it
        into L{TemporaryAuthError}.
        """
        if failure.check(UnauthorizedLogin, CancelledError):
            return failure
        if failure.check(TimeoutError):
            reason = f"no answer within {self._timeout:g} seconds"
        elif failure.check(TemporaryAuthError):
            reason = str(failure.value)
        else:
            reason = f"{failure.type.__name__}: {failure.getErrorMessage()}"
        self.log.warn(
            "password service {where} failed for user={user}: {reason}",
            where=self._where,
            user=sanitise(username),
            reason=reason,
        )
        if failure.check(TemporaryAuthError):
            return failure
        return Failure(TemporaryAuthError(f"the password service failed: {reason}"))
