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
    - C{mailhub queue list} prints one line per relay queue entry.
    - C{mailhub queue show ID} prints an entry's envelope and headers.
    - C{mailhub queue flush [ID]} makes an entry (or every deferred one)
      due now and tells the running server (C{SIGUSR1}).
    - C{mailhub queue delete ID} removes an entry (not while it is being
      tried).

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
from datetime import datetime, timezone
from typing import Callable, Sequence, TextIO

from attrs import evolve
from twisted.internet.interfaces import IReactorTime

from mailhub import __version__
from mailhub.auth.passwords import MAX_PASSWORD_BYTES, hashPassword
from mailhub.auth.userfile import UserEntry, checkAddress, readUsers, writeUsers
from mailhub.config import Config, embedded, load
from mailhub.errors import ConfigError, MailhubError
from mailhub.fs import FileSystem
from mailhub.maildir.delivery import ensureMaildir
from mailhub.relay.queue import NoSuchEntry, Queue, checkId, readPid, signalServer
from mailhub.relay.values import QueueEntry


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
        ("imap", "STARTTLS"),
        ("imaps", "implicit TLS"),
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


# The relay queue


def _queue(config: Config) -> Queue:
    return Queue(os.path.join(config.dataDir, "queue"))


def _queueId(arguments: argparse.Namespace) -> str:
    try:
        return checkId(arguments.id)
    except ValueError:
        raise _Failed(f"not a queue id: {_printable(arguments.id)}") from None


def _printable(text: str) -> str:
    """
    C{text} safe for a terminal: what remote servers and senders wrote
    (replies, headers, addresses) may hold escape sequences.
    """
    return "".join(
        c if c.isprintable() or c == "\t" else f"\\x{ord(c):02x}" if ord(c) < 256 else f"\\u{ord(c):04x}"
        for c in text
    )


