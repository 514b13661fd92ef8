"""
Tests for L{mailhub.service}: the composition, driven by a memory reactor.
"""

from __future__ import annotations

import os

from twisted.internet.defer import succeed
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from mailhub.config import fromDocument
from mailhub.errors import ConfigError
from mailhub.relay.sender import Route
from mailhub.service import SMTP_LISTENERS, ListenError, makeService


class ServiceTests(SynchronousTestCase):
    """
    L{makeService} builds everything before binding anything, and stopping
    leaves nothing behind.
    """

    def setUp(self) -> None:
        self.data = os.path.abspath(self.mktemp())
        self.reactor = MemoryReactorClock()
        self.reactor.advance(1795700000)

    def config(self, **document: object):
        document.setdefault("data", self.data)
        document.setdefault("domains", ["example.test", "other.test"])
        return fromDocument(document)

    def test_startAndStop(self) -> None:
        """
        Starting binds every listener and prepares the data directory;
        stopping unbinds them and leaves no delayed call.
        """
        service = makeService(
            self.config(listeners={"smtp": ["tcp:2525:interface=127.0.0.1", "tcp:2526"]}),
            self.reactor,
            threaded=False,
        )
        self.assertEqual(self.reactor.tcpServers, [])
        service.privilegedStartService()
        service.startService()
        self.assertEqual(
            [p[0] for p in self.reactor.tcpServers], [2525, 2526, 2587, 2465, 1110, 1995, 1143, 1993]
        )
        self.assertTrue(os.path.isdir(os.path.join(self.data, "spool")))
        for domain in ("example.test", "other.test"):
            self.assertTrue(
                os.path.isdir(os.path.join(self.data, "mail", domain, "postmaster", "new"))
            )
        self.assertTrue(os.path.exists(os.path.join(self.data, "tls", "cert.pem")))
        d = service.stopService()
        self.successResultOf(d)
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_relayKnowsItsListeners(self) -> None:
        """
        The relay's MX lookup takes the addresses and ports the SMTP
        listeners (MX and submission) are bound to, once bound, as this
        server, and the host name whatever the port; the POP3 and IMAP
        listeners do not count.
        """
        service = makeService(
            self.config(
                hostname="mx.example.test",
                listeners={"smtp": ["tcp:2525:interface=127.0.0.1", "tcp6:2526:interface=\\:\\:1"]},
            ),
            self.reactor,
            threaded=False,
        )
        mx = service.manager.sender.mx
        self.assertEqual(service.boundAddresses(SMTP_LISTENERS), [])
        self.assertFalse(mx.isListening("127.0.0.1", 2525))
        service.privilegedStartService()
        service.startService()
        self.addCleanup(service.stopService)
        # The memory reactor reports every IPv4 listener on 0.0.0.0.
        self.assertEqual(
            service.boundAddresses(SMTP_LISTENERS),
            [("0.0.0.0", 2525), ("::1", 2526), ("0.0.0.0", 2587), ("0.0.0.0", 2465)],
        )
        self.assertEqual(service.boundAddresses(("smtp",)), [("0.0.0.0", 2525), ("::1", 2526)])
        for port in (2525, 2587, 2465):
            self.assertTrue(mx.isListening("127.0.0.1", port), port)
        self.assertTrue(mx.isListening("::1", 2526))
        self.assertFalse(mx.isListening("127.0.0.1", 2526))
        for port in (1110, 1995, 1143, 1993, 25):
            self.assertFalse(mx.isListening("127.0.0.1", port), port)
        self.assertTrue(mx.isLocal("mx.example.test", ["192.0.2.7"], 25))

    def test_retryPolicy(self) -> None:
        """
        The relay's retry policy is the configured one, C{retry_factor}
        included: 60 s, then 180 s, 540 s, capped at 1000 s.
        """
        service = makeService(
            self.config(
                relay={"first_retry": 60, "retry_factor": 3, "max_retry": 1000, "delay_warning": 0, "lifetime": 86400}
            ),
            self.reactor,
            threaded=False,
        )
        policy = service.manager.policy
        self.assertEqual(
            (policy.firstRetry, policy.factor, policy.maxRetry, policy.delayWarning, policy.lifetime),
            (60.0, 3.0, 1000.0, None, 86400.0),
        )
        self.assertEqual([policy.retryDelay(n) for n in range(1, 5)], [60.0, 180.0, 540.0, 1000.0])

    def test_imapLimits(self) -> None:
        """
        Both IMAP listeners take the configured per-user and per-peer
        session limits.
        """
        service = makeService(
            self.config(limits={"connections_per_user": 500, "connections_per_peer": 7}),
            self.reactor,
            threaded=False,
        )
        for name in ("imap", "imaps"):
            factory = service.factories[name]
            self.assertEqual(factory.connectionsPerUser, 500)
            self.assertEqual(factory.connectionsPerPeer, 7)

    def test_badEndpointNamesKey(self) -> None:
        """
        An endpoint string Twisted cannot parse is a L{ConfigError} naming
        the listener, raised before anything is bound.
        """
        config = self.config(listeners={"smtp": ["tcp:2525", "tpc:25"]})
        error = self.assertRaises(ConfigError, makeService, config, self.reactor, threaded=False)
        self.assertEqual(error.key, "listeners.smtp[1]")
        self.assertEqual(self.reactor.tcpServers, [])

    def test_leftoverSpoolRemoved(self) -> None:
        """
        Whatever a crash left in the spool is removed at start.
        """
        os.makedirs(os.path.join(self.data, "spool"))
        leftover = os.path.join(self.data, "spool", "6B0859B70D30AC")
        with open(leftover, "wb") as f:
            f.write(b"half a message")
        service = makeService(self.config(), self.reactor, threaded=False)
        service.startService()
        self.addCleanup(service.stopService)
        self.assertFalse(os.path.exists(leftover))

    def test_aliasedPostmasterHasNoMailbox(self) -> None:
        """
        A postmaster that an alias sends elsewhere gets no Maildir of its own.
        """
        config = self.config(aliases={"postmaster@example.test": "alice@example.test"})
        service = makeService(config, self.reactor, threaded=False)
        service.startService()
        self.addCleanup(service.stopService)
        self.assertFalse(os.path.exists(os.path.join(self.data, "mail", "example.test", "postmaster")))
        self.assertTrue(os.path.isdir(os.path.join(self.data, "mail", "other.test", "postmaster")))

    def test_cleanupRunsHourly(self) -> None:
        """
        The tmp/ cleaner runs at start and then every hour, on the reactor's
        thread pool.
        """
        calls = []
        self.reactor.getThreadPool = lambda: calls  # type: ignore[attr-defined]
        import mailhub.service as module

        original = module.deferToThreadPool

        from mailhub.maildir.cleanup import cleanTmp

        def fake(reactor, pool, function, *args):
            from twisted.internet.defer import maybeDeferred, succeed

            if function is not cleanTmp:
                return maybeDeferred(function, *args)
            pool.append((function, args))
            return succeed(None)

        module.deferToThreadPool = fake
        self.addCleanup(setattr, module, "deferToThreadPool", original)
        service = makeService(self.config(), self.reactor, threaded=False)
        service.startService()
        self.assertEqual(len(calls), 1)
        self.assertEqual(calls[0][1][0], os.path.join(self.data, "mail"))
        self.reactor.advance(3600)
        self.assertEqual(len(calls), 2)
        self.successResultOf(service.stopService())
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_listenErrorNamesListener(self) -> None:
        """
        A port that cannot be bound raises L{ListenError} naming the
        listener.
        """
        from twisted.internet.error import CannotListenError

        def refuse(port, factory, backlog=50, interface=""):
            raise CannotListenError(interface, port, OSError(98, "Address already in use"))

        self.reactor.listenTCP = refuse  # type: ignore[method-assign]
        service = makeService(self.config(), self.reactor, threaded=False)
        error = self.assertRaises(ListenError, service.privilegedStartService)
        self.assertIn("listeners.smtp[0] tcp:2525:interface=127.0.0.1", str(error))


