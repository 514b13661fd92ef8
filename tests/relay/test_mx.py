# -*- test-case-name: tests.relay.test_mx -*-
"""
Tests for L{mailhub.relay.mx}, against a fake L{IResolver}.
"""

from __future__ import annotations

import ipaddress
import random
from typing import Any, Coroutine, TypeVar

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IResolver
from twisted.names import client, dns, error
from twisted.names.common import ResolverBase
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from mailhub.errors import DeliveryError
from mailhub.relay import mx as mxModule
from mailhub.relay.mx import (
    MXHost,
    MXResolver,
    RoutingError,
    interfaceAddresses,
    lookupMX,
    makeResolver,
    resolveHost,
)

T = TypeVar("T")

_TYPES = {dns.MX: dns.Record_MX, dns.A: dns.Record_A, dns.AAAA: dns.Record_AAAA}


@implementer(IResolver)
class FakeResolver(ResolverBase):
    """
    An L{IResolver} answering from a table, synchronously.

    C{records[(name, type)]} is a list of payload arguments (C{(10,
    "mx.example")} for MX, an address for A and AAAA) or an exception to
    fail with.  A name and type not in the table is NOERROR with no data.

    @ivar queries: every C{(name, type)} asked, in order.
    """

    def __init__(self, records: dict[tuple[str, int], Any] | None = None) -> None:
        super().__init__()
        self.records: dict[tuple[str, int], Any] = dict(records or {})
        self.queries: list[tuple[str, int]] = []

    def add(self, name: str, type: int, *values: Any) -> None:
        self.records.setdefault((name, type), []).extend(values)

    def _lookup(self, name: bytes, cls: int, type: int, timeout: Any) -> Deferred[Any]:
        key = (name.decode("ascii").lower().rstrip("."), type)
        self.queries.append(key)
        value = self.records.get(key, [])
        if isinstance(value, BaseException):
            return fail(value)
        answers = []
        for v in value:
            args = v if isinstance(v, tuple) else (v,)
            payload = _TYPES[type](*args)
            answers.append(dns.RRHeader(name=key[0], type=type, payload=payload, ttl=60))
        return succeed((answers, [], []))


def run(test: SynchronousTestCase, coroutine: Coroutine[Any, Any, T]) -> T:
    """
    The result of a coroutine that finishes synchronously.
    """
    return test.successResultOf(Deferred.fromCoroutine(coroutine))


def failure(test: SynchronousTestCase, coroutine: Coroutine[Any, Any, Any]) -> RoutingError:
    """
    The L{RoutingError} a coroutine fails with, synchronously.
    """
    f = test.failureResultOf(Deferred.fromCoroutine(coroutine), RoutingError)
    assert isinstance(f.value, RoutingError)
    return f.value


class FakeResolverTests(SynchronousTestCase):
    def test_interface(self) -> None:
        """
        The fake provides L{IResolver}.
        """
        self.assertTrue(verifyObject(IResolver, FakeResolver()))


