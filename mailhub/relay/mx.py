# -*- test-case-name: tests.relay.test_mx -*-
"""
Where to deliver a domain's mail: its MX hosts, in order, with their
addresses (RFC 5321 section 5.1).

Everything goes through an injected L{twisted.names} resolver
(L{IResolver}); L{makeResolver} makes one from the configuration.

The primitives are two functions: L{lookupMX} (the exchanger names of a
domain, most preferred first, ties shuffled, the implicit MX when there is
none) and L{resolveHost} (the IPv6 and IPv4 addresses of one host).
L{MXResolver} puts them together for the sender: it drops this server from
the list (RFC 5321 section 5.1: ourselves and every less preferred host) and
hosts without an address, and turns every DNS answer that means "no" into a
L{RoutingError} that says whether retrying can help.

"Ourselves" is, like Postfix's "mail for X loops back to myself": a host
named by one of our names (the configured host name), or one whose address
and port are where one of our SMTP listeners is bound.  The port counts: a
relay to 127.0.0.1:2526 is no loop when we listen on 127.0.0.1:2525.  A
listener bound to a wildcard address (C{0.0.0.0}, C{::}) is taken to answer
on every loopback address, on the wildcard address itself, and on the
host's own addresses as L{interfaceAddresses} finds them.

The errors:

    - NXDOMAIN for the domain: permanent, C{5.1.2};
    - a null MX (RFC 7505): permanent, C{5.1.10};
    - no MX and no address (or no MX host with an address): permanent,
      C{5.4.4};
    - this server is the best MX (or the route points at it): permanent,
      C{5.4.6} (a routing loop: a configuration error here or there);
    - SERVFAIL, REFUSED, a timeout, anything else: transient, C{4.4.3}.
"""

from __future__ import annotations

import functools
import ipaddress
import random as _randomModule
import socket
from typing import Any, Callable, Iterable, Sequence

from attrs import frozen
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.interfaces import IResolver
from twisted.logger import Logger
from twisted.names import client, dns, error
from twisted.python.failure import Failure

from mailhub.errors import DeliveryError

__all__ = [
    "RoutingError",
    "MXHost",
    "MXResolver",
    "lookupMX",
    "resolveHost",
    "makeResolver",
    "normalizeName",
    "interfaceAddresses",
]

_log = Logger()


class RoutingError(DeliveryError):
    """
    No host to deliver a domain's mail to could be found.

    Its C{code} is always C{0} (no SMTP reply was involved); C{permanent}
    and C{enhanced} say what a bounce or a retry needs.
    """

    def __init__(self, permanent: bool, enhanced: str, text: str) -> None:
        super().__init__(permanent, 0, enhanced, text)


@frozen
class MXHost:
    """
    One host to try, with its addresses.

    @ivar name: the exchanger's name (lower case, no trailing dot), or an
        address literal for a route given as one.
    @ivar addresses: its IPv6 addresses, then its IPv4 addresses, in the
        order DNS gave them.
    """

    name: str
    addresses: tuple[str, ...]


def normalizeName(name: str | bytes) -> str:
    """
    A domain name as mailhub compares them: lower case, no trailing dot.

    @param name: the name, as text or as DNS gives it.

    @return: the normalised name; C{""} for the root (C{"."}).
    """
    if isinstance(name, bytes):
        name = name.decode("ascii", "replace")
    return name.strip().rstrip(".").lower()


@functools.lru_cache(maxsize=1024)
def _canonicalAddress(text: str) -> str | None:
    """
    An IP address literal in its canonical text, or C{None} if C{text} is
    none (remembered: the same few hosts come up for every message).
    """
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def _isAddress(text: str) -> bool:
    return _canonicalAddress(text) is not None


def _transient(what: str, failure: Failure) -> RoutingError:
    """
    The error for a DNS failure that may go away (RFC 3463 X.4.3, "directory
    server failure").
    """
    if failure.check(error.DNSServerError):
        why = "SERVFAIL"
    elif failure.check(error.DNSQueryRefusedError):
        why = "REFUSED"
    elif failure.check(error.DNSQueryTimeoutError, error.TimeoutError):
        why = "timeout"
    else:
        why = failure.getErrorMessage() or failure.type.__name__
    return RoutingError(False, "4.4.3", f"DNS lookup of {what} failed: {why}")