class SmarthostRouteTests(SynchronousTestCase):
    """
    The smarthost's route and its TLS policy: C{smarthost_tls} when given,
    else never weaker than the recipient domain's own policy, and
    C{verify} whenever credentials are sent.
    """

    def route(self, domain: str = "far.test", **relay: object) -> Route | None:
        """
        The route the relay manager gets for C{domain} under a
        configuration with a smarthost and the C{relay} keys.
        """
        relay.setdefault("smarthost", "[smtp.example.net]:587")
        if relay["smarthost"] is None:
            del relay["smarthost"]
        config = fromDocument(
            {"data": os.path.abspath(self.mktemp()), "domains": ["example.test"], "relay": relay}
        )
        service = makeService(config, MemoryReactorClock(), threaded=False)
        route: Route | None = service.manager.route(domain)
        return route

    def policy(self, domain: str = "far.test", **relay: object) -> str | None:
        route = self.route(domain, **relay)
        assert route is not None
        return route.tlsPolicy

    def test_route(self) -> None:
        """
        The smarthost is a route to its host and port without MX lookup,
        with the credentials; a C{[relay.transport]} entry (its C{smtp:}
        prefix dropped) wins for its domain; no smarthost is MX delivery.
        """
        route = self.route(smarthost_user="user", smarthost_password="secret")
        self.assertEqual(
            route, Route("smtp.example.net", 587, False, "verify", username="user", password="secret")
        )
        transport = {"partner.test": "smtp:[192.0.2.25]:2525"}
        self.assertEqual(self.route("partner.test", transport=transport), Route("192.0.2.25", 2525, False))
        self.assertIsNone(self.route(smarthost=None))

    def test_explicitWins(self) -> None:
        """
        C{smarthost_tls}, when given, is the smarthost's policy whatever
        C{tls}, C{verify_domains} and the credentials say: C{verify} too.
        """
        for value in ("opportunistic", "require", "verify"):
            self.assertEqual(
                self.policy(
                    "far.test", smarthost_tls=value, tls="verify", verify_domains=["far.test"],
                    smarthost_user="u", smarthost_password="p",
                ),
                value,
            )

    def test_defaults(self) -> None:
        """
        Without C{smarthost_tls}: C{require}; C{verify} when credentials are
        given, when C{tls = "verify"}, and for the domains of
        C{verify_domains} (only those).
        """
        self.assertEqual(self.policy(), "require")
        self.assertEqual(self.policy(smarthost_user="u", smarthost_password="p"), "verify")
        self.assertEqual(self.policy(tls="verify"), "verify")
        self.assertEqual(self.policy("far.test", verify_domains=["far.test"]), "verify")
        self.assertEqual(self.policy("near.test", verify_domains=["far.test"]), "require")


