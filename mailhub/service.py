# -*- test-case-name: tests.test_service -*-
"""
Composition: one L{MultiService} with every listener and worker, built from
a L{Config} and a reactor.  The only module that parses endpoint strings.

Everything that can be wrong with the configuration is found while
building (L{makeService} raises L{ConfigError}); nothing is bound until
the service starts.
"""

from __future__ import annotations

import datetime
import os
import signal
import sys
from typing import Any, Callable, Iterable

from attrs import evolve, frozen
from twisted.application.internet import StreamServerEndpointService, TimerService
from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.cred import strcred
from twisted.cred.portal import Portal
from twisted.internet.endpoints import serverFromString
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.internet.threads import deferToThreadPool
from twisted.logger import ILogObserver, Logger
from twisted.python.components import Componentized

from mailhub import __version__, tls
from mailhub.config import Config
from mailhub.auth.checkers import PasswordFileChecker
from mailhub.auth.realm import MailhubRealm
from mailhub.auth.throttle import Authenticator, LoginThrottle
from mailhub.auth.userfile import UserFile
from mailhub.directory import Directory, MaildirMailboxes, UserMailboxes
from mailhub.imap.mailbox import MaildirAccount
from mailhub.imap.server import IMAPFactory
from mailhub.pop3.mailbox import MaildirMailbox
from mailhub.pop3.server import POP3Factory
from mailhub.errors import ConfigError, MailhubError
from mailhub.maildir.cleanup import cleanSpool, cleanTmp
from mailhub.maildir.delivery import Committer, ensureMaildir
from mailhub.maildir.names import QueueIds, UniqueNames
from mailhub.fs import FileSystem
from mailhub.relay.enqueue import Relay, ReportSender
from mailhub.relay.manager import RelayManager
from mailhub.relay.mx import LazyResolver, MXResolver, interfaceAddresses, makeResolver
from mailhub.relay.policy import RetryPolicy
from mailhub.relay.queue import GroupSync, Queue
from mailhub.relay.sender import TLS_REQUIRE, TLS_VERIFY, Route, SMTPSender, parseRoute
from mailhub.relay.writer import QueueWriter
from mailhub.smtp.delivery import LocalDelivery, SubmissionDelivery
from mailhub.smtp.server import SMTPFactory
from mailhub.spool import Spool

#: How often stale tmp/ files are looked for, in seconds.
CLEANUP_INTERVAL = 3600


class ListenError(MailhubError):
    """
    A listener could not be bound (the address is in use, or not ours).
    """


@frozen
class Paths:
    """
    Where things live under the data directory (DESIGN.md, "Data layout").
    """

    data: str

    @property
    def mail(self) -> str:
        return os.path.join(self.data, "mail")

    @property
    def spool(self) -> str:
        return os.path.join(self.data, "spool")

    @property
    def queue(self) -> str:
        return os.path.join(self.data, "queue")

    @property
    def pidFile(self) -> str:
        return os.path.join(self.data, "mailhub.pid")


class ListenerService(StreamServerEndpointService):
    """
    Listens on one endpoint; a failure to bind is raised at once, naming
    the listener, so that start-up stops instead of serving half the ports.

    @ivar port: the listening port, once bound.
    """

    _raiseSynchronously = True

    def __init__(self, endpoint: Any, factory: Any, description: str) -> None:
        super().__init__(endpoint, factory)
        self.description = description
        self.port: Any = None

    def privilegedStartService(self) -> None:
        try:
            super().privilegedStartService()
        except Exception as e:
            raise ListenError(f"cannot listen on {self.description}: {e}") from e
        self._waitingForPort.addCallback(self._bound)

    def _bound(self, port: Any) -> Any:
        self.port = port
        return port


class WorkerService(Service):
    """
    Runs a worker thread (the Maildir L{Committer}, the relay queue's
    writer) while the service runs; stopping finishes every operation
    already submitted.
    """

    def __init__(self, worker: Committer | QueueWriter) -> None:
        self.worker = worker

    def startService(self) -> None:
        super().startService()
        self.worker.start()

    def stopService(self) -> Deferred[None]:
        super().stopService()
        return self.worker.stop()


class SessionsService(Service):
    """
    Stopping it closes every open session of a protocol factory.
    """

    def __init__(self, factory: Any) -> None:
        self.factory = factory

    def stopService(self) -> Deferred[None]:
        super().stopService()
        return self.factory.shutDown()