async def _mxRecords(resolver: IResolver, domain: str) -> list[tuple[int, str]]:
    """
    The MX records of C{domain} as C{(preference, exchange)}, unsorted.

    @raise RoutingError: NXDOMAIN (permanent) or a DNS failure (transient).
    """
    try:
        answers, _authority, _additional = await resolver.lookupMailExchange(domain)
    except error.DNSNameError:
        raise RoutingError(
            True, "5.1.2", f"domain {domain} does not exist (NXDOMAIN)"
        ) from None
    except Exception:
        raise _transient(f"MX {domain}", Failure()) from None
    records: list[tuple[int, str]] = []
    for rr in answers:
        if rr.type == dns.MX:
            records.append((rr.payload.preference, normalizeName(rr.payload.name.name)))
    return records


def _order(
    records: Iterable[tuple[int, str]], random: _randomModule.Random | None
) -> list[tuple[int, str]]:
    """
    Sort MX records by preference, each group of equal preference shuffled
    (RFC 5321 section 5.1: "randomized to spread the load").
    """
    rng = random if random is not None else _randomModule.SystemRandom()
    byPreference: dict[int, list[str]] = {}
    for preference, name in records:
        group = byPreference.setdefault(preference, [])
        if name not in group:
            group.append(name)
    ordered: list[tuple[int, str]] = []
    for preference in sorted(byPreference):
        group = byPreference[preference]
        rng.shuffle(group)
        ordered.extend((preference, name) for name in group)
    return ordered


async def _orderedMX(
    resolver: IResolver, domain: str, random: _randomModule.Random | None
) -> list[tuple[int, str]]:
    """
    L{lookupMX} with the preferences kept.
    """
    domain = normalizeName(domain)
    records = await _mxRecords(resolver, domain)
    if not records:
        # RFC 5321 §5.1: no MX records: the domain itself is the implicit MX,
        # with preference 0.
        return [(0, domain)]
    # RFC 7505 §3: a null MX is a single record, preference 0, exchange ".".
    if any(name == "" for _, name in records):
        raise RoutingError(
            True,
            "5.1.10",
            f"domain {domain} does not accept mail (null MX, RFC 7505)",
        )
    return _order(records, random)


async def lookupMX(
    resolver: IResolver,
    domain: str,
    *,
    random: _randomModule.Random | None = None,
) -> list[str]:
    """
    The hosts that take mail for C{domain}, most preferred first.

    Hosts of equal preference come in random order (RFC 5321 section 5.1).
    A domain without MX records has the implicit MX: itself.  Addresses are
    not looked up here (see L{resolveHost}), so the implicit MX may turn out
    to have none.

    @param resolver: the DNS resolver.
    @param domain: the mail domain.
    @param random: the source of the shuffle (tests give a seeded one);
        L{random.SystemRandom} by default.

    @return: the host names, lower case, without a trailing dot.

    @raise RoutingError: permanent for NXDOMAIN (C{5.1.2}) and a null MX
        (C{5.1.10}); transient (C{4.4.3}) for any DNS failure.
    """
    return [name for _, name in await _orderedMX(resolver, domain, random)]


async def _addresses(resolver: IResolver, host: str) -> tuple[list[str], list[Failure]]:
    """
    The addresses of C{host} and the lookups that failed other than with
    NXDOMAIN.
    """
    queries: list[Deferred[Any]] = [
        resolver.lookupIPV6Address(host),
        resolver.lookupAddress(host),
    ]
    results = await DeferredList(queries, consumeErrors=True)
    addresses: list[str] = []
    failures: list[Failure] = []
    for ok, value in results:
        if not ok:
            if not value.check(error.DNSNameError):
                failures.append(value)
            continue
        for rr in value[0]:
            if rr.type in (dns.A, dns.AAAA):
                address = str(ipaddress.ip_address(rr.payload.address))
                if address not in addresses:
                    addresses.append(address)
    return addresses, failures


