# -*- test-case-name: tests.test_config -*-
"""
The configuration file: one TOML document, every key optional.

L{load} reads and validates it into a frozen L{Config}; anything wrong is a
L{ConfigError} whose text names the file, the key and the problem, so that
start-up can stop before any port is bound.  L{embedded} is the
configuration used when there is no file at all (DESIGN.md, "Embedded
default").

The annotated reference is C{etc/mailhub.toml}; a test loads it.
"""

from __future__ import annotations

import ipaddress
import json
import math
import os
import tomllib
from typing import Any, Callable, Iterable, Mapping

from attrs import field, frozen

from mailhub.errors import ConfigError

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

MiB = 1024 * 1024


@frozen
class Limits:
    """
    Named limits, with the defaults a public MX can live with.

    @ivar messageSize: largest message accepted, in octets (RFC 1870 SIZE).
    @ivar recipients: most recipients in one transaction; RFC 5321
        §4.5.3.1.8 asks for at least 100.
    @ivar lineLength: longest line accepted, in octets without the CRLF, in
        commands and in message text.  RFC 5321 §4.5.3.1.6 allows 998 but
        asks servers not to be strict; real mail has longer lines.
    @ivar connectionsPerPeer: most simultaneous connections from one address.
    @ivar peerLimitExempt: networks the per-peer limit does not apply to.
    @ivar idleTimeout: seconds a client may stay silent (RFC 5321 §4.5.3.2.7
        gives the server 5 minutes).
    @ivar errors: protocol errors one session may make before it is dropped.
    @ivar connectionsPerUser: most simultaneous IMAP sessions of one user,
        whatever their addresses.
    """

    messageSize: int = 50 * MiB
    recipients: int = 100
    lineLength: int = 8192
    connectionsPerPeer: int = 20
    peerLimitExempt: tuple[IPNetwork, ...] = (
        ipaddress.ip_network("127.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
    )
    idleTimeout: float = 300.0
    errors: int = 20
    connectionsPerUser: int = 20


@frozen
class Listeners:
    """
    Where each service listens, as Twisted endpoint strings.

    @ivar smtp: the MX listeners (SMTP with STARTTLS).
    @ivar submission: mail clients, STARTTLS then AUTH (RFC 6409).
    @ivar submissions: mail clients, implicit TLS (RFC 8314).
    @ivar pop3: POP3 with STLS.
    @ivar pop3s: POP3, implicit TLS.
    @ivar imap: IMAP with STARTTLS.
    @ivar imaps: IMAP, implicit TLS.

    The implicit-TLS listeners are plain endpoint strings (C{tcp:465});
    mailhub adds TLS with the configured certificate.
    """

    smtp: tuple[str, ...] = ("tcp:2525:interface=127.0.0.1",)
    submission: tuple[str, ...] = ("tcp:2587:interface=127.0.0.1",)
    submissions: tuple[str, ...] = ("tcp:2465:interface=127.0.0.1",)
    pop3: tuple[str, ...] = ("tcp:1110:interface=127.0.0.1",)
    pop3s: tuple[str, ...] = ("tcp:1995:interface=127.0.0.1",)
    imap: tuple[str, ...] = ("tcp:1143:interface=127.0.0.1",)
    imaps: tuple[str, ...] = ("tcp:1993:interface=127.0.0.1",)


@frozen
class TLSFiles:
    """
    The server's certificate and key.  When both are C{None} a self-signed
    pair is made under the data directory on first start and reused.
    """

    certificate: str | None = None
    key: str | None = None


@frozen
class Auth:
    """
    How users log in.

    @ivar checkers: credential checkers as Twisted C{strcred} strings
        (C{"mailhub-file:/var/lib/mailhub/users"},
        C{"mailhub-http:https://auth.example/check"}, or a third party's);
        empty means the users file.
    @ivar mailboxes: what makes a local mailbox exist: C{"users"} (an
        entry in the users file) or C{"directories"} (its Maildir exists,
        for checkers that have no user list).
    @ivar mx: offer AUTH on the MX listeners too.
    """

    checkers: tuple[str, ...] = ()
    mailboxes: str = "users"
    mx: bool = False


@frozen
class Relay:
    """
    Relaying mail to other domains.

    @ivar firstRetry: seconds before the first retry.
    @ivar retryFactor: each wait is this many times the one before (2.0:
        doubling; 1.0: always C{firstRetry}).
    @ivar maxRetry: the longest wait between tries (the delay grows up to
        it).
    @ivar delayWarning: seconds after which the sender is told the message
        is delayed, or C{None} for never.
    @ivar lifetime: seconds after which an undelivered message is bounced.
    @ivar concurrency: deliveries in flight at once, in all.
    @ivar perDomain: deliveries in flight at once to one domain.
    @ivar tls: certificate policy for STARTTLS: C{"opportunistic"} (any
        certificate) or C{"verify"} (the MX name must match).
    @ivar verifyDomains: domains to which C{"verify"} applies whatever
        C{tls} says.
    @ivar smarthost: send everything through this host (C{"[host]:port"}
        means no MX lookup), or C{None} for MX delivery.
    @ivar smarthostTLS: the smarthost's certificate policy, overriding
        C{tls} and C{verifyDomains}: C{"opportunistic"}, C{"require"} or
        C{"verify"} (its certificate must name the smarthost); C{None}
        (not given): C{"verify"} when C{smarthostUser} is set or the
        recipient domain is verified (C{tls}, C{verifyDomains}), else
        C{"require"}.
    @ivar smarthostUser: AUTH user at the smarthost, or C{None}.
    @ivar smarthostPassword: its password.
    @ivar transport: per-domain routes, like Postfix's transport map.
    @ivar dnsServers: C{(host, port)} of the DNS servers, or empty for the
        system's C{resolv.conf}.
    """

    firstRetry: float = 300.0
    retryFactor: float = 2.0
    maxRetry: float = 1800.0
    delayWarning: float | None = 4 * 3600.0
    lifetime: float = 5 * 86400.0
    concurrency: int = 20
    perDomain: int = 4
    tls: str = "opportunistic"
    verifyDomains: tuple[str, ...] = ()
    smarthost: str | None = None
    smarthostTLS: str | None = None
    smarthostUser: str | None = None
    smarthostPassword: str | None = None
    transport: Mapping[str, str] = field(factory=dict)
    dnsServers: tuple[tuple[str, int], ...] = ()


@frozen
class Config:
    """
    A validated configuration.

    @ivar source: the file it came from, or C{None} for the embedded default.
    @ivar hostname: this server's name: greeting, C{Received:}, certificate.
    @ivar domains: the local domains, lower case; the first is the primary.
    @ivar dataDir: the data directory (mailboxes, spool, certificate).
    @ivar aliases: C{alias address -> target addresses}, all lower case and
        fully qualified; the table and the alias file merged.
    @ivar recipientDelimiter: the subaddress delimiter (C{"+"}), or C{""}
        for none.
    @ivar trustedNetworks: networks that may relay without authenticating.
    """

    source: str | None = None
    hostname: str = "localhost"
    domains: tuple[str, ...] = ("localhost",)
    dataDir: str = "mailhub-data"
    listeners: Listeners = field(factory=Listeners)
    tls: TLSFiles = field(factory=TLSFiles)
    limits: Limits = field(factory=Limits)
    aliases: Mapping[str, tuple[str, ...]] = field(factory=dict)
    recipientDelimiter: str = "+"
    trustedNetworks: tuple[IPNetwork, ...] = ()
    usersFile: str | None = None
    auth: Auth = field(factory=Auth)
    relay: Relay = field(factory=Relay)

    @property
    def users(self) -> str:
        """
        The users file: C{users} from the file, or C{DATA/users}.
        """
        return self.usersFile or os.path.join(self.dataDir, "users")

    @property
    def primaryDomain(self) -> str:
        """
        The first local domain: the one C{postmaster} without a domain means.
        """
        return self.domains[0]

    def withDataDir(self, dataDir: str) -> "Config":
        """
        A copy with another data directory (the C{--data} option).
        """
        from attrs import evolve

        return evolve(self, dataDir=dataDir)


def embedded() -> Config:
    """
    The configuration used when no file is given.
    """
    return Config()


def load(path: str, dataDir: str | None = None) -> Config:
    """
    Read and validate a configuration file.

    @param path: the TOML file.
    @param dataDir: a data directory that overrides the file's (C{--data}).
    @raise ConfigError: the file cannot be read or something in it is wrong.
    """
    try:
        with open(path, "rb") as f:
            document = tomllib.load(f)
    except OSError as e:
        raise ConfigError(path, None, f"cannot read: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        # tomllib decodes the bytes itself and lets this through.
        raise ConfigError(
            path, None, f"not valid UTF-8: {e.reason} (at {_lineOf(e)})"
        ) from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(path, None, f"not valid TOML: {e}") from None
    config = fromDocument(document, source=path)
    if dataDir is not None:
        config = config.withDataDir(dataDir)
    return config


def fromDocument(document: Mapping[str, Any], source: str | None = None) -> Config:
    """
    Validate a parsed TOML document.

    Relative paths in it are taken relative to the directory of C{source}.

    @raise ConfigError: naming the first key that is wrong.
    """
    reader = _Reader(source)
    return reader.config(document)


class _Reader:
    """
    Walks a TOML document, checking each key and naming it when it is wrong.
    """

    def __init__(self, source: str | None) -> None:
        self.source = source
        self.base = os.path.dirname(os.path.abspath(source)) if source else os.getcwd()

    def fail(self, key: str | None, problem: str) -> ConfigError:
        return ConfigError(self.source, key, problem)

    def table(self, value: Any, key: str, known: Iterable[str]) -> Mapping[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(key or None, "must be a table")
        allowed = set(known)
        for name in value:
            if name not in allowed:
                where = f"{key}.{_quoteKey(name)}" if key else _quoteKey(name)
                raise self.fail(where, "unknown key")
        return value

    def path(self, value: str) -> str:
        return os.path.normpath(os.path.join(self.base, os.path.expanduser(value)))

    def string(self, value: Any, key: str, allowEmpty: bool = False) -> str:
        if not isinstance(value, str):
            raise self.fail(key, f"must be a string, not {_kind(value)}")
        if not allowEmpty and not value.strip():
            raise self.fail(key, "must not be empty")
        return value

    def strings(self, value: Any, key: str) -> tuple[str, ...]:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            raise self.fail(key, f"must be a list of strings, not {_kind(value)}")
        return tuple(self.string(v, f"{key}[{i}]") for i, v in enumerate(value))

    def integer(self, value: Any, key: str, minimum: int = 1) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(key, f"must be an integer, not {_kind(value)}")
        if value < minimum:
            raise self.fail(key, f"must be at least {minimum}, not {value}")
        return value

    def seconds(self, value: Any, key: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(key, f"must be a number of seconds, not {_kind(value)}")
        if not math.isfinite(value):
            # TOML has inf and nan; neither is a timeout the reactor can use.
            raise self.fail(key, f"must be a finite number of seconds, not {value}")
        if value <= 0:
            raise self.fail(key, f"must be more than 0 seconds, not {value}")
        return float(value)

    def factor(self, value: Any, key: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(key, f"must be a number, not {_kind(value)}")
        if not math.isfinite(value) or value < 1:
            # Less than 1 would shrink the waits; inf and nan are no factor.
            raise self.fail(key, f"must be a finite number of at least 1, not {value}")
        return float(value)

    def networks(self, value: Any, key: str) -> tuple[IPNetwork, ...]:
        result = []
        for i, text in enumerate(self.strings(value, key)):
            try:
                result.append(ipaddress.ip_network(text.strip(), strict=False))
            except ValueError:
                raise self.fail(
                    f"{key}[{i}]", f"not a network address like 192.0.2.0/24: {text!r}"
                ) from None
        return tuple(result)

    def domain(self, value: Any, key: str) -> str:
        text = self.string(value, key).strip().lower().rstrip(".")
        if not text.isascii():
            # Peers send A-labels (RFC 5890); a U-label here would never match.
            try:
                hint = f"write it as {text.encode('idna').decode('ascii')!r}"
            except UnicodeError:
                hint = "write it in its xn-- form"
            raise self.fail(key, f"not an ASCII domain name: {value!r}; {hint}")
        if not _isDomain(text):
            raise self.fail(key, f"not a domain name: {value!r}")
        return text

    def config(self, document: Mapping[str, Any]) -> Config:
        known: dict[str, Callable[[Any, str], Any]] = {
            "hostname": self.domain,
            "domains": self.domainList,
            "data": lambda v, k: self.path(self.string(v, k)),
            "listeners": self.listeners,
            "tls": self.tls,
            "limits": self.limits,
            "aliases": lambda v, k: v,
            "alias_file": lambda v, k: self.path(self.string(v, k)),
            "recipient_delimiter": self.delimiter,
            "trusted_networks": self.networks,
            "users": lambda v, k: self.path(self.string(v, k)),
            "auth": self.auth,
            "relay": self.relay,
        }
        top = self.table(document, "", known)
        values = {name: known[name](top[name], name) for name in top}
        domains = values.get("domains", Config.__attrs_attrs__.domains.default)
        aliases = self.aliases(
            values.get("aliases", {}), values.get("alias_file"), domains
        )
        names = {
            "hostname": "hostname",
            "domains": "domains",
            "data": "dataDir",
            "listeners": "listeners",
            "tls": "tls",
            "limits": "limits",
            "recipient_delimiter": "recipientDelimiter",
            "trusted_networks": "trustedNetworks",
            "users": "usersFile",
            "auth": "auth",
            "relay": "relay",
        }
        kwargs = {names[k]: v for k, v in values.items() if k in names}
        return Config(source=self.source, aliases=aliases, **kwargs)

    def domainList(self, value: Any, key: str) -> tuple[str, ...]:
        items = self.strings(value, key)
        if not items:
            raise self.fail(key, "must name at least one domain")
        domains = tuple(self.domain(v, f"{key}[{i}]") for i, v in enumerate(items))
        for i, domain in enumerate(domains):
            if domain in domains[:i]:
                raise self.fail(f"{key}[{i}]", f"names {domain!r} a second time")
        return domains

    def delimiter(self, value: Any, key: str) -> str:
        text = self.string(value, key, allowEmpty=True)
        # RFC 5322 §3.2.3 specials would need quoting in the local part.
        if len(text) > 1 or text and (
            text.isspace() or not text.isprintable() or text in '()<>[]:;@\\,."'
        ):
            raise self.fail(key, f"must be one character like '+' or '-', or empty: {text!r}")
        return text

    def listeners(self, value: Any, key: str) -> Listeners:
        known = ("smtp", "submission", "submissions", "pop3", "pop3s", "imap", "imaps")
        table = self.table(value, key, known)
        return Listeners(
            **{name: self.strings(table[name], f"{key}.{name}") for name in table}
        )

    def auth(self, value: Any, key: str) -> Auth:
        table = self.table(value, key, ("checkers", "mailboxes", "mx"))
        kwargs: dict[str, Any] = {}
        if "checkers" in table:
            kwargs["checkers"] = self.strings(table["checkers"], f"{key}.checkers")
        if "mailboxes" in table:
            mailboxes = self.string(table["mailboxes"], f"{key}.mailboxes")
            if mailboxes not in ("users", "directories"):
                raise self.fail(f"{key}.mailboxes", f"must be 'users' or 'directories', not {mailboxes!r}")
            kwargs["mailboxes"] = mailboxes
        if "mx" in table:
            if not isinstance(table["mx"], bool):
                raise self.fail(f"{key}.mx", f"must be true or false, not {_kind(table['mx'])}")
            kwargs["mx"] = table["mx"]
        return Auth(**kwargs)

    def relay(self, value: Any, key: str) -> Relay:
        table = self.table(
            value,
            key,
            (
                "first_retry", "retry_factor", "max_retry", "delay_warning", "lifetime", "concurrency",
                "per_domain", "tls", "verify_domains", "smarthost", "smarthost_tls",
                "smarthost_user", "smarthost_password", "transport", "dns_servers",
            ),
        )
        kwargs: dict[str, Any] = {}

        def choice(name: str, choices: tuple[str, ...]) -> str:
            text = self.string(table[name], f"{key}.{name}")
            if text not in choices:
                raise self.fail(f"{key}.{name}", f"must be one of {', '.join(choices)}, not {text!r}")
            return text

        for name, attribute in (
            ("first_retry", "firstRetry"), ("max_retry", "maxRetry"), ("lifetime", "lifetime"),
        ):
            if name in table:
                kwargs[attribute] = self.seconds(table[name], f"{key}.{name}")
        if "retry_factor" in table:
            kwargs["retryFactor"] = self.factor(table["retry_factor"], f"{key}.retry_factor")
        if "delay_warning" in table:
            value = table["delay_warning"]
            kwargs["delayWarning"] = (
                None if value == 0 else self.seconds(value, f"{key}.delay_warning")
            )
        for name, attribute in (("concurrency", "concurrency"), ("per_domain", "perDomain")):
            if name in table:
                kwargs[attribute] = self.integer(table[name], f"{key}.{name}")
        if "tls" in table:
            kwargs["tls"] = choice("tls", ("opportunistic", "verify"))
        if "smarthost_tls" in table:
            kwargs["smarthostTLS"] = choice("smarthost_tls", ("opportunistic", "require", "verify"))
        if "verify_domains" in table:
            kwargs["verifyDomains"] = tuple(
                self.domain(v, f"{key}.verify_domains[{i}]")
                for i, v in enumerate(self.strings(table["verify_domains"], f"{key}.verify_domains"))
            )
        for name, attribute in (
            ("smarthost", "smarthost"), ("smarthost_user", "smarthostUser"),
            ("smarthost_password", "smarthostPassword"),
        ):
            if name in table:
                kwargs[attribute] = self.string(table[name], f"{key}.{name}")
        if "transport" in table:
            routes = table["transport"]
            if not isinstance(routes, dict):
                raise self.fail(f"{key}.transport", "must be a table of domain = route")
            transport = {}
            for domain, route in routes.items():
                where = f"{key}.transport.{_quoteKey(domain)}"
                transport[self.domain(domain, where)] = self.string(route, where)
            kwargs["transport"] = transport
        if "dns_servers" in table:
            servers = []
            for i, text in enumerate(self.strings(table["dns_servers"], f"{key}.dns_servers")):
                host, port = text, 53
                if text.startswith("["):
                    host, _, rest = text[1:].partition("]")
                    if rest.startswith(":"):
                        port = rest[1:]
                elif text.count(":") == 1:
                    host, port = text.split(":")
                try:
                    ipaddress.ip_address(host)
                    port = int(port)
                    if not 0 < port < 65536:
                        raise ValueError(port)
                except ValueError:
                    raise self.fail(
                        f"{key}.dns_servers[{i}]", f"not an address like 192.0.2.53 or [::1]:5353: {text!r}"
                    ) from None
                servers.append((host, port))
            kwargs["dnsServers"] = tuple(servers)
        return Relay(**kwargs)

    def tls(self, value: Any, key: str) -> TLSFiles:
        table = self.table(value, key, ("certificate", "key"))
        paths = {
            name: self.path(self.string(table[name], f"{key}.{name}")) for name in table
        }
        if len(paths) == 1:
            missing = ({"certificate", "key"} - set(paths)).pop()
            raise self.fail(
                f"{key}.{missing}", "must be given too (a certificate needs its key)"
            )
        return TLSFiles(**paths)

    def limits(self, value: Any, key: str) -> Limits:
        checks: dict[str, tuple[str, Callable[[Any, str], Any]]] = {
            "message_size": ("messageSize", lambda v, k: self.integer(v, k, 1024)),
            "recipients": ("recipients", self.integer),
            "line_length": ("lineLength", lambda v, k: self.integer(v, k, 1000)),
            "connections_per_peer": ("connectionsPerPeer", self.integer),
            "peer_limit_exempt": ("peerLimitExempt", self.networks),
            "idle_timeout": ("idleTimeout", self.seconds),
            "errors": ("errors", self.integer),
            "connections_per_user": ("connectionsPerUser", self.integer),
        }
        table = self.table(value, key, checks)
        return Limits(
            **{
                checks[name][0]: checks[name][1](table[name], f"{key}.{name}")
                for name in table
            }
        )

    def address(self, text: str, key: str, domains: tuple[str, ...], default: str | None) -> str:
        """
        Normalise an alias or alias target: lower case, fully qualified.
        """
        text = text.strip().lower()
        if text.startswith("<") and text.endswith(">"):
            text = text[1:-1]
        local, at, domain = text.rpartition("@")
        if not at:
            local, domain = text, default or ""
        if not local or not domain or not _isDomain(domain) or any(
            c.isspace() or not c.isprintable() or c in '<>,;:@"\\' for c in local
        ):
            raise self.fail(key, f"not a mail address: {text!r}")
        return f"{local}@{domain}"

    def aliases(
        self, table: Any, aliasFile: str | None, domains: tuple[str, ...]
    ) -> dict[str, tuple[str, ...]]:
        """
        Merge the C{[aliases]} table and the alias file.

        A bare alias (C{"info"}) stands for that local part in every local
        domain; a bare target means the same domain as the alias.  An alias
        address may be defined only once, in the table or the file: a
        second definition is an error rather than a silent override.
        """
        # (alias, targets, the reader whose file it is in, key in that file)
        entries: list[tuple[str, Any, _Reader, str]] = []
        if not isinstance(table, dict):
            raise self.fail("aliases", "must be a table of alias = address(es)")
        for name, targets in table.items():
            entries.append((name, targets, self, f"aliases.{_quoteKey(name)}"))
        if aliasFile is not None:
            entries.extend(self.aliasFileEntries(aliasFile))
        result: dict[str, tuple[str, ...]] = {}
        definedBy: dict[str, tuple[str | None, str]] = {}
        for name, targets, where, key in entries:
            targetList = where.strings(targets, key)
            if not targetList:
                raise where.fail(key, "needs at least one target address")
            if "@" in name:
                aliasAddresses = [where.address(name, key, domains, None)]
            else:
                aliasAddresses = [where.address(name, key, domains, d) for d in domains]
            for alias in aliasAddresses:
                aliasDomain = alias.rpartition("@")[2]
                if aliasDomain not in domains:
                    raise where.fail(
                        key, f"{aliasDomain!r} is not one of the local domains"
                    )
                if alias in definedBy:
                    firstSource, firstKey = definedBy[alias]
                    if firstSource != where.source:
                        firstKey = f"{firstSource or 'the configuration'} {firstKey}"
                    raise where.fail(key, f"{alias} is already defined by {firstKey}")
                definedBy[alias] = (where.source, key)
                result[alias] = tuple(
                    where.address(t, key, domains, aliasDomain) for t in targetList
                )
        return result

    def aliasFileEntries(self, path: str) -> list[tuple[str, Any, "_Reader", str]]:
        """
        Read an alias file: C{alias: target, target} a line, C{#} comments.

        A file that cannot be read is the fault of the C{alias_file} key;
        anything wrong inside it is reported against the alias file itself,
        with C{line N} as the key.
        """
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as e:
            raise self.fail(
                "alias_file", f"cannot read {path}: {e.strerror or e}"
            ) from None
        aliasReader = _Reader(path)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise aliasReader.fail(_lineOf(e), f"not valid UTF-8: {e.reason}") from None
        entries = []
        # Split on LF only: str.splitlines() also splits on form feeds and
        # U+2028, and the line numbers would not be an editor's.
        for number, line in enumerate(text.split("\n"), 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            name, colon, rest = line.partition(":")
            key = f"line {number}"
            if not colon or not name.strip():
                raise aliasReader.fail(key, "expected 'alias: address, address'")
            targets = [t.strip() for t in rest.split(",") if t.strip()]
            entries.append((name.strip(), targets, aliasReader, key))
        return entries


def _quoteKey(name: str) -> str:
    """
    A TOML key as it would be written: bare if it may be, else quoted and
    escaped, so that no key can break the one-line error message.
    """
    if name and all(c.isascii() and (c.isalnum() or c in "_-") for c in name):
        return name
    return json.dumps(name)


def _lineOf(e: UnicodeDecodeError) -> str:
    """
    C{"line N"}: where the first undecodable byte is.
    """
    number = e.object.count(b"\n", 0, e.start) + 1
    return f"line {number}"


def _kind(value: Any) -> str:
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a table",
    }.get(type(value), type(value).__name__)


def _isDomain(text: str) -> bool:
    if not text or len(text) > 253:
        return False
    for label in text.split("."):
        if not label or len(label) > 63 or label.startswith("-") or label.endswith("-"):
            return False
        if not all(c.isascii() and (c.isalnum() or c == "-") for c in label):
            return False
    return True