class MailhubService(MultiService):
    """
    The whole server.

    @ivar config: what it was built from.
    @ivar factories: the protocol factory of each listener, by name.
    """

    log = Logger()

    def __init__(self, config: Config, reactor: Any, paths: Paths) -> None:
        super().__init__()
        self.config = config
        self.reactor = reactor
        self.paths = paths
        self.factories: dict[str, Any] = {}

    #: Under twistd: a port that cannot be bound ends the process with one
    #: line on stderr and exit status 1, rather than a traceback.
    exitOnListenError = False

    #: Under twistd: SIGUSR1 flushes the relay queue, and DATA/mailhub.pid
    #: tells C{mailhub queue flush} whom to signal.
    controlBySignal = False

    #: Under twistd: the log observer to give its application (see
    #: L{setServiceParent}), or C{None} to leave twistd's own.
    logObserver: Any = None

    manager: Any = None

    def privilegedStartService(self) -> None:
        self._prepare()
        try:
            super().privilegedStartService()
        except ListenError as e:
            if not self.exitOnListenError:
                raise
            # twistd has already sent sys.stderr to the log by now.
            (sys.__stderr__ or sys.stderr).write(f"mailhub: {e}\n")
            raise SystemExit(1)

    def startService(self) -> None:
        self._prepare()  # when started without privilegedStartService
        super().startService()
        if self.controlBySignal:
            self._installControl()
        self.log.info(
            "mailhub {version} serving {domains} as {hostname}",
            version=__version__,
            domains=", ".join(self.config.domains),
            hostname=self.config.hostname,
        )

    _prepared = False

    def _prepare(self) -> None:
        """
        Make the data directory usable: spool emptied of leftovers, the
        postmaster mailbox of every domain in place.
        """
        if self._prepared:
            return
        self._prepared = True
        fs = FileSystem()
        fs.makedirs(self.paths.spool)
        cleanSpool(self.paths.spool)
        for domain in self.config.domains:
            if f"postmaster@{domain}" not in self.config.aliases:
                ensureMaildir(fs, os.path.join(self.paths.mail, domain, "postmaster"))

    def setServiceParent(self, parent: Any) -> None:
        """
        Join C{parent}; when it is twistd's application, which has no log
        observer of its own yet, give it L{logObserver}: twistd starts
        logging after it has made the service, with the application's
        observer if it has one (L{mailhub.logtext}).
        """
        if self.logObserver is not None and isinstance(parent, Componentized):
            if parent.getComponent(ILogObserver, None) is None:
                parent.setComponent(ILogObserver, self.logObserver)
        super().setServiceParent(parent)

    def stopService(self) -> Deferred[None]:
        """
        Stop in order, each step finished before the next: the timers and
        the listeners (no new sessions), then the open sessions (each hears
        C{421 4.3.2}, after the reply to a message being delivered), then
        the committer (every delivery already submitted completes).
        """
        Service.stopService(self)
        if self.controlBySignal:
            self._removeControl()

        async def stop() -> None:
            for child in reversed(list(self)):
                await maybeDeferred(child.stopService)

        return Deferred.fromCoroutine(stop())

    def _installControl(self) -> None:
        """
        The handler first, then the pid file: SIGUSR1's default action
        would end the process.
        """

        def flush(signum: int, frame: Any) -> None:
            self.reactor.callFromThread(self._flush)

        signal.signal(signal.SIGUSR1, flush)
        path = self.paths.pidFile
        temporary = f"{path}.{os.getpid()}.tmp"
        with open(temporary, "w") as f:
            f.write(f"{os.getpid()}\n")
        os.replace(temporary, path)

    def _removeControl(self) -> None:
        try:
            with open(self.paths.pidFile) as f:
                ours = f.read().strip() == str(os.getpid())
            if ours:
                os.unlink(self.paths.pidFile)
        except OSError:
            pass
        signal.signal(signal.SIGUSR1, signal.SIG_DFL)

    def _flush(self) -> None:
        if self.manager is not None and self.manager.running:
            self.log.info("SIGUSR1: flushing the relay queue")
            self.manager.flush().addErrback(
                lambda f: self.log.failure("flush failed", f)
            )

    def port(self, name: str) -> Any:
        """
        The listening port of the listener C{name} (like C{"smtp"} or
        C{"smtp-1"}).
        """
        return self.getServiceNamed(name).port

    def boundAddresses(self, names: tuple[str, ...]) -> list[tuple[str, int]]:
        """
        The C{(address, port)} each bound listener of the kinds C{names}
        (like C{"smtp"}, which covers C{"smtp-1"}) listens on; a listener
        not bound yet, or not on TCP, has none.
        """
        found = []
        for child in self:
            if not isinstance(child, ListenerService) or child.port is None:
                continue
            if not any(child.name == n or child.name.startswith(f"{n}-") for n in names):
                continue
            host = child.port.getHost()
            address, port = getattr(host, "host", None), getattr(host, "port", None)
            if isinstance(address, str) and isinstance(port, int):
                found.append((address, port))
        return found