class LookupMXTests(SynchronousTestCase):
    def test_preferenceOrder(self) -> None:
        """
        MX hosts come most preferred (lowest preference) first, with names
        lower-cased and without the trailing dot.
        """
        r = FakeResolver()
        r.add("example.com", dns.MX, (30, "C.example.com."), (10, "a.example.com"), (20, "b.example.com"))
        self.assertEqual(
            run(self, lookupMX(r, "Example.COM.")),
            ["a.example.com", "b.example.com", "c.example.com"],
        )

    def test_tiesShuffled(self) -> None:
        """
        Hosts of equal preference come in the order the injected random
        source shuffles them: the same seed gives the same order, other
        seeds others, and the preference order holds throughout.
        """
        r = FakeResolver()
        r.add("example.com", dns.MX, (5, "first"), (10, "a"), (10, "b"), (10, "c"), (20, "last"))
        orders = set()
        for seed in range(40):
            order = run(self, lookupMX(r, "example.com", random=random.Random(seed)))
            self.assertEqual(order, run(self, lookupMX(r, "example.com", random=random.Random(seed))))
            self.assertEqual(order[0], "first")
            self.assertEqual(order[-1], "last")
            self.assertEqual(sorted(order[1:4]), ["a", "b", "c"])
            orders.add(tuple(order))
        self.assertGreater(len(orders), 1)

    def test_implicitMX(self) -> None:
        """
        A domain without MX records is its own mail exchanger (RFC 5321
        section 5.1).
        """
        self.assertEqual(run(self, lookupMX(FakeResolver(), "example.com")), ["example.com"])

    def test_nxdomain(self) -> None:
        """
        NXDOMAIN is permanent: C{5.1.2}.
        """
        r = FakeResolver({("nowhere.example", dns.MX): error.DNSNameError()})
        e = failure(self, lookupMX(r, "nowhere.example"))
        self.assertIsInstance(e, DeliveryError)
        self.assertEqual((e.permanent, e.code, e.enhanced), (True, 0, "5.1.2"))
        self.assertIn("nowhere.example", e.text)

    def test_nullMX(self) -> None:
        """
        A null MX (RFC 7505) is permanent: C{5.1.10}.
        """
        for exchange in (b".", b""):
            r = FakeResolver()
            r.add("example.com", dns.MX, (0, exchange))
            e = failure(self, lookupMX(r, "example.com"))
            self.assertEqual((e.permanent, e.enhanced), (True, "5.1.10"))
            self.assertIn("does not accept mail", e.text)

    def test_transientFailures(self) -> None:
        """
        SERVFAIL, REFUSED and timeouts are transient: C{4.4.3}.
        """
        for exception, word in [
            (error.DNSServerError(), "SERVFAIL"),
            (error.DNSQueryRefusedError(), "REFUSED"),
            (error.DNSQueryTimeoutError(5), "timeout"),
        ]:
            r = FakeResolver({("example.com", dns.MX): exception})
            e = failure(self, lookupMX(r, "example.com"))
            self.assertEqual((e.permanent, e.enhanced), (False, "4.4.3"))
            self.assertIn(word, e.text)


class ResolveHostTests(SynchronousTestCase):
    def test_ipv6First(self) -> None:
        """
        AAAA addresses come before A addresses.
        """
        r = FakeResolver()
        r.add("mx.example", dns.A, "192.0.2.1", "192.0.2.2")
        r.add("mx.example", dns.AAAA, "2001:db8::1")
        self.assertEqual(
            run(self, resolveHost(r, "MX.example.")),
            ["2001:db8::1", "192.0.2.1", "192.0.2.2"],
        )

    def test_literal(self) -> None:
        """
        An address literal is its own address, with no query.
        """
        r = FakeResolver()
        self.assertEqual(run(self, resolveHost(r, "[192.0.2.7]")), ["192.0.2.7"])
        self.assertEqual(run(self, resolveHost(r, "2001:DB8::7")), ["2001:db8::7"])
        self.assertEqual(r.queries, [])

    def test_none(self) -> None:
        """
        A name without addresses has none; NXDOMAIN too.
        """
        r = FakeResolver({("gone.example", dns.A): error.DNSNameError()})
        self.assertEqual(run(self, resolveHost(r, "gone.example")), [])

    def test_failureWithoutAddress(self) -> None:
        """
        A failed lookup with no address found is transient; with an address
        from the other lookup it does not matter.
        """
        r = FakeResolver({("mx.example", dns.AAAA): error.DNSServerError()})
        self.assertEqual(failure(self, resolveHost(r, "mx.example")).enhanced, "4.4.3")
        r.add("mx.example", dns.A, "192.0.2.1")
        self.assertEqual(run(self, resolveHost(r, "mx.example")), ["192.0.2.1"])