class TapTests(SynchronousTestCase):
    """
    C{twistd mailhub} options.
    """

    def test_authOption(self) -> None:
        """
        C{--auth=mailhub-file:PATH} (Twisted's strcred) gives a file checker.
        """
        from mailhub.auth.checkers import PasswordFileChecker
        from mailhub.tap import Options

        options = Options()
        options.parseOptions(["--auth", "mailhub-file:" + os.path.abspath(self.mktemp())])
        [checker] = options["credCheckers"]
        self.assertIsInstance(checker, PasswordFileChecker)


class ControlTests(SynchronousTestCase):
    """
    Under twistd the server writes DATA/mailhub.pid and flushes the relay
    queue on SIGUSR1.
    """

    def test_pidFileAndSignal(self) -> None:
        """
        Starting writes the pid file; SIGUSR1 makes every queued entry due;
        stopping removes the file and the handler.
        """
        import signal

        data = os.path.abspath(self.mktemp())
        reactor = MemoryReactorClock()
        calls = []
        reactor.callFromThread = lambda f, *a: calls.append(f)  # type: ignore[attr-defined]
        service = makeService(fromDocument({"data": data}), reactor, threaded=False)
        service.controlBySignal = True
        service.startService()
        pidFile = os.path.join(data, "mailhub.pid")
        with open(pidFile) as f:
            self.assertEqual(f.read().strip(), str(os.getpid()))
        os.kill(os.getpid(), signal.SIGUSR1)
        self.assertEqual(len(calls), 1)
        flushed = []
        service.manager.flush = lambda: flushed.append(1) or succeed(None)
        calls[0]()
        self.assertEqual(flushed, [1])
        self.successResultOf(service.stopService())
        self.assertFalse(os.path.exists(pidFile))
        self.assertEqual(signal.getsignal(signal.SIGUSR1), signal.SIG_DFL)