def makeService(
    config: Config,
    reactor: Any,
    prepare: bool = True,
    threaded: bool = True,
    checkers: list[Any] | None = None,
) -> MailhubService:
    """
    Build the server.

    @param prepare: make the self-signed certificate if one is needed (off
        for C{mailhub check-config}, which changes nothing).
    @param threaded: deliver on a worker thread (off in tests driven by a
        memory reactor, which has no threads).
    @param checkers: credential checkers that replace the configured ones
        (C{twistd mailhub --auth=...}).
    @raise ConfigError: something in the configuration cannot be served.
    """
    paths = Paths(os.path.abspath(config.dataDir))
    top = MailhubService(config, reactor, paths)

    contextFactory = _tlsContext(config, reactor, paths, prepare)

    committer = Committer(reactor, threaded=threaded)
    WorkerService(committer).setServiceParent(top)
    users = UserFile(config.users)
    if config.auth.mailboxes == "users":
        mailboxes: Any = UserMailboxes(paths.data, users)
    else:
        mailboxes = MaildirMailboxes(paths.data)
    directory = Directory(
        config.domains,
        config.aliases,
        config.recipientDelimiter,
        mailboxes,
    )
    names = UniqueNames(reactor, config.hostname)
    queueIds = QueueIds(reactor)

    def runBlocking(function: Any, *args: Any) -> Deferred[Any]:
        # Work that grows with a mailbox or the queue: off the reactor.
        return _offThread(reactor, function, *args)

    relay = _relay(
        config, reactor, paths, runBlocking, queueIds, directory, committer, names, threaded,
        listening=lambda: top.boundAddresses(SMTP_LISTENERS),
    )
    if relay.writer is not None:
        # Stopped after the manager and the sessions that use it.
        WorkerService(relay.writer).setServiceParent(top)
    top.manager = relay.manager
    relay.manager.setServiceParent(top)
    delivery = LocalDelivery(directory, committer, names, relay)

    def submission(user: str) -> SubmissionDelivery:
        entry = users.lookup(user)
        senders = entry.extraFields.get("senders", "") if entry is not None else ""
        return SubmissionDelivery(
            directory, committer, names, user, tuple(s for s in senders.split(",") if s), relay
        )

    def maildir(address: str) -> str:
        local, _, domain = address.rpartition("@")
        return mailboxes.maildir(local, domain)

    realm = MailhubRealm(
        submission=submission,
        maildir=maildir,
        pop3Mailbox=MaildirMailbox,
        imapAccount=lambda path: MaildirAccount(path, clock=reactor),
        runBlocking=runBlocking,
    )
    portal = Portal(realm, checkers or _checkers(config, reactor, users))
    authenticator = Authenticator(portal, LoginThrottle(reactor), reactor)


    def smtpFactory(**kwargs: Any) -> SMTPFactory:
        return SMTPFactory(
            hostname=config.hostname,
            delivery=delivery,
            limits=config.limits,
            clock=reactor,
            newQueueId=queueIds.make,
            newSpool=lambda queueId: Spool(paths.spool, queueId),
            contextFactory=contextFactory,
            describeTLS=tls.describeTLS,
            authenticator=authenticator,
            trustedNetworks=config.trustedNetworks,
            **kwargs,
        )

    listeners = config.listeners
    pop3Options: dict[str, Any] = dict(
        portal=authenticator,
        clock=reactor,
        contextFactory=contextFactory,
        hostname=config.hostname,
        connectionsPerPeer=config.limits.connectionsPerPeer,
        peerLimitExempt=config.limits.peerLimitExempt,
        runBlocking=runBlocking,
    )
    services = [
        ("smtp", listeners.smtp, smtpFactory(offerAuth=config.auth.mx), False),
        ("submission", listeners.submission, smtpFactory(offerAuth=True, requireAuth=True), False),
        (
            "submissions",
            listeners.submissions,
            smtpFactory(offerAuth=True, requireAuth=True, implicitTLS=True),
            True,
        ),
        (
            "pop3",
            listeners.pop3,
            POP3Factory(**pop3Options),
            False,
        ),
        (
            "pop3s",
            listeners.pop3s,
            POP3Factory(implicitTLS=True, **pop3Options),
            True,
        ),
    ]
    imapOptions = dict(
        portal=authenticator,
        clock=reactor,
        contextFactory=contextFactory,
        hostname=config.hostname,
        maxLiteral=config.limits.messageSize,
        connectionsPerPeer=config.limits.connectionsPerPeer,
        connectionsPerUser=config.limits.connectionsPerUser,
        peerLimitExempt=config.limits.peerLimitExempt,
        runBlocking=runBlocking,
        # One count for both listeners: the per-user limit is per user.
        perUser={},
    )
    services += [
        ("imap", listeners.imap, IMAPFactory(**imapOptions), False),
        ("imaps", listeners.imaps, IMAPFactory(implicitTLS=True, **imapOptions), True),
    ]
    for name, _, factory, _ in services:
        top.factories[name] = factory
        SessionsService(factory).setServiceParent(top)
    for name, descriptions, factory, implicit in services:
        _listen(top, reactor, name, descriptions, factory, contextFactory if implicit else None)

    cleaner = TimerService(
        CLEANUP_INTERVAL,
        lambda: _offThread(reactor, cleanTmp, paths.mail, reactor.seconds()),
    )
    cleaner.clock = reactor
    cleaner.setName("tmp-cleaner")
    cleaner.setServiceParent(top)
    return top