class MXResolverTests(SynchronousTestCase):
    def resolver(self) -> FakeResolver:
        r = FakeResolver()
        r.add("example.com", dns.MX, (10, "mx1.example.com"), (20, "mx2.example.com"))
        r.add("mx1.example.com", dns.A, "192.0.2.1")
        r.add("mx2.example.com", dns.A, "192.0.2.2")
        r.add("mx2.example.com", dns.AAAA, "2001:db8::2")
        return r

    def test_hosts(self) -> None:
        """
        Every MX host with its addresses, in order.
        """
        hosts = run(self, MXResolver(self.resolver(), ["mail.mailhub.test"]).mxHosts("example.com"))
        self.assertEqual(
            hosts,
            [
                MXHost("mx1.example.com", ("192.0.2.1",)),
                MXHost("mx2.example.com", ("2001:db8::2", "192.0.2.2")),
            ],
        )

    def test_implicitMX(self) -> None:
        """
        Without MX records the domain's own addresses are used; without
        those either the failure is permanent, C{5.4.4}.
        """
        r = FakeResolver()
        r.add("example.net", dns.A, "192.0.2.9")
        self.assertEqual(
            run(self, MXResolver(r).mxHosts("example.net")),
            [MXHost("example.net", ("192.0.2.9",))],
        )
        e = failure(self, MXResolver(r).mxHosts("example.org"))
        self.assertEqual((e.permanent, e.enhanced), (True, "5.4.4"))
        self.assertIn("no MX and no address", e.text)

    def test_hostsWithoutAddress(self) -> None:
        """
        An MX host without an address is skipped; if none has one, the
        failure is permanent, unless a lookup failed (transient).
        """
        r = self.resolver()
        del r.records[("mx1.example.com", dns.A)]
        hosts = run(self, MXResolver(r).mxHosts("example.com"))
        self.assertEqual([h.name for h in hosts], ["mx2.example.com"])
        del r.records[("mx2.example.com", dns.A)]
        del r.records[("mx2.example.com", dns.AAAA)]
        self.assertEqual(failure(self, MXResolver(r).mxHosts("example.com")).enhanced, "5.4.4")
        r.records[("mx2.example.com", dns.A)] = error.DNSQueryTimeoutError(5)
        e = failure(self, MXResolver(r).mxHosts("example.com"))
        self.assertEqual((e.permanent, e.enhanced), (False, "4.4.3"))

    def test_ourselvesByName(self) -> None:
        """
        An MX that is this server (by name) is a routing loop: permanent,
        C{5.4.6}.
        """
        r = FakeResolver()
        r.add("example.com", dns.MX, (10, "Mail.Mailhub.Test."))
        r.add("mail.mailhub.test", dns.A, "192.0.2.50")
        e = failure(self, MXResolver(r, ["mail.mailhub.test"]).mxHosts("example.com"))
        self.assertEqual((e.permanent, e.code, e.enhanced), (True, 0, "5.4.6"))
        self.assertIn("loops back to myself", e.text)

    def test_ourselvesByAddress(self) -> None:
        """
        An MX with one of our addresses is this server too.
        """
        r = FakeResolver()
        r.add("example.com", dns.MX, (10, "alias.example.com"))
        r.add("alias.example.com", dns.AAAA, "2001:db8::50")
        e = failure(self, MXResolver(r, ["2001:DB8:0::50"]).mxHosts("example.com"))
        self.assertEqual(e.enhanced, "5.4.6")

    def test_backupMX(self) -> None:
        """
        When this server is a less preferred MX, only the hosts more
        preferred than it are tried (RFC 5321 section 5.1).
        """
        r = self.resolver()
        r.add("example.com", dns.MX, (30, "mx3.example.com"))
        r.add("mx3.example.com", dns.A, "192.0.2.3")
        hosts = run(self, MXResolver(r, ["mx2.example.com"]).mxHosts("example.com"))
        self.assertEqual([h.name for h in hosts], ["mx1.example.com"])

    def test_routeHost(self) -> None:
        """
        A route's host is resolved without an MX lookup; a route to
        ourselves is a loop.
        """
        r = self.resolver()
        resolver = MXResolver(r, ["192.0.2.1"])
        self.assertEqual(
            run(self, resolver.routeHost("mx2.example.com")),
            MXHost("mx2.example.com", ("2001:db8::2", "192.0.2.2")),
        )
        self.assertEqual(run(self, resolver.routeHost("[192.0.2.8]")), MXHost("192.0.2.8", ("192.0.2.8",)))
        self.assertEqual(failure(self, resolver.routeHost("mx1.example.com")).enhanced, "5.4.6")
        self.assertEqual(failure(self, resolver.routeHost("192.0.2.1")).enhanced, "5.4.6")
        self.assertEqual(failure(self, resolver.routeHost("none.example.com")).enhanced, "5.4.4")
        self.assertNotIn(("example.com", dns.MX), r.queries)