async def resolveHost(resolver: IResolver, host: str) -> list[str]:
    """
    The addresses of one host: its IPv6 addresses (AAAA), then its IPv4
    addresses (A).  An address literal is its own answer.

    @param resolver: the DNS resolver.
    @param host: a host name or an address literal (C{"192.0.2.1"},
        C{"2001:db8::1"}, maybe in brackets).

    @return: the addresses as text, maybe none (the name exists but has no
        address, or does not exist).

    @raise RoutingError: transient (C{4.4.3}) if no address was found and a
        lookup failed other than with NXDOMAIN.
    """
    literal = host.strip().removeprefix("[").removesuffix("]")
    canonical = _canonicalAddress(literal)
    if canonical is not None:
        return [canonical]
    host = normalizeName(host)
    addresses, failures = await _addresses(resolver, host)
    if not addresses and failures:
        raise _transient(f"the address of {host}", failures[0])
    return addresses


class MXResolver:
    """
    Finds the hosts to deliver a domain's mail to, never this server.

    @ivar resolver: the DNS resolver.
    @ivar localNames: this server's host names (normalised) and addresses.
    @ivar hostAddresses: the addresses a wildcard listener answers on
        besides loopback (canonical text).
    """

    _log = Logger()

    def __init__(
        self,
        resolver: IResolver,
        localNames: Iterable[str] = (),
        *,
        listening: Callable[[], Iterable[tuple[str, int]]] | None = None,
        hostAddresses: Iterable[str] = (),
        random: _randomModule.Random | None = None,
    ) -> None:
        """
        @param resolver: the DNS resolver (any L{IResolver}).
        @param localNames: the names and addresses that are this server
            whatever the port: its host name, its other names.  An MX host
            with one of them is ourselves.
        @param listening: gives the C{(address, port)} pairs our SMTP
            listeners are bound to; asked at each lookup, since a port is
            known only once bound (port 0, systemd sockets).  A host with
            one of those addresses, reached on that port, is ourselves.
        @param hostAddresses: the addresses of this machine that a listener
            bound to a wildcard address also answers on, besides the
            loopback addresses (see L{interfaceAddresses}).
        @param random: the source of the shuffle of equal MX preferences.
        """
        self.resolver = resolver
        self.random = random
        self.localNames = frozenset(_normaliseLocal(n) for n in localNames)
        self._listening = listening
        self.hostAddresses = frozenset(
            a for a in (_comparableAddress(h) for h in hostAddresses) if a is not None
        )

    def isListening(self, address: str, port: int) -> bool:
        """
        Whether connecting to C{address} on C{port} would reach one of our
        own listeners.

        @param address: an IP address literal.
        @param port: the TCP port.
        """
        if self._listening is None:
            return False
        target = _comparableAddress(address)
        if target is None:
            return False
        for boundAddress, boundPort in self._listening():
            if boundPort != port:
                continue
            bound = _comparableAddress(boundAddress)
            if bound is None:
                continue
            if bound == target:
                return True
            if _kind(bound).is_unspecified:
                # A wildcard listener answers on every address of the host.
                ip = _kind(target)
                if ip.is_loopback or ip.is_unspecified or target in self.hostAddresses:
                    return True
        return False

    def whyLocal(self, name: str, addresses: Sequence[str] = (), port: int | None = None) -> str | None:
        """
        Why a host is this server, or C{None} if it is not.

        @param name: its name or address literal.
        @param addresses: its addresses.
        @param port: the port it would be reached on; C{None} to compare
            names and addresses only (not the listeners).

        @return: for people: C{"mx.example.com is this server's name"},
            C{"mx.example.com [127.0.0.1]:2525 is where this server
            listens"}.
        """
        if _normaliseLocal(name) in self.localNames:
            return f"{name} is this server's name"
        for address in addresses:
            if _normaliseLocal(address) in self.localNames:
                return f"{name} [{address}] is this server's address"
        if port is not None:
            literal = _canonicalAddress(name.strip().removeprefix("[").removesuffix("]"))
            for address in [*addresses, *([literal] if literal is not None else [])]:
                if self.isListening(address, port):
                    return f"{name} [{address}]:{port} is where this server listens"
        return None

    def isLocal(self, name: str, addresses: Sequence[str] = (), port: int | None = None) -> bool:
        """
        Whether a host is this server (see L{whyLocal}).

        @param name: its name or address literal.
        @param addresses: its addresses.
        @param port: the port it would be reached on, or C{None}.
        """
        return self.whyLocal(name, addresses, port) is not None

    async def mxHosts(self, domain: str, port: int | None = None) -> list[MXHost]:
        """
        The hosts that take mail for C{domain}, in the order to try them,
        each with its addresses; this server and the hosts less preferred
        than it are left out (RFC 5321 section 5.1), and so are hosts
        without an address.

        @param domain: the mail domain.
        @param port: the port the hosts will be reached on, to know one of
            our listeners; C{None} for names and addresses only.

        @return: at least one host.

        @raise RoutingError: see the module's docstring.
        """
        domain = normalizeName(domain)
        ordered = await _orderedMX(self.resolver, domain, self.random)
        implicit = ordered == [(0, domain)]
        lookups = [
            Deferred.fromCoroutine(_addresses(self.resolver, name)) for _, name in ordered
        ]
        results = await DeferredList(lookups, consumeErrors=True)
        found: list[tuple[int, MXHost]] = []
        failures: list[Failure] = []
        looped: str | None = None
        for (preference, name), (ok, value) in zip(ordered, results):
            if not ok:
                failures.append(value)
                continue
            addresses, failed = value
            looped = self.whyLocal(name, addresses, port)
            if looped is not None:
                # RFC 5321 §5.1: this server is an MX host of the domain: only
                # the more preferred hosts may be tried.
                found = [(p, h) for p, h in found if p < preference]
                break
            failures.extend(failed)
            if addresses:
                found.append((preference, MXHost(name, tuple(addresses))))
        hosts = [h for _, h in found]
        if looped is not None and not hosts:
            text = (
                f"mail for {domain} loops back to myself: {looped} (check the MX "
                f"records, the routes and the local domains)"
            )
            raise RoutingError(True, "5.4.6", text)
        if not hosts:
            if failures:
                raise _transient(f"the MX hosts of {domain}", failures[0])
            if implicit:
                raise RoutingError(
                    True, "5.4.4", f"domain {domain} has no MX and no address"
                )
            raise RoutingError(
                True, "5.4.4", f"no MX host of {domain} has an address"
            )
        return hosts

    async def routeHost(self, host: str, port: int | None = None) -> MXHost:
        """
        The addresses of a host named in a route (no MX lookup).

        @param host: a host name or address literal.
        @param port: the port the host will be reached on, to know one of
            our listeners; C{None} for names and addresses only.

        @return: the host with at least one address.

        @raise RoutingError: permanent C{5.4.6} if the host is this server,
            permanent C{5.4.4} if it has no address, transient C{4.4.3} on
            a DNS failure.
        """
        literal = host.strip().removeprefix("[").removesuffix("]")
        name = literal if _isAddress(literal) else normalizeName(host)
        addresses = await resolveHost(self.resolver, name)
        looped = self.whyLocal(name, addresses, port)
        if looped is not None:
            text = f"the route to {name} loops back to myself: {looped} (check the routes)"
            raise RoutingError(True, "5.4.6", text)
        if not addresses:
            raise RoutingError(True, "5.4.4", f"host {name} has no address")
        return MXHost(name, tuple(addresses))