#: Seconds a relay connection is kept open for the next message to its host.
RELAY_CONNECTION_CACHE_TIME = 2.0

#: Threads beyond the relay's concurrency, for the sessions' queue writes.
RELAY_THREADS_EXTRA = 16

#: The listeners that take mail by SMTP: relaying to where one of them is
#: bound is a loop (the MX ones above all; the submission ones would take
#: the message back into the queue too, or refuse it for want of AUTH).
SMTP_LISTENERS = ("smtp", "submission", "submissions")


def _relay(
    config: Config,
    reactor: Any,
    paths: Paths,
    runBlocking: Any,
    queueIds: QueueIds,
    directory: Directory,
    committer: Committer,
    names: UniqueNames,
    threaded: bool,
    listening: Callable[[], Iterable[tuple[str, int]]] | None = None,
) -> Relay:
    """
    The relay: durable queue, MX delivery (or smarthost and transport
    routes), the manager, and the report sender for bounces.

    @param listening: gives the C{(address, port)} pairs of our SMTP
        listeners: with our host name, what is ourselves to the relay
        (never relayed to: a loop, bounced with C{5.4.6}).
    """
    settings = config.relay
    fs = FileSystem()
    # Queue writes from concurrent sessions and attempts share syncfs calls
    # (group commit) where the kernel has a reliable syncfs.
    groupSync = GroupSync(fs, paths.queue) if fs.canSyncFilesystem else None
    queue = Queue(paths.queue, fs, clock=reactor, groupSync=groupSync)
    # New entries and removals in batches around shared syncs, on one thread.
    writer = QueueWriter(reactor, queue, threaded=threaded) if groupSync is not None else None
    if hasattr(reactor, "suggestThreadPoolSize"):
        # Queue steps block on a shared sync: enough threads for every
        # attempt in flight and the sessions writing at once.
        reactor.suggestThreadPoolSize(settings.concurrency + RELAY_THREADS_EXTRA)

    def route(text: str, key: str, **extra: Any) -> Route:
        if text.startswith("smtp:"):
            text = text[len("smtp:") :]
        try:
            parsed = parseRoute(text)
        except ValueError as e:
            raise ConfigError(config.source, key, str(e)) from None
        return evolve(parsed, **extra) if extra else parsed

    transport = {
        domain: route(text, f"relay.transport.{domain}") for domain, text in settings.transport.items()
    }
    # The smarthost's TLS policy: smarthost_tls when given.  Otherwise never
    # weaker than what the recipient domain would get (tls, verify_domains),
    # and "verify" with credentials, so a password goes only to a server
    # whose certificate names the smarthost; else "require".
    smarthost: Route | None = None
    verifiedSmarthost: Route | None = None
    if settings.smarthost is not None:
        implicit = settings.smarthostTLS is None
        smarthost = route(
            settings.smarthost,
            "relay.smarthost",
            tlsPolicy=(
                settings.smarthostTLS if not implicit
                else TLS_VERIFY if settings.smarthostUser is not None or settings.tls == TLS_VERIFY
                else TLS_REQUIRE
            ),
            username=settings.smarthostUser,
            password=settings.smarthostPassword,
        )
        if implicit and smarthost.tlsPolicy != TLS_VERIFY and settings.verifyDomains:
            verifiedSmarthost = evolve(smarthost, tlsPolicy=TLS_VERIFY)
    verifyDomains = frozenset(settings.verifyDomains)

    def routeFor(domain: str) -> Route | None:
        if domain in transport:
            return transport[domain]
        if verifiedSmarthost is not None and domain in verifyDomains:
            return verifiedSmarthost
        return smarthost

    servers = [f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in settings.dnsServers]
    resolver = LazyResolver(lambda: makeResolver(servers or None))
    mx = MXResolver(
        resolver, [config.hostname], listening=listening, hostAddresses=interfaceAddresses()
    )
    sender = SMTPSender(
        reactor,
        resolver,
        config.hostname,
        tlsPolicy=settings.tls,
        policies={domain: "verify" for domain in settings.verifyDomains},
        # Like Postfix's smtp_connection_cache_time_limit: a connection
        # waits this long for the next message to the same host.
        connectionCacheTime=RELAY_CONNECTION_CACHE_TIME,
        mxResolver=mx,
    )
    def sendBounce(to: str, message: bytes) -> Deferred[None]:
        return Deferred.fromCoroutine(reports(to, message))

    manager = RelayManager(
        clock=reactor,
        queue=queue,
        sender=sender,
        policy=RetryPolicy(
            firstRetry=settings.firstRetry,
            factor=settings.retryFactor,
            maxRetry=settings.maxRetry,
            delayWarning=settings.delayWarning,
            lifetime=settings.lifetime,
        ),
        runBlocking=runBlocking,
        route=routeFor,
        sendBounce=sendBounce,
        hostname=config.hostname,
        newMessageId=lambda: f"{queueIds.make()}@{config.hostname}",
        concurrency=settings.concurrency,
        perDomain=settings.perDomain,
        resolver=resolver,
        writer=writer,
    )
    relay = Relay(reactor, queue, manager, runBlocking, writer)
    reports = ReportSender(directory, committer, names, relay, queueIds.make)
    return relay