class ListenerLoopTests(SynchronousTestCase):
    """
    A host reached where one of our SMTP listeners is bound (address and
    port) is this server, whatever its name.
    """

    def resolver(self) -> FakeResolver:
        r = FakeResolver()
        r.add("example.com", dns.MX, (10, "mx1.example.com"), (20, "mx2.example.com"))
        r.add("mx1.example.com", dns.A, "192.0.2.1")
        r.add("mx2.example.com", dns.A, "127.0.0.1")
        r.add("loop.example.com", dns.MX, (10, "self.example.com"))
        r.add("self.example.com", dns.A, "127.0.0.1")
        return r

    def mx(self, r: FakeResolver, *listening: tuple[str, int], hostAddresses: tuple[str, ...] = ()) -> MXResolver:
        return MXResolver(
            r, ["mail.mailhub.test"], listening=lambda: listening, hostAddresses=hostAddresses
        )

    def test_samePort(self) -> None:
        """
        An MX whose address and port are those of a listener is a loop:
        permanent, C{5.4.6}, the text naming the host, address and port.
        """
        e = failure(self, self.mx(self.resolver(), ("127.0.0.1", 2525)).mxHosts("loop.example.com", 2525))
        self.assertEqual((e.permanent, e.code, e.enhanced), (True, 0, "5.4.6"))
        self.assertIn("mail for loop.example.com loops back to myself", e.text)
        self.assertIn("self.example.com [127.0.0.1]:2525", e.text)

    def test_otherPort(self) -> None:
        """
        The same address on another port is another server (the test MX
        servers on loopback), and without a port only names count.
        """
        resolver = self.mx(self.resolver(), ("127.0.0.1", 2525))
        expected = [MXHost("self.example.com", ("127.0.0.1",))]
        self.assertEqual(run(self, resolver.mxHosts("loop.example.com", 2526)), expected)
        self.assertEqual(run(self, resolver.mxHosts("loop.example.com")), expected)

    def test_backupMX(self) -> None:
        """
        A less preferred MX that is one of our listeners: only the more
        preferred hosts are tried (RFC 5321 section 5.1).
        """
        hosts = run(self, self.mx(self.resolver(), ("127.0.0.1", 25)).mxHosts("example.com", 25))
        self.assertEqual(hosts, [MXHost("mx1.example.com", ("192.0.2.1",))])

    def test_wildcard(self) -> None:
        """
        A listener on C{0.0.0.0} or C{::} answers on every loopback address,
        on the wildcard itself and on the host's addresses, of either
        family (an IPv4-mapped address is its IPv4 address), on its port
        only.
        """
        for wildcard in ("0.0.0.0", "::"):
            resolver = self.mx(FakeResolver(), (wildcard, 25), hostAddresses=("192.0.2.50", "2001:DB8::50"))
            for address in ("127.0.0.1", "127.0.0.2", "::1", "0.0.0.0", "192.0.2.50", "2001:db8::50",
                            "::ffff:192.0.2.50"):
                self.assertTrue(resolver.isListening(address, 25), (wildcard, address))
                self.assertFalse(resolver.isListening(address, 26), (wildcard, address))
            for address in ("192.0.2.51", "2001:db8::51", "not an address"):
                self.assertFalse(resolver.isListening(address, 25), (wildcard, address))

    def test_specificAddress(self) -> None:
        """
        A listener bound to one address is reached only there: not on
        another loopback address, nor on the host's other addresses.
        """
        resolver = self.mx(FakeResolver(), ("127.0.0.1", 25), ("2001:db8::50", 25), hostAddresses=("192.0.2.50",))
        self.assertTrue(resolver.isListening("127.0.0.1", 25))
        self.assertTrue(resolver.isListening("2001:DB8:0::50", 25))
        self.assertFalse(resolver.isListening("127.0.0.2", 25))
        self.assertFalse(resolver.isListening("192.0.2.50", 25))

    def test_listeningAskedEachTime(self) -> None:
        """
        The listeners are asked at each lookup: a port bound after the
        resolver was made (port 0) counts.
        """
        bound: list[tuple[str, int]] = []
        resolver = MXResolver(self.resolver(), listening=lambda: bound)
        self.assertEqual(len(run(self, resolver.mxHosts("loop.example.com", 2525))), 1)
        bound.append(("127.0.0.1", 2525))
        self.assertEqual(failure(self, resolver.mxHosts("loop.example.com", 2525)).enhanced, "5.4.6")

    def test_routeHost(self) -> None:
        """
        A route to one of our listeners, as an address literal or a name,
        is a loop; to the same address on another port it is not.
        """
        resolver = self.mx(self.resolver(), ("127.0.0.1", 2525))
        for host in ("[127.0.0.1]", "127.0.0.1", "self.example.com", "[::ffff:127.0.0.1]"):
            e = failure(self, resolver.routeHost(host, 2525))
            self.assertEqual((e.permanent, e.enhanced), (True, "5.4.6"), host)
            self.assertIn("loops back to myself", e.text)
            self.assertIn(":2525 is where this server listens", e.text)
        self.assertEqual(
            run(self, resolver.routeHost("[127.0.0.1]", 2526)), MXHost("127.0.0.1", ("127.0.0.1",))
        )

    def test_byNameWhateverThePort(self) -> None:
        """
        Our host name is ourselves on any port, and says so.
        """
        r = self.resolver()
        r.add("mail.mailhub.test", dns.A, "192.0.2.60")
        e = failure(self, self.mx(r).routeHost("mail.mailhub.test", 2526))
        self.assertIn("mail.mailhub.test is this server's name", e.text)