def _normaliseLocal(name: str) -> str:
    literal = name.strip().removeprefix("[").removesuffix("]")
    canonical = _comparableAddress(literal)
    return canonical if canonical is not None else normalizeName(name)


@functools.lru_cache(maxsize=1024)
def _comparableAddress(text: str) -> str | None:
    """
    An address literal as two names of the same socket compare: canonical,
    an IPv4-mapped IPv6 address (C{::ffff:192.0.2.1}) as its IPv4 address,
    and without a zone (C{fe80::1%eth0}); C{None} if C{text} is no address.
    """
    canonical = _canonicalAddress(text.partition("%")[0])
    if canonical is None:
        return None
    address = ipaddress.ip_address(canonical)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return canonical


@functools.lru_cache(maxsize=1024)
def _kind(canonical: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """
    The address object of a canonical literal (remembered: the loop check
    asks about the same few addresses for every message).
    """
    return ipaddress.ip_address(canonical)


#: Where L{interfaceAddresses} asks the kernel for a route (documentation
#: addresses, RFC 5737 and RFC 3849; nothing is sent to them).
_PROBES = ((socket.AF_INET, "192.0.2.1"), (socket.AF_INET6, "2001:db8::1"))


def interfaceAddresses() -> list[str]:
    """
    This machine's main addresses, the ones a listener bound to a wildcard
    address answers on from the outside, found without DNS or blocking: for
    IPv4 and IPv6, the source address the kernel would use for a route to
    the outside (a UDP socket is connected, which sends nothing).

    A host with several interfaces has addresses this misses (so does one
    behind NAT: its public address is not its own); a loop through one of
    them is still stopped by the count of C{Received:} headers.

    @return: zero, one or two addresses, canonical; never fails.
    """
    found: list[str] = []
    for family, probe in _PROBES:
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as s:
                s.connect((probe, 9))
                address = _comparableAddress(s.getsockname()[0])
        except OSError:
            continue
        if address is not None and not ipaddress.ip_address(address).is_unspecified:
            found.append(address)
    return found


def _parseServer(text: str) -> tuple[str, int]:
    """
    C{"192.0.2.53"}, C{"192.0.2.53:5353"}, C{"2001:db8::53"},
    C{"[2001:db8::53]:5353"} as C{(address, port)}.

    @raise ValueError: if it is none of these.
    """
    text = text.strip()
    if text.startswith("["):
        address, _, rest = text[1:].partition("]")
        port = int(rest.removeprefix(":")) if rest else dns.PORT
        if rest and not rest.startswith(":"):
            raise ValueError(text)
    elif text.count(":") == 1:
        address, _, portText = text.partition(":")
        port = int(portText)
    else:
        address, port = text, dns.PORT
    address = str(ipaddress.ip_address(address))
    if not 0 < port < 65536:
        raise ValueError(text)
    return address, port


def makeResolver(
    servers: list[str] | None, *, resolvconf: str | None = None
) -> IResolver:
    """
    Make the DNS resolver the relay uses.

    @param servers: name servers as C{"address"} or C{"address:port"}
        (C{"[v6-address]:port"}); C{None} for those of the system's
        C{resolv.conf}.
    @param resolvconf: another C{resolv.conf} to read when C{servers} is
        C{None}.

    @return: a caching resolver (also reading C{/etc/hosts}).  It uses the
        global reactor (L{client.createResolver} takes no other), so only
        the composition root calls this.

    @raise ValueError: if a server is not an address with an optional port.
    """
    if servers is None:
        return client.createResolver(resolvconf=resolvconf)  # type: ignore[no-any-return]
    parsed = [_parseServer(s) for s in servers]
    if not parsed:
        raise ValueError("no DNS servers given")
    return client.createResolver(servers=parsed)  # type: ignore[no-any-return]


class LazyResolver:
    """
    Makes the real resolver on the first lookup, and stops it on
    L{close}: Twisted's resolver re-reads C{resolv.conf} on a timer from
    the moment it exists, which a server that never relays need not pay
    for, and which must not outlive the service.

    @param make: makes the resolver (L{makeResolver} with its arguments).
    """

    def __init__(self, make: Callable[[], IResolver]) -> None:
        self._make = make
        self._resolver: IResolver | None = None

    def _get(self) -> IResolver:
        if self._resolver is None:
            self._resolver = self._make()
        return self._resolver

    def lookupMailExchange(self, name: str, timeout: Any = None) -> Deferred[Any]:
        return self._get().lookupMailExchange(name, timeout)

    def lookupAddress(self, name: str, timeout: Any = None) -> Deferred[Any]:
        return self._get().lookupAddress(name, timeout)

    def lookupIPV6Address(self, name: str, timeout: Any = None) -> Deferred[Any]:
        return self._get().lookupIPV6Address(name, timeout)

    def close(self) -> None:
        """
        Cancel the resolver's timers (its C{resolv.conf} re-reading).
        """
        resolvers = getattr(self._resolver, "resolvers", [self._resolver])
        for resolver in resolvers:
            call = getattr(resolver, "_parseCall", None)
            if call is not None and call.active():
                call.cancel()
        self._resolver = None
