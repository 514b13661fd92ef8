"""
Tests for L{mailhub.auth.checkers}: the users file, in-memory and HTTP
credential checkers.

Everything runs on stand-ins (a L{Clock}, a thread pool that runs work when
told, a fake HTTP client) except L{HTTPCheckerServerTests}, which talks to
a real C{twisted.web} server on 127.0.0.1 through the real reactor.
"""

from __future__ import annotations

import datetime
import json
import os
import threading
from typing import Any, Callable

import bcrypt
from argon2 import PasswordHasher, Type
from treq.client import HTTPClient
from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet import reactor
from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.error import ConnectionLost, ConnectionRefusedError
from twisted.internet.interfaces import IReactorFromThreads, IReactorThreads
from twisted.internet.ssl import Certificate
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import Logger, formatEvent
from twisted.protocols.policies import WrappingFactory
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web import server
from twisted.web.client import Agent, BrowserLikePolicyForHTTPS, HTTPConnectionPool, ResponseDone
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers
from twisted.web.iweb import IResponse
from twisted.web.resource import Resource
from zope.interface import implementer
from zope.interface.verify import verifyObject

from mailhub.auth import checkers, passwords
from mailhub.auth.checkers import (
    REFUSED,
    HTTPChecker,
    MemoryChecker,
    PasswordFileChecker,
    checkServiceURL,
)
from mailhub.auth.passwords import hashPassword
from mailhub.auth.userfile import UserEntry, UserFile
from mailhub.errors import TemporaryAuthError
from mailhub.tls import ensureCertificate, serverContextFactory

#: A cheap Argon2id hasher, so that tests hash in milliseconds.
CHEAP_HASHER = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1, type=Type.ID)

ALICE = "alice@example.test"


def useCheapHasher(case: SynchronousTestCase) -> None:
    """
    Make L{passwords.DUMMY_HASH} (and default hashes) cheap for this test.
    """
    case.patch(passwords, "HASHER", CHEAP_HASHER)


def login(checker: ICredentialsChecker, username: bytes | str, password: bytes | str) -> Deferred:
    """
    Ask C{checker} about a user name and password.
    """
    return checker.requestAvatarId(UsernamePassword(username, password))


class VerifySpy:
    """
    Stands in for L{verifyPassword}: a stored value C{"{TEST}pw"} matches
    the password C{pw}; records every call and the thread it ran on.
    """

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.threads: list[int] = []

    def __call__(self, stored: str, password: str) -> bool:
        self.calls.append((stored, password))
        self.threads.append(threading.get_ident())
        return stored == "{TEST}" + password