class InterfaceAddressesTests(SynchronousTestCase):
    def test_addresses(self) -> None:
        """
        At most one address of each family, canonical, never a wildcard.
        """
        found = interfaceAddresses()
        self.assertLessEqual(len(found), 2)
        for address in found:
            parsed = ipaddress.ip_address(address)
            self.assertEqual(str(parsed), address)
            self.assertFalse(parsed.is_unspecified)
        self.assertLessEqual(len({ipaddress.ip_address(a).version for a in found}), len(found))

    def test_noRoute(self) -> None:
        """
        Without a route (or sockets) there are none, and no error.
        """

        class NoRoute:
            def __init__(self, *args: Any) -> None:
                raise OSError(101, "Network is unreachable")

        self.patch(mxModule.socket, "socket", NoRoute)
        self.assertEqual(interfaceAddresses(), [])


class MakeResolverTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.calls: list[dict[str, Any]] = []

        def createResolver(**kwargs: Any) -> FakeResolver:
            self.calls.append(kwargs)
            return FakeResolver()

        self.patch(client, "createResolver", createResolver)

    def test_system(self) -> None:
        """
        C{None} uses the system's C{resolv.conf}.
        """
        makeResolver(None)
        self.assertEqual(self.calls, [{"resolvconf": None}])

    def test_servers(self) -> None:
        """
        Servers are addresses with an optional port, IPv6 in brackets.
        """
        makeResolver(["192.0.2.53", "192.0.2.54:5353", "2001:db8::53", "[2001:db8::54]:5354"])
        self.assertEqual(
            self.calls,
            [
                {
                    "servers": [
                        ("192.0.2.53", 53),
                        ("192.0.2.54", 5353),
                        ("2001:db8::53", 53),
                        ("2001:db8::54", 5354),
                    ]
                }
            ],
        )

    def test_badServers(self) -> None:
        """
        Anything else is a L{ValueError}.
        """
        for servers in (["ns.example.com"], ["192.0.2.1:0"], ["[2001:db8::1]x"], ["192.0.2.1:dns"], []):
            self.assertRaises(ValueError, makeResolver, servers)
        self.assertEqual(self.calls, [])


