# -*- test-case-name: tests.test_cli -*-
"""
The C{mailhub} command for operators.

    - C{mailhub check-config [--config FILE] [--data DIR]} validates a
      configuration without changing anything and prints what would be
      served.
    - C{mailhub user add ADDRESS [--password-stdin]} adds a user to the
      users file (C{DATA/users}) and makes their Maildir.
    - C{mailhub user passwd ADDRESS [--password-stdin]} sets a new password.
    - C{mailhub user del ADDRESS [--purge]} removes a user; their Maildir
      stays unless C{--purge}.
    - C{mailhub user list} prints every user's address.

Each takes C{--config FILE} and C{--data DIR}.  A password is asked for
twice on the terminal, or read as one line from standard input with
C{--password-stdin}.  Every error is one line on standard error and exit
status 1.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass as _getpass
import os
import shutil
import sys
from typing import Callable, Sequence, TextIO

from attrs import evolve

from mailhub import __version__
from mailhub.auth.passwords import MAX_PASSWORD_BYTES, hashPassword
from mailhub.auth.userfile import UserEntry, checkAddress, readUsers, writeUsers
from mailhub.config import Config, embedded, load
from mailhub.errors import ConfigError, MailhubError
from mailhub.fs import FileSystem
from mailhub.maildir.delivery import ensureMaildir


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
    for name, what in (
        ("smtp", "MX, STARTTLS"),
        ("submission", "STARTTLS, AUTH"),
        ("submissions", "implicit TLS, AUTH"),
        ("pop3", "STLS"),
        ("pop3s", "implicit TLS"),
    ):
        for listener in getattr(config.listeners, name):
            lines.append(f"{name + ':':<15}{listener} ({what})")
    lines.append(f"users:         {config.users}")
    lines.append(f"checkers:      {', '.join(config.auth.checkers) or 'the users file'}")
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


class _Failed(MailhubError):
    """
    A user command cannot go on: the message is the one line for stderr.
    """


def _usersPath(config: Config) -> str:
    return os.path.join(config.dataDir, "users")


def _maildir(config: Config, address: str) -> str:
    """
    C{DATA/mail/DOMAIN/LOCAL/}: L{checkAddress} has made sure that the
    local part is a dot-atom without C{/}, so this stays inside DATA.
    """
    local, _, domain = address.rpartition("@")
    return os.path.join(config.dataDir, "mail", domain, local)


def _address(arguments: argparse.Namespace) -> str:
    return checkAddress(arguments.address)


def _readPassword(
    arguments: argparse.Namespace,
    address: str,
    stdin: TextIO,
    askPassword: Callable[[str], str],
) -> str:
    """
    The new password: one line of standard input (C{--password-stdin}),
    or asked for twice without echo.

    @raise _Failed: no password, an empty one, or two that differ.
    """
    if arguments.password_stdin:
        line = stdin.readline()
        # Only the line ending goes: spaces may be part of a password.
        password = line[:-1] if line.endswith("\n") else line
        password = password[:-1] if password.endswith("\r") else password
        if not password:
            raise _Failed("no password on standard input; an empty password is refused")
    else:
        try:
            password = askPassword(f"New password for {address}: ")
            if not password:
                raise _Failed("an empty password is refused")
            again = askPassword("Repeat the password: ")
        except (EOFError, KeyboardInterrupt):
            raise _Failed("no password given") from None
        if password != again:
            raise _Failed("the passwords do not match")
    return password


def _hash(password: str) -> str:
    try:
        return hashPassword(password)
    except ValueError:
        raise _Failed(
            f"the password must be valid text of at most {MAX_PASSWORD_BYTES} bytes"
        ) from None


def _users(config: Config) -> tuple[dict[str, UserEntry], str]:
    """
    The users (C{address -> entry}) and the path of their file.

    @raise ConfigError: the file cannot be read or is malformed.
    """
    path = _usersPath(config)
    return readUsers(path), path


def _save(path: str, users: dict[str, UserEntry]) -> None:
    try:
        writeUsers(path, users.values())
    except OSError as e:
        raise _Failed(f"cannot write {path}: {e.strerror or e}") from None


def _makeMaildir(config: Config, maildir: str) -> list[str]:
    """
    Make C{cur/ new/ tmp/} under C{maildir}; return the directories that
    were made, outermost first.  Run as root, they are given to the owner
    of the data directory, whom the server runs as.
    """
    made = []
    path = os.path.abspath(maildir)
    while not os.path.exists(path):
        made.append(path)
        path = os.path.dirname(path)
    made.reverse()
    made += [
        os.path.join(maildir, sub)
        for sub in ("cur", "new", "tmp")
        if not os.path.exists(os.path.join(maildir, sub))
    ]
    ensureMaildir(FileSystem(), maildir)
    owner = os.stat(config.dataDir)
    if os.geteuid() == 0:
        for directory in made:
            os.chown(directory, owner.st_uid, owner.st_gid)
    return made


def userAdd(
    arguments: argparse.Namespace,
    out: TextIO,
    stdin: TextIO,
    askPassword: Callable[[str], str],
) -> None:
    """
    C{mailhub user add ADDRESS}: a new user with a password and a Maildir.

    @raise MailhubError: the one line to report.
    """
    config = _config(arguments)
    address = _address(arguments)
    domain = address.rpartition("@")[2]
    if domain not in config.domains:
        raise _Failed(
            f"{domain} is not one of the local domains ({', '.join(config.domains)})"
        )
    if address in config.aliases:
        raise _Failed(f"{address} is an alias in the configuration; remove the alias first")
    users, path = _users(config)
    if address in users:
        raise _Failed(f"{address} already exists")
    password = _readPassword(arguments, address, stdin, askPassword)
    hashed = _hash(password)

    maildir = _maildir(config, address)
    existed = os.path.isdir(maildir)
    try:
        os.makedirs(config.dataDir, 0o700, exist_ok=True)
        made = _makeMaildir(config, maildir)
    except OSError as e:
        raise _Failed(f"cannot make the Maildir {maildir}: {e.strerror or e}") from None
    users[address] = UserEntry(address, hashed)
    try:
        _save(path, users)
    except BaseException:
        # Take back the empty Maildir: mail would be accepted for it.
        for directory in reversed(made):
            with contextlib.suppress(OSError):
                os.rmdir(directory)
        raise
    kept = " (kept from before)" if existed else ""
    out.write(f"added {address}, Maildir {os.path.abspath(maildir)}/{kept}\n")


def userPasswd(
    arguments: argparse.Namespace,
    out: TextIO,
    stdin: TextIO,
    askPassword: Callable[[str], str],
) -> None:
    """
    C{mailhub user passwd ADDRESS}: a new password for an existing user.

    @raise MailhubError: the one line to report.
    """
    config = _config(arguments)
    address = _address(arguments)
    users, path = _users(config)
    if address not in users:
        raise _Failed(f"no such user: {address}")
    password = _readPassword(arguments, address, stdin, askPassword)
    users[address] = evolve(users[address], password=_hash(password))
    _save(path, users)
    out.write(f"password changed for {address}\n")


def userDel(arguments: argparse.Namespace, out: TextIO) -> None:
    """
    C{mailhub user del ADDRESS [--purge]}: remove a user, and with
    C{--purge} their Maildir.

    @raise MailhubError: the one line to report.
    """
    config = _config(arguments)
    address = _address(arguments)
    users, path = _users(config)
    if address not in users:
        raise _Failed(f"no such user: {address}")
    del users[address]
    _save(path, users)
    maildir = os.path.abspath(_maildir(config, address))
    if not arguments.purge:
        note = f"; Maildir {maildir}/ kept" if os.path.isdir(maildir) else ""
        out.write(f"deleted {address}{note}\n")
        return
    try:
        shutil.rmtree(maildir)
    except FileNotFoundError:
        pass
    except OSError as e:
        raise _Failed(
            f"deleted {address}, but cannot remove {maildir}: {e.strerror or e}"
        ) from None
    out.write(f"deleted {address} and its Maildir\n")


def userList(arguments: argparse.Namespace, out: TextIO) -> None:
    """
    C{mailhub user list}: every user's address, sorted, one a line.

    @raise MailhubError: the one line to report.
    """
    config = _config(arguments)
    for address in sorted(readUsers(_usersPath(config))):
        out.write(address + "\n")


def _userCommand(
    arguments: argparse.Namespace,
    out: TextIO,
    err: TextIO,
    stdin: TextIO,
    askPassword: Callable[[str], str],
) -> int:
    try:
        if arguments.userCommand == "add":
            userAdd(arguments, out, stdin, askPassword)
        elif arguments.userCommand == "passwd":
            userPasswd(arguments, out, stdin, askPassword)
        elif arguments.userCommand == "del":
            userDel(arguments, out)
        else:
            userList(arguments, out)
    except MailhubError as e:
        err.write(f"mailhub: {e}\n")
        return 1
    except OSError as e:
        # Whatever the file system refused that the steps above did not
        # name themselves.
        where = f"{e.filename}: " if e.filename else ""
        err.write(f"mailhub: {where}{e.strerror or e}\n")
        return 1
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mailhub", description="Operate a mailhub server.")
    parser.add_argument("--version", action="version", version=f"mailhub {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    check = commands.add_parser(
        "check-config", help="validate a configuration and print what would be served"
    )
    _addConfigArguments(check)
    user = commands.add_parser("user", help="add, change, delete and list users")
    userCommands = user.add_subparsers(
        dest="userCommand", metavar="SUBCOMMAND", required=True
    )
    add = userCommands.add_parser("add", help="add a user and make their Maildir")
    passwd = userCommands.add_parser("passwd", help="set a user's password")
    delete = userCommands.add_parser("del", help="delete a user")
    listing = userCommands.add_parser("list", help="print every user's address")
    for sub in (add, passwd):
        sub.add_argument("address", metavar="ADDRESS")
        sub.add_argument(
            "--password-stdin",
            action="store_true",
            help="read the password as one line from standard input",
        )
    delete.add_argument("address", metavar="ADDRESS")
    delete.add_argument(
        "--purge", action="store_true", help="also remove the user's Maildir and all mail in it"
    )
    for sub in (add, passwd, delete, listing):
        _addConfigArguments(sub)
    return parser


def main(
    argv: Sequence[str] | None = None,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
    stdin: TextIO | None = None,
    getpass: Callable[[str], str] | None = None,
) -> int:
    """
    Run the C{mailhub} command.

    @param argv: the arguments (C{sys.argv[1:]} when C{None}).
    @param out: where results go.
    @param err: where errors (and argparse's usage messages) go.
    @param stdin: where C{--password-stdin} reads; C{sys.stdin} when C{None}.
    @param getpass: asks for a password without echo; L{getpass.getpass}
        when C{None}.
    @return: the exit status: 0, 1 for an error, 2 for a usage error.
    """
    parser = _parser()
    try:
        # argparse writes usage, errors and --version to sys.stdout and
        # sys.stderr and exits; send them where the caller asked.
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            arguments = parser.parse_args(argv)
    except SystemExit as e:
        if e.code is None:
            return 0
        return e.code if isinstance(e.code, int) else 2
    if arguments.command == "check-config":
        return checkConfig(arguments, out, err)
    if arguments.command == "user":
        return _userCommand(
            arguments,
            out,
            err,
            stdin if stdin is not None else sys.stdin,
            getpass if getpass is not None else _getpass.getpass,
        )
    parser.print_help(err)
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