@implementer(IReactorThreads)
class ImmediateThreadsReactor:
    """
    A reactor stand-in: C{callFromThread} runs the call at once, and
    C{getThreadPool} hands out C{pool}.
    """

    def __init__(self, pool: Any = None) -> None:
        self.pool = pool
        self.poolsAskedFor = 0

    def callFromThread(self, f: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        f(*args, **kwargs)

    def callInThread(self, f: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        self.pool.callInThreadWithCallback(None, f, *args, **kwargs)

    def getThreadPool(self) -> Any:
        self.poolsAskedFor += 1
        return self.pool

    def suggestThreadPoolSize(self, size: int) -> None:
        pass


@implementer(IReactorFromThreads)
class ThreadCallRecorder:
    """
    A reactor stand-in for a real thread pool: C{callFromThread} records
    the call; the test runs the calls on its own thread.
    """

    def __init__(self) -> None:
        self.calls: list[tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]] = []
        self.condition = threading.Condition()

    def callFromThread(self, f: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        with self.condition:
            self.calls.append((f, args, kwargs))
            self.condition.notify_all()

    def runCallsWhenThere(self, count: int, timeout: float = 30) -> None:
        with self.condition:
            if not self.condition.wait_for(lambda: len(self.calls) >= count, timeout):
                raise AssertionError("the worker thread never answered")
            calls, self.calls = self.calls, []
        for f, args, kwargs in calls:
            f(*args, **kwargs)


class ManualThreadPool:
    """
    A thread pool stand-in (C{callInThreadWithCallback}, as
    L{deferToThreadPool} uses it): work waits until the test runs it, on
    the test's thread, unless C{immediate}.
    """

    def __init__(self, immediate: bool = False) -> None:
        self.immediate = immediate
        self.queue: list[tuple[Any, Callable[..., Any], tuple[Any, ...], dict[str, Any]]] = []
        self.submitted = 0

    def callInThreadWithCallback(
        self, onResult: Any, f: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> None:
        self.submitted += 1
        self.queue.append((onResult, f, args, kwargs))
        if self.immediate:
            self.runAll()

    def runOne(self) -> None:
        onResult, f, args, kwargs = self.queue.pop(0)
        try:
            result = f(*args, **kwargs)
        except BaseException:
            ok, result = False, Failure()
        else:
            ok = True
        if onResult is not None:
            onResult(ok, result)

    def runAll(self) -> None:
        while self.queue:
            self.runOne()


class FakeUserFile:
    """
    Stands in for L{UserFile}: entries from a dictionary, lookups recorded,
    optionally failing.
    """

    def __init__(self, stored: dict[str, str], error: Exception | None = None) -> None:
        self.entries = {address: UserEntry(address, stored) for address, stored in stored.items()}
        self.error = error
        self.lookups: list[tuple[str, int]] = []

    def lookup(self, address: str) -> UserEntry | None:
        self.lookups.append((address, threading.get_ident()))
        if self.error is not None:
            raise self.error
        return self.entries.get(address.lower())


class PasswordFileCheckerTests(SynchronousTestCase):
    """
    L{PasswordFileChecker} checks against the users file, off the reactor
    thread, and treats unknown users like wrong passwords.
    """

    def setUp(self) -> None:
        useCheapHasher(self)
        self.spy = VerifySpy()
        self.patch(checkers, "verifyPassword", self.spy)
        self.users = FakeUserFile({ALICE: "{TEST}secret"})
        self.pool = ManualThreadPool(immediate=True)
        self.reactor = ImmediateThreadsReactor(self.pool)
        self.checker = PasswordFileChecker(self.users, self.reactor, self.pool)

    def check(self, username: bytes | str, password: bytes | str) -> Deferred[str]:
        return self.checker.requestAvatarId(UsernamePassword(username, password))

    def test_interfaces(self) -> None:
        """
        The checker and the reactor stand-ins provide their interfaces.
        """
        self.assertTrue(verifyObject(ICredentialsChecker, self.checker))
        self.assertTrue(verifyObject(IReactorThreads, self.reactor))
        self.assertTrue(verifyObject(IReactorFromThreads, ThreadCallRecorder()))

    def test_accepts(self) -> None:
        """
        The right password gives the lower-case address as a C{str}, whatever
        the case and type of the user name.
        """
        for username in (b"Alice@Example.TEST", "alice@example.test", "ALICE@EXAMPLE.TEST"):
            self.assertEqual(self.successResultOf(self.check(username, b"secret")), ALICE)
        self.assertEqual(self.successResultOf(self.check(ALICE, "secret")), ALICE)
        self.assertEqual(self.users.lookups[0][0], ALICE)
        self.assertEqual(self.spy.calls[0], ("{TEST}secret", "secret"))

    def test_wrongPassword(self) -> None:
        """
        A wrong password fails with L{UnauthorizedLogin}.
        """
        failure = self.failureResultOf(self.check(ALICE, b"guess"), UnauthorizedLogin)
        self.assertEqual(str(failure.value), REFUSED)

    def test_unknownUserVerifiesDummyHash(self) -> None:
        """
        An unknown user is verified against L{passwords.DUMMY_HASH}, and
        fails exactly like a wrong password.
        """
        unknown = self.failureResultOf(
            self.check(b"mallory@example.test", b"secret"), UnauthorizedLogin
        )
        wrong = self.failureResultOf(self.check(ALICE, b"guess"), UnauthorizedLogin)
        self.assertEqual(self.spy.calls[0], (passwords.DUMMY_HASH, "secret"))
        self.assertEqual(
            (type(unknown.value), str(unknown.value)), (type(wrong.value), str(wrong.value))
        )

    def test_undecodableUserName(self) -> None:
        """
        A user name that is not UTF-8 names nobody: no lookup, but the dummy
        hash is verified all the same.
        """
        self.failureResultOf(self.check(b"\xff@example.test", b"secret"), UnauthorizedLogin)
        self.assertEqual(self.users.lookups, [])
        self.assertEqual(self.spy.calls, [(passwords.DUMMY_HASH, "secret")])

    def test_passwordAsText(self) -> None:
        """
        The password reaches L{verifyPassword} as text: UTF-8 decoded, other
        bytes kept as lone surrogates (which it turns back into the bytes).
        """
        for password in ("s\xe9cret".encode(), b"s\xe9cret"):
            self.failureResultOf(self.check(ALICE, password), UnauthorizedLogin)
        self.assertEqual(
            [password for _, password in self.spy.calls], ["s\xe9cret", "s\udce9cret"]
        )

    def test_lookupFailsTemporarily(self) -> None:
        """
        A users file that cannot be read is a temporary failure, logged, and
        no password is verified.
        """
        self.users.error = OSError(5, "Input/output error")
        self.failureResultOf(self.check(ALICE, b"secret"), TemporaryAuthError)
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)
        self.assertEqual(self.spy.calls, [])

    def test_threadPoolGoneTemporarily(self) -> None:
        """
        A thread pool that refuses work is a temporary failure, logged.
        """

        class StoppedPool:
            def callInThreadWithCallback(self, *args: Any, **kwargs: Any) -> None:
                raise RuntimeError("the thread pool is stopped")

        checker = PasswordFileChecker(self.users, self.reactor, StoppedPool())
        self.failureResultOf(login(checker, ALICE, b"secret"), TemporaryAuthError)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual(checker._worker.running, 0)

    def test_reactorThreadPoolByDefault(self) -> None:
        """
        Without a thread pool the reactor's is used, asked for at the first
        login (not at construction).
        """
        checker = PasswordFileChecker(self.users, self.reactor)
        self.assertEqual(self.reactor.poolsAskedFor, 0)
        self.assertEqual(self.successResultOf(login(checker, ALICE, b"secret")), ALICE)
        self.assertEqual(self.reactor.poolsAskedFor, 1)
        self.assertEqual(self.pool.submitted, 1)

    def test_offTheCallingThread(self) -> None:
        """
        On a real thread pool, the lookup and the verification run on a
        worker thread, and the answer comes back only through the
        reactor's C{callFromThread}.
        """
        pool = ThreadPool(minthreads=1, maxthreads=1, name="test_offTheCallingThread")
        pool.start()
        self.addCleanup(pool.stop)
        recorder = ThreadCallRecorder()
        checker = PasswordFileChecker(self.users, recorder, pool)
        d = checker.requestAvatarId(UsernamePassword(ALICE, b"secret"))
        self.assertNoResult(d)
        recorder.runCallsWhenThere(1)
        self.assertEqual(self.successResultOf(d), ALICE)
        here = threading.get_ident()
        self.assertNotEqual(self.spy.threads, [here])
        self.assertEqual(len(self.spy.threads), 1)
        self.assertNotEqual(self.users.lookups[0][1], here)

    def test_concurrencyBounded(self) -> None:
        """
        At most C{maxConcurrent} checks hold a thread; C{maxWaiting} more
        wait for one; beyond that a login fails at once, temporarily.
        """
        pool = ManualThreadPool()
        checker = PasswordFileChecker(self.users, self.reactor, pool, maxConcurrent=2, maxWaiting=1)
        ds = [checker.requestAvatarId(UsernamePassword(ALICE, b"secret")) for _ in range(3)]
        self.assertEqual(pool.submitted, 2)
        self.failureResultOf(login(checker, ALICE, b"secret"), TemporaryAuthError)
        pool.runOne()
        self.assertEqual(self.successResultOf(ds[0]), ALICE)
        self.assertEqual(pool.submitted, 3)
        pool.runAll()
        for d in ds[1:]:
            self.assertEqual(self.successResultOf(d), ALICE)
        self.assertEqual(checker._worker.running, 0)

    def test_cancelKeepsSlotUntilThreadDone(self) -> None:
        """
        Cancelling a login whose check is running answers at once, but the
        thread's slot is freed only when the thread is done.
        """
        pool = ManualThreadPool()
        checker = PasswordFileChecker(self.users, self.reactor, pool, maxConcurrent=1)
        first = checker.requestAvatarId(UsernamePassword(ALICE, b"secret"))
        first.cancel()
        self.failureResultOf(first, CancelledError)
        second = checker.requestAvatarId(UsernamePassword(ALICE, b"secret"))
        self.assertEqual(pool.submitted, 1)
        pool.runOne()
        self.assertEqual(pool.submitted, 2)
        pool.runOne()
        self.assertEqual(self.successResultOf(second), ALICE)

    def test_cancelWhileWaiting(self) -> None:
        """
        Cancelling a login that waits for a thread gives up its place.
        """
        pool = ManualThreadPool()
        checker = PasswordFileChecker(self.users, self.reactor, pool, maxConcurrent=1)
        first = checker.requestAvatarId(UsernamePassword(ALICE, b"secret"))
        waiting = checker.requestAvatarId(UsernamePassword(ALICE, b"secret"))
        waiting.cancel()
        self.failureResultOf(waiting, CancelledError)
        pool.runAll()
        self.assertEqual(self.successResultOf(first), ALICE)
        self.assertEqual(pool.submitted, 1)

    def test_badLimits(self) -> None:
        """
        Nonsense limits are refused.
        """
        for limits in ({"maxConcurrent": 0}, {"maxWaiting": -1}):
            self.assertRaises(ValueError, PasswordFileChecker, self.users, self.reactor, **limits)


class PasswordFileCheckerFileTests(SynchronousTestCase):
    """
    L{PasswordFileChecker} over a real L{UserFile} and the real
    L{verifyPassword}.
    """

    def setUp(self) -> None:
        useCheapHasher(self)
        self.path = self.mktemp()
        bcryptHash = bcrypt.hashpw(b"old secret", bcrypt.gensalt(4)).decode("ascii")
        with open(self.path, "w") as f:
            f.write("# users\n")
            f.write(f"{ALICE}:{hashPassword('secret')}\n")
            f.write(f"bob@example.test:{{BLF-CRYPT}}{bcryptHash}\n")
        pool = ManualThreadPool(immediate=True)
        self.users = UserFile(self.path)
        self.checker = PasswordFileChecker(self.users, ImmediateThreadsReactor(pool), pool)

    def test_realHashes(self) -> None:
        """
        Argon2id and imported bcrypt hashes verify; wrong passwords and
        unknown users do not.
        """
        checker = self.checker
        accepted = login(checker, b"Alice@example.test", b"secret")
        self.assertEqual(self.successResultOf(accepted), ALICE)
        self.assertEqual(
            self.successResultOf(login(checker, b"bob@example.test", b"old secret")),
            "bob@example.test",
        )
        self.failureResultOf(login(checker, ALICE, b"old secret"), UnauthorizedLogin)
        self.failureResultOf(login(checker, b"carol@example.test", b"x"), UnauthorizedLogin)

    def test_fileNeverRewritten(self) -> None:
        """
        Logging in, even with a hash that needs re-hashing, leaves the file
        as it was: the C{mailhub user} command is its only writer.
        """
        directory = os.path.dirname(os.path.abspath(self.path))
        with open(self.path, "rb") as f:
            before = f.read()
        info = os.stat(self.path)
        names = sorted(os.listdir(directory))
        self.assertTrue(passwords.needsRehash(self.users.lookup("bob@example.test").password))
        self.successResultOf(login(self.checker, b"bob@example.test", b"old secret"))
        with open(self.path, "rb") as f:
            self.assertEqual(f.read(), before)
        after = os.stat(self.path)
        self.assertEqual((after.st_ino, after.st_mtime_ns), (info.st_ino, info.st_mtime_ns))
        self.assertEqual(sorted(os.listdir(directory)), names)


class MemoryCheckerTests(SynchronousTestCase):
    """
    L{MemoryChecker} checks against a dictionary of plain-text passwords or
    stored hashes.
    """

    def setUp(self) -> None:
        useCheapHasher(self)
        self.spy = VerifySpy()

    check = staticmethod(login)

    def test_interface(self) -> None:
        """
        The checker provides L{ICredentialsChecker}.
        """
        self.assertTrue(verifyObject(ICredentialsChecker, MemoryChecker({})))

    def test_plainText(self) -> None:
        """
        Plain-text passwords: the right one gives the lower-case address;
        a wrong one or an unknown user is refused alike; no hash is
        verified.
        """
        self.patch(checkers, "verifyPassword", self.spy)
        checker = MemoryChecker({"Alice@Example.TEST": "s\xe9cret"})
        utf8 = "s\xe9cret".encode()
        accepted = self.check(checker, b"ALICE@example.test", utf8)
        self.assertEqual(self.successResultOf(accepted), ALICE)
        self.assertEqual(self.successResultOf(self.check(checker, ALICE, "s\xe9cret")), ALICE)
        wrong = self.failureResultOf(self.check(checker, ALICE, b"secret"), UnauthorizedLogin)
        unknown = self.failureResultOf(
            self.check(checker, b"bob@example.test", b"x"), UnauthorizedLogin
        )
        self.failureResultOf(self.check(checker, b"\xff", b"x"), UnauthorizedLogin)
        self.assertEqual(str(wrong.value), REFUSED)
        self.assertEqual(str(unknown.value), REFUSED)
        self.assertEqual(self.spy.calls, [])

    def test_storedHashes(self) -> None:
        """
        A value starting with C{"{"} is a stored hash, checked with
        L{verifyPassword}; with hashes about, an unknown user is verified
        against L{passwords.DUMMY_HASH}.
        """
        self.patch(checkers, "verifyPassword", self.spy)
        checker = MemoryChecker({ALICE: "{TEST}secret", "bob@example.test": "plain"})
        self.assertEqual(self.successResultOf(self.check(checker, ALICE, b"secret")), ALICE)
        self.failureResultOf(self.check(checker, ALICE, b"guess"), UnauthorizedLogin)
        self.failureResultOf(
            self.check(checker, b"carol@example.test", b"guess"), UnauthorizedLogin
        )
        self.assertEqual(
            self.spy.calls,
            [
                ("{TEST}secret", "secret"),
                ("{TEST}secret", "guess"),
                (passwords.DUMMY_HASH, "guess"),
            ],
        )

    def test_realHash(self) -> None:
        """
        A real Argon2id hash from L{hashPassword} verifies.
        """
        checker = MemoryChecker({ALICE: hashPassword("secret")})
        self.assertEqual(self.successResultOf(self.check(checker, ALICE, b"secret")), ALICE)
        self.failureResultOf(self.check(checker, ALICE, b"Secret"), UnauthorizedLogin)

    def test_threaded(self) -> None:
        """
        Given a reactor and a thread pool, hashes are verified there.
        """
        self.patch(checkers, "verifyPassword", self.spy)
        pool = ManualThreadPool()
        checker = MemoryChecker(
            {ALICE: "{TEST}secret"}, reactor=ImmediateThreadsReactor(pool), threadpool=pool
        )
        d = self.check(checker, ALICE, b"secret")
        self.assertNoResult(d)
        self.assertEqual(self.spy.calls, [])
        pool.runAll()
        self.assertEqual(self.successResultOf(d), ALICE)


@implementer(IResponse)
class FakeResponse:
    """
    An L{IResponse} with a status and a body, delivered at once; the body
    ends with C{reason}.
    """

    version = (b"HTTP", 1, 1)
    phrase = b"Whatever"
    request = None
    previousResponse = None

    def __init__(self, code: int, body: bytes = b"{}", reason: Exception | None = None) -> None:
        self.code = code
        self.headers = Headers()
        self.length = len(body)
        self.body = body
        self.reason = reason or ResponseDone()

    def deliverBody(self, protocol: Any) -> None:
        protocol.makeConnection(StringTransport())
        protocol.dataReceived(self.body)
        protocol.connectionLost(Failure(self.reason))

    def setPreviousResponse(self, response: Any) -> None:
        self.previousResponse = response


class FakeHTTPClient:
    """
    Stands in for a C{treq} L{HTTPClient}: records each C{post} and answers
    with the next scripted result (a response, an exception, or C{None}
    for an answer that never comes).
    """

    def __init__(self, *answers: Any) -> None:
        self.answers = list(answers)
        self.posts: list[tuple[str, dict[str, Any]]] = []
        self.pending: list[Deferred[Any]] = []
        self.cancelled = 0

    def post(self, url: str, **kwargs: Any) -> Deferred[Any]:
        self.posts.append((url, kwargs))
        answer = self.answers.pop(0)
        if answer is None:

            def cancel(d: Deferred[Any]) -> None:
                self.cancelled += 1

            d: Deferred[Any] = Deferred(cancel)
            self.pending.append(d)
            return d
        if isinstance(answer, Exception):
            return fail(answer)
        return succeed(answer)


class ServiceURLTests(SynchronousTestCase):
    """
    L{checkServiceURL} and L{HTTPChecker} refuse URLs that would send
    passwords in the clear.
    """

    def test_accepted(self) -> None:
        """
        C{https://} anywhere; C{http://} to loopback addresses.
        """
        for url in (
            "https://auth.example.test/check",
            "HTTPS://auth.example.test:8443/",
            "https://203.0.113.5/check",
            "http://127.0.0.1/check",
            "http://127.8.9.10:8080/check",
            "http://[::1]:8080/check",
            "http://localhost/check",
            "http://LocalHost:80/check",
        ):
            checkServiceURL(url)
            HTTPChecker(url, Clock(), client=FakeHTTPClient())

    def test_refused(self) -> None:
        """
        C{http://} elsewhere, other schemes, no host, a bad port: all
        L{ValueError}, raised when the checker is made.
        """
        for url in (
            "http://auth.example.test/check",
            "http://10.0.0.1/check",
            "http://128.0.0.1/check",
            "http://localhost.example.test/check",
            "http://[::ffff:127.0.0.1]/check",
            "http://[::2]/check",
            "ftp://127.0.0.1/check",
            "auth.example.test/check",
            "",
            "https:///check",
            "https://auth.example.test:port/",
            "https://[::1/",
        ):
            self.assertRaises(ValueError, checkServiceURL, url)
            self.assertRaises(ValueError, HTTPChecker, url, Clock(), client=FakeHTTPClient())

    def test_badTimeout(self) -> None:
        """
        The timeout must be positive.
        """
        for timeout in (0.0, -1.0):
            self.assertRaises(
                ValueError,
                HTTPChecker,
                "https://a.test/",
                Clock(),
                timeout=timeout,
                client=FakeHTTPClient(),
            )


class HTTPCheckerUnitTests(SynchronousTestCase):
    """
    L{HTTPChecker} with a fake client and a L{Clock}.
    """

    URL = "https://svc:token@auth.example.test/check?key=abc"

    def setUp(self) -> None:
        self.clock = Clock()
        self.events: list[dict[str, Any]] = []

    def makeChecker(
        self, *answers: Any, timeout: float = 5.0
    ) -> tuple[HTTPChecker, FakeHTTPClient]:
        client = FakeHTTPClient(*answers)
        checker = HTTPChecker(self.URL, self.clock, timeout=timeout, client=client)
        checker.log = Logger(observer=self.events.append)
        return checker, client

    def check(
        self,
        checker: HTTPChecker,
        username: bytes | str = b"Alice@Example.TEST",
        password: bytes | str = b"s3cret-pw",
    ) -> Deferred[str]:
        return login(checker, username, password)

    def assertPasswordNotLogged(self) -> None:
        for event in self.events:
            text = formatEvent(event) + repr(event)
            self.assertNotIn("s3cret-pw", text)
            self.assertNotIn("token", text)
            self.assertNotIn("key=abc", text)

    def test_interfaces(self) -> None:
        """
        The checker provides L{ICredentialsChecker}; the fake response
        L{IResponse}.
        """
        self.assertTrue(verifyObject(ICredentialsChecker, self.makeChecker()[0]))
        self.assertTrue(verifyObject(IResponse, FakeResponse(200)))

    def test_request(self) -> None:
        """
        The check is a POST of JSON with the lower-case user name and the
        password, redirects not followed, through the given reactor.
        """
        checker, client = self.makeChecker(FakeResponse(200))
        self.assertEqual(self.successResultOf(self.check(checker)), ALICE)
        [(url, kwargs)] = client.posts
        self.assertEqual(url, self.URL)
        self.assertEqual(kwargs["json"], {"username": ALICE, "password": "s3cret-pw"})
        self.assertIs(kwargs["allow_redirects"], False)
        self.assertIs(kwargs["reactor"], self.clock)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_statuses(self) -> None:
        """
        2xx accepts, 401 and 403 refuse, anything else is temporary.
        """
        for code, expected in [
            (200, None),
            (204, None),
            (299, None),
            (401, UnauthorizedLogin),
            (403, UnauthorizedLogin),
            (301, TemporaryAuthError),
            (302, TemporaryAuthError),
            (400, TemporaryAuthError),
            (404, TemporaryAuthError),
            (429, TemporaryAuthError),
            (500, TemporaryAuthError),
            (503, TemporaryAuthError),
        ]:
            checker, _ = self.makeChecker(FakeResponse(code))
            d = self.check(checker)
            if expected is None:
                self.assertEqual(self.successResultOf(d), ALICE, code)
            else:
                failure = self.failureResultOf(d, expected)
                if expected is UnauthorizedLogin:
                    self.assertEqual(str(failure.value), REFUSED)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertPasswordNotLogged()

    def test_timeout(self) -> None:
        """
        No answer within the timeout (on the reactor's clock) cancels the
        request and fails temporarily.
        """
        checker, client = self.makeChecker(None, timeout=2.5)
        d = self.check(checker)
        self.clock.advance(2.4)
        self.assertNoResult(d)
        self.clock.advance(0.1)
        failure = self.failureResultOf(d, TemporaryAuthError)
        self.assertIn("2.5 seconds", str(failure.value))
        self.assertEqual(client.cancelled, 1)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        [line] = [formatEvent(event) for event in self.events]
        self.assertEqual(
            line,
            "password service https://auth.example.test/check failed for user=alice@example.test:"
            " no answer within 2.5 seconds",
        )

    def test_connectionError(self) -> None:
        """
        A connection error fails temporarily, logged without the password
        or the URL's secrets.
        """
        checker, _ = self.makeChecker(ConnectionRefusedError())
        self.failureResultOf(self.check(checker), TemporaryAuthError)
        self.assertEqual(len(self.events), 1)
        self.assertPasswordNotLogged()

    def test_bodyCutShort(self) -> None:
        """
        A body cut short fails temporarily, even after a 2xx status; a body
        ended by the connection closing (no length) is fine.
        """
        checker, _ = self.makeChecker(FakeResponse(200, reason=ConnectionLost()))
        self.failureResultOf(self.check(checker), TemporaryAuthError)
        checker, _ = self.makeChecker(FakeResponse(200, reason=PotentialDataLoss()))
        self.assertEqual(self.successResultOf(self.check(checker)), ALICE)

    def test_cancelledByCaller(self) -> None:
        """
        Cancelling the check (the client went away) cancels the request,
        is not a temporary failure and leaves no timer behind.
        """
        checker, client = self.makeChecker(None)
        d = self.check(checker)
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertEqual(client.cancelled, 1)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(self.events, [])

    def test_notUTF8(self) -> None:
        """
        A user name or password that is not UTF-8 cannot be sent as JSON:
        refused without asking.
        """
        checker, client = self.makeChecker()
        self.failureResultOf(self.check(checker, username=b"\xff"), UnauthorizedLogin)
        self.failureResultOf(self.check(checker, password=b"\xff"), UnauthorizedLogin)
        self.assertEqual(client.posts, [])

    def test_defaultClient(self) -> None:
        """
        Without a client, the checker makes its own over a connection pool
        on the reactor; closing it with nothing open fires at once.
        """
        checker = HTTPChecker("https://auth.example.test/", MemoryReactorClock())
        self.assertIsInstance(checker._client, HTTPClient)
        self.successResultOf(checker.close())
        checker = HTTPChecker(
            "https://auth.example.test/", MemoryReactorClock(), client=FakeHTTPClient()
        )
        self.successResultOf(checker.close())


class PasswordService(Resource):
    """
    A password service: the path says what to answer (C{/200}, C{/401},
    ...), C{/hang} never answers, C{/redirect} redirects to C{/200}.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.received: list[tuple[bytes, Headers, bytes]] = []
        self.hanging: list[Any] = []

    def render_POST(self, request: Any) -> bytes | int:
        self.received.append((request.path, request.requestHeaders, request.content.read()))
        if request.path == b"/hang":
            self.hanging.append(request)
            return server.NOT_DONE_YET
        if request.path == b"/redirect":
            request.setResponseCode(302)
            request.setHeader(b"location", b"/200")
            return b""
        request.setResponseCode(int(request.path.strip(b"/")))
        request.setHeader(b"content-type", b"application/json")
        return b'{"ok": true}'


class TrackingFactory(WrappingFactory):
    """
    Knows when every connection it made has closed.
    """

    def __init__(self, wrapped: Any) -> None:
        super().__init__(wrapped)
        self.waiting: list[Deferred[None]] = []

    def unregisterProtocol(self, p: Any) -> None:
        super().unregisterProtocol(p)
        if not self.protocols:
            waiting, self.waiting = self.waiting, []
            for d in waiting:
                d.callback(None)

    def allClosed(self) -> Deferred[None]:
        if not self.protocols:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self.waiting.append(d)
        return d


class HTTPCheckerServerTests(TestCase):
    """
    L{HTTPChecker} against a real C{twisted.web} server on 127.0.0.1.
    """

    def setUp(self) -> None:
        self.service = PasswordService()
        self.factory = TrackingFactory(server.Site(self.service))

    def listen(self, tls: Any = None) -> str:
        """
        Start the service on a free port; stop it (and wait for its
        connections to close) at cleanup.

        @return: the base URL.
        """
        if tls is None:
            port = reactor.listenTCP(0, self.factory, interface="127.0.0.1")
            scheme = "http"
        else:
            port = reactor.listenSSL(0, self.factory, tls, interface="127.0.0.1")
            scheme = "https"
        self.addCleanup(port.stopListening)
        self.addCleanup(self.factory.allClosed)
        return f"{scheme}://127.0.0.1:{port.getHost().port}"

    def checker(self, url: str, **kwargs: Any) -> HTTPChecker:
        checker = HTTPChecker(url, reactor, **kwargs)
        self.addCleanup(checker.close)
        return checker

    async def test_answers(self) -> None:
        """
        200 accepts, 401 and 403 refuse, 500 and a redirect fail
        temporarily; the request is a JSON POST.
        """
        base = self.listen()
        check = UsernamePassword(b"Alice@Example.TEST", b"p\xc3\xa4ss")
        self.assertEqual(await self.checker(base + "/200").requestAvatarId(check), ALICE)
        for path, error in [
            ("/401", UnauthorizedLogin),
            ("/403", UnauthorizedLogin),
            ("/500", TemporaryAuthError),
            ("/redirect", TemporaryAuthError),
        ]:
            with self.assertRaises(error):
                await self.checker(base + path).requestAvatarId(check)
        path, headers, body = self.service.received[0]
        self.assertEqual(json.loads(body), {"username": ALICE, "password": "p\xe4ss"})
        self.assertTrue(headers.getRawHeaders(b"content-type")[0].startswith(b"application/json"))
        self.assertEqual(
            [received[0] for received in self.service.received],
            [b"/200", b"/401", b"/403", b"/500", b"/redirect"],
        )

    async def test_keepsConnection(self) -> None:
        """
        Checks in a row reuse one connection.
        """
        base = self.listen()
        checker = self.checker(base + "/200")
        for _ in range(3):
            self.assertEqual(await checker.requestAvatarId(UsernamePassword(ALICE, b"x")), ALICE)
        self.assertEqual(len(self.factory.protocols), 1)

    async def test_hangingService(self) -> None:
        """
        A service that never answers fails temporarily after the timeout,
        and its connection is closed.
        """
        base = self.listen()
        start = reactor.seconds()
        with self.assertRaises(TemporaryAuthError):
            await login(self.checker(base + "/hang", timeout=0.3), ALICE, b"x")
        self.assertGreaterEqual(reactor.seconds() - start, 0.3)
        self.assertEqual(len(self.service.hanging), 1)
        await self.factory.allClosed()

    async def test_connectionRefused(self) -> None:
        """
        Nothing listening: a temporary failure.
        """
        port = reactor.listenTCP(0, self.factory, interface="127.0.0.1")
        number = port.getHost().port
        await port.stopListening()
        with self.assertRaises(TemporaryAuthError):
            await login(self.checker(f"http://127.0.0.1:{number}/200"), ALICE, b"x")

    def tlsOptions(self) -> tuple[Any, str]:
        now = datetime.datetime.fromtimestamp(reactor.seconds(), datetime.timezone.utc)
        certPath, keyPath = ensureCertificate(self.mktemp(), "localhost", now)
        return serverContextFactory(certPath, keyPath), certPath

    async def test_tlsVerified(self) -> None:
        """
        Over HTTPS the certificate is verified: a self-signed one fails
        temporarily with the default client, and is accepted by a client
        that trusts it.
        """
        options, certPath = self.tlsOptions()
        base = self.listen(options)
        with self.assertRaises(TemporaryAuthError):
            await self.checker(base + "/200").requestAvatarId(UsernamePassword(ALICE, b"x"))
        self.assertEqual(self.service.received, [])

        with open(certPath, "rb") as f:
            trusted = Certificate.loadPEM(f.read())
        pool = HTTPConnectionPool(reactor, persistent=False)
        client = HTTPClient(Agent(reactor, BrowserLikePolicyForHTTPS(trustRoot=trusted), pool=pool))
        checker = self.checker(base + "/200", client=client)
        self.assertEqual(await checker.requestAvatarId(UsernamePassword(ALICE, b"x")), ALICE)