def _duration(seconds: float) -> str:
    """
    C{42s}, C{5m}, C{2h}, C{3d}: rounded down.
    """
    whole = int(max(0.0, seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if whole >= size:
            return f"{whole // size}{unit}"
    return f"{whole}s"


def _next(entry: QueueEntry, now: float) -> str:
    if entry.done:
        return "done"
    if entry.nextAttempt <= now:
        return "due"
    return f"in {_duration(entry.nextAttempt - now)}"


def _sender(entry: QueueEntry) -> str:
    return f"<{_printable(entry.sender)}>"


def _recipients(entry: QueueEntry) -> str:
    return ", ".join(f"{_printable(r.address)} ({r.state})" for r in entry.recipients)


def _plural(count: int, one: str, many: str) -> str:
    return f"{count} {one if count == 1 else many}"


def queueList(arguments: argparse.Namespace, out: TextIO, now: float) -> None:
    """
    C{mailhub queue list}: one line per entry, oldest id first: id, age,
    sender, recipients with their state, next attempt, last error; then a
    count.
    """
    config = _config(arguments)
    queue = _queue(config)
    count = pending = 0
    for queueId in queue.ids():
        entry = queue.get(queueId)
        if entry is None:
            continue
        count += 1
        pending += len(entry.pending)
        fields = [
            queueId,
            _duration(now - entry.created),
            _sender(entry),
            _recipients(entry),
            _next(entry, now),
        ]
        if entry.lastError:
            fields.append(_printable(entry.lastError))
        out.write("  ".join(fields) + "\n")
    if count:
        out.write(
            f"{_plural(count, 'entry', 'entries')},"
            f" {_plural(pending, 'recipient', 'recipients')} pending\n"
        )
    else:
        out.write("queue is empty\n")
    corrupt = os.path.join(queue.directory, "corrupt")
    with contextlib.suppress(OSError):
        aside = sum(1 for name in os.listdir(corrupt) if name.endswith(".env"))
        if aside:
            out.write(f"{_plural(aside, 'unreadable record', 'unreadable records')} set aside in {corrupt}/\n")


#: How much of a message C{queue show} reads looking for the end of the header.
_MAX_HEADER = 256 * 1024


def _headers(path: str) -> list[str]:
    """
    The header lines of the message file (continuation lines kept), read
    only as far as the blank line that ends them.
    """
    data = b""
    with open(path, "rb") as f:
        while len(data) < _MAX_HEADER:
            chunk = f.read(16384)
            if not chunk:
                break
            data += chunk
            if b"\n\r\n" in data or b"\n\n" in data or data.startswith((b"\r\n", b"\n")):
                break
    lines = []
    for line in data[:_MAX_HEADER].split(b"\n"):
        line = line.rstrip(b"\r")
        if not line:
            break
        lines.append(_printable(line.decode("utf-8", "replace")))
    return lines


def queueShow(arguments: argparse.Namespace, out: TextIO, now: float) -> None:
    """
    C{mailhub queue show ID}: the envelope, every recipient with its state
    and last response, and the message's header.
    """
    queueId = _queueId(arguments)
    queue = _queue(_config(arguments))
    entry = queue.get(queueId)
    if entry is None:
        raise _Failed(f"no queue entry {queueId}")
    created = datetime.fromtimestamp(entry.created, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    lines = [
        f"id:           {entry.id}",
        f"sender:       {_sender(entry)}",
        f"created:      {created} ({_duration(now - entry.created)} ago)",
        f"next attempt: {_next(entry, now)}",
        f"attempts:     {entry.attempts}",
        f"last error:   {_printable(entry.lastError) or '-'}",
        f"warned:       {'yes' if entry.warned else 'no'}",
        f"size:         {entry.size} bytes",
        f"in flight:    {'yes' if queue.inFlight(queueId) else 'no'}",
        "recipients:",
    ]
    for r in entry.recipients:
        line = f"  {_printable(r.address)}  {r.state}"
        if r.response:
            line += f"  {_printable(r.response)}"
        if r.remoteMTA:
            line += f"  ({_printable(r.remoteMTA)})"
        lines.append(line)
    lines.append("headers:")
    try:
        lines += [f"  {header}" for header in _headers(queue.messagePath(queueId))]
    except OSError as e:
        lines.append(f"  (cannot read the message: {e.strerror or e})")
    out.write("\n".join(lines) + "\n")


def queueFlush(arguments: argparse.Namespace, out: TextIO) -> None:
    """
    C{mailhub queue flush [ID]}: make the entry, or every deferred entry,
    due now, and signal the running server to look.
    """
    config = _config(arguments)
    queueId = _queueId(arguments) if arguments.id is not None else None
    queue = _queue(config)
    try:
        flushed = queue.requestFlush(queueId)
    except NoSuchEntry:
        raise _Failed(f"no queue entry {queueId}") from None
    finally:
        queue.close()
    for busy in flushed.busy:
        out.write(f"{busy} is being tried now; left alone\n")
    if not flushed.ids:
        out.write("nothing to flush\n")
        return
    out.write(f"{_plural(len(flushed.ids), 'entry', 'entries')} due now\n")
    if signalServer(config.dataDir):
        out.write(f"signalled the server (pid {readPid(config.dataDir)}) to retry now\n")
    else:
        out.write("no running server was signalled; the entries are due at the next start\n")


def queueDelete(arguments: argparse.Namespace, out: TextIO) -> None:
    """
    C{mailhub queue delete ID}: remove an entry, unless it is being tried
    right now.
    """
    queueId = _queueId(arguments)
    queue = _queue(_config(arguments))
    if queue.get(queueId) is None:
        raise _Failed(f"no queue entry {queueId}")
    if not queue.markInFlight(queueId):
        raise _Failed(f"{queueId} is being tried now; try again when the attempt ends")
    try:
        # Read again under the marker: it may have changed or gone.
        entry = queue.get(queueId)
        if entry is None:
            raise _Failed(f"no queue entry {queueId}")
        try:
            queue.remove(queueId)
        except NoSuchEntry:
            raise _Failed(f"no queue entry {queueId}") from None
    finally:
        queue.clearInFlight(queueId)
        queue.close()
    recipients = ", ".join(_printable(r.address) for r in entry.recipients)
    out.write(f"deleted {queueId} from {_sender(entry)} to {recipients}\n")


def _queueCommand(
    arguments: argparse.Namespace, out: TextIO, err: TextIO, clock: IReactorTime
) -> int:
    try:
        if arguments.queueCommand == "list":
            queueList(arguments, out, clock.seconds())
        elif arguments.queueCommand == "show":
            queueShow(arguments, out, clock.seconds())
        elif arguments.queueCommand == "flush":
            queueFlush(arguments, out)
        else:
            queueDelete(arguments, out)
    except MailhubError as e:
        err.write(f"mailhub: {e}\n")
        return 1
    except OSError as e:
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
    queue = commands.add_parser("queue", help="list, show, flush and delete relay queue entries")
    queueCommands = queue.add_subparsers(
        dest="queueCommand", metavar="SUBCOMMAND", required=True
    )
    queueList_ = queueCommands.add_parser("list", help="one line per queue entry")
    queueShow_ = queueCommands.add_parser("show", help="an entry's envelope and headers")
    queueShow_.add_argument("id", metavar="ID")
    queueFlush_ = queueCommands.add_parser(
        "flush", help="retry an entry, or every deferred entry, now"
    )
    queueFlush_.add_argument("id", metavar="ID", nargs="?")
    queueDelete_ = queueCommands.add_parser("delete", help="remove an entry without sending it")
    queueDelete_.add_argument("id", metavar="ID")
    for sub in (queueList_, queueShow_, queueFlush_, queueDelete_):
        _addConfigArguments(sub)
    return parser


def main(
    argv: Sequence[str] | None = None,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
    stdin: TextIO | None = None,
    getpass: Callable[[str], str] | None = None,
    clock: IReactorTime | None = None,
) -> int:
    """
    Run the C{mailhub} command.

    @param argv: the arguments (C{sys.argv[1:]} when C{None}).
    @param out: where results go.
    @param err: where errors (and argparse's usage messages) go.
    @param stdin: where C{--password-stdin} reads; C{sys.stdin} when C{None}.
    @param getpass: asks for a password without echo; L{getpass.getpass}
        when C{None}.
    @param clock: the time for ages in C{queue} output; the reactor's when
        C{None}.
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
    if arguments.command == "queue":
        if clock is None:
            from twisted.internet import reactor as clock  # type: ignore[assignment]
        assert clock is not None
        return _queueCommand(arguments, out, err, clock)
    parser.print_help(err)
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