def _checkers(config: Config, reactor: Any, users: UserFile) -> list[Any]:
    """
    The credential checkers the configuration names (Twisted C{strcred}
    strings), or the users file.
    """
    if not config.auth.checkers:
        return [PasswordFileChecker(users, reactor)]
    checkers = []
    for index, description in enumerate(config.auth.checkers):
        try:
            checkers.append(strcred.makeChecker(description))
        except Exception as e:
            raise ConfigError(
                config.source, f"auth.checkers[{index}]", f"cannot make checker {description!r}: {e}"
            ) from None
    return checkers


def _offThread(reactor: Any, function: Any, *args: Any) -> Deferred[Any]:
    """
    Run blocking C{function} on the reactor's thread pool (inline on a
    reactor without threads, such as a memory reactor in tests).
    """
    if hasattr(reactor, "getThreadPool"):
        return deferToThreadPool(reactor, reactor.getThreadPool(), function, *args)
    return maybeDeferred(function, *args)


def _tlsContext(config: Config, reactor: Any, paths: Paths, prepare: bool) -> Any:
    if config.tls.certificate is not None and config.tls.key is not None:
        return tls.serverContextFactory(config.tls.certificate, config.tls.key, config.source)
    if not prepare:
        return None
    now = datetime.datetime.fromtimestamp(reactor.seconds(), datetime.timezone.utc)
    try:
        certificate, key = tls.ensureCertificate(paths.data, config.hostname, now)
    except OSError as e:
        raise ConfigError(config.source, "data", f"cannot write the certificate: {e}") from None
    return tls.serverContextFactory(certificate, key, config.source)


def _listen(
    top: MailhubService,
    reactor: Any,
    name: str,
    descriptions: tuple[str, ...],
    factory: Any,
    implicitTLS: Any = None,
) -> None:
    """
    Add a listener service per endpoint string; with C{implicitTLS} (the
    server TLS options) the factory is wrapped in TLS from the first byte.
    """
    if implicitTLS is not None:
        factory = TLSMemoryBIOFactory(implicitTLS, False, factory)
    for index, description in enumerate(descriptions):
        key = f"listeners.{name}[{index}]"
        try:
            endpoint = serverFromString(reactor, description)
        except Exception as e:
            raise ConfigError(
                top.config.source, key, f"not a usable endpoint {description!r}: {e}"
            ) from None
        listener = ListenerService(endpoint, factory, f"{key} {description}")
        listener.setName(name if index == 0 else f"{name}-{index}")
        listener.setServiceParent(top)
