# -*- test-case-name: tests.test_cli -*-
"""
The C{mailhub} command for operators.

For now one subcommand: C{mailhub check-config [--config FILE] [--data DIR]}
validates a configuration without changing anything and prints what would
be served.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence, TextIO

from mailhub import __version__
from mailhub.config import Config, embedded, load
from mailhub.errors import ConfigError


def _addConfigArguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", "-c", metavar="FILE", help="the configuration file (TOML)")
    parser.add_argument("--data", "-d", metavar="DIR", help="the data directory")


def _config(arguments: argparse.Namespace) -> Config:
    if arguments.config:
        return load(arguments.config, dataDir=arguments.data)
    config = embedded()
    return config.withDataDir(arguments.data) if arguments.data else config


def describe(config: Config, out: TextIO) -> None:
    """
    Print what a configuration would serve.
    """
    import os

    limits = config.limits
    data = os.path.abspath(config.dataDir)
    lines = [
        f"configuration: {config.source or 'embedded default'}",
        f"hostname:      {config.hostname}",
        f"domains:       {', '.join(config.domains)}",
        f"data:          {data}",
        f"mailboxes:     {os.path.join(data, 'mail', 'DOMAIN', 'USER')}/",
    ]
    for listener in config.listeners.smtp:
        lines.append(f"smtp:          {listener} (STARTTLS)")
    if config.tls.certificate:
        lines.append(f"tls:           {config.tls.certificate} (key {config.tls.key})")
    else:
        lines.append(f"tls:           self-signed, {os.path.join(data, 'tls', 'cert.pem')}")
    lines += [
        f"limits:        message {limits.messageSize} bytes, {limits.recipients} recipients,"
        f" lines {limits.lineLength} bytes, {limits.connectionsPerPeer} connections per peer,"
        f" idle {limits.idleTimeout:g} s, {limits.errors} errors",
        f"subaddress:    {'user' + config.recipientDelimiter + 'tag' if config.recipientDelimiter else 'off'}",
        f"aliases:       {len(config.aliases)}",
    ]
    for alias, targets in sorted(config.aliases.items()):
        lines.append(f"  {alias} -> {', '.join(targets)}")
    networks = ", ".join(str(n) for n in config.trustedNetworks) or "none"
    lines.append(f"trusted:       {networks}")
    out.write("\n".join(lines) + "\n")


def checkConfig(arguments: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """
    C{mailhub check-config}: load, build the service without starting it
    (which checks the listeners and the TLS files), describe.
    """
    from twisted.internet import reactor

    from mailhub.service import makeService

    try:
        config = _config(arguments)
        makeService(config, reactor, prepare=False)
    except ConfigError as e:
        err.write(f"mailhub: {e}\n")
        return 1
    describe(config, out)
    return 0


def main(argv: Sequence[str] | None = None, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    parser = argparse.ArgumentParser(prog="mailhub", description="Operate a mailhub server.")
    parser.add_argument("--version", action="version", version=f"mailhub {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    check = commands.add_parser(
        "check-config", help="validate a configuration and print what would be served"
    )
    _addConfigArguments(check)
    arguments = parser.parse_args(argv)
    if arguments.command == "check-config":
        return checkConfig(arguments, out, err)
    parser.print_help(err)
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
