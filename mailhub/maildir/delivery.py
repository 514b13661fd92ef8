# -*- test-case-name: tests.maildir.test_delivery -*-
"""
Durable delivery into Maildirs, with the fsyncs of concurrent deliveries
grouped on one worker thread.

A delivery is the qmail recipe, made durable (DESIGN.md, "Maildir"): write
C{tmp/NAME}, fsync it, rename it into C{new/}, fsync C{new/}.  A message
for several mailboxes is written and fsynced once and hard-linked into the
others' C{tmp/} (copied where a link cannot cross file systems).

The L{Committer} runs deliveries on one thread.  Whatever has queued up
while the thread was busy runs as one batch: each file is fsynced, then
each C{new/} directory of the batch once, so that a burst of concurrent
messages to one mailbox costs one directory fsync and the reactor thread
never waits on the disk.  Each delivery's L{Deferred} fires on the reactor
thread only after both fsyncs; a failure at any step removes what that
delivery wrote, so a reader never sees a partial message.
"""

from __future__ import annotations

import errno
import os
import queue
import threading
from typing import Sequence

from attrs import define, field
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorFromThreads
from twisted.logger import Logger
from twisted.python.failure import Failure

from mailhub.fs import FileSystem

_STOP = object()

#: Bound on the committer's memory of Maildirs known to be complete.
_MAX_KNOWN_MAILDIRS = 100_000


@define
class MaildirDelivery:
    """
    One message to be delivered into one or more Maildirs.

    @ivar maildirs: the Maildir roots (each holds C{cur/ new/ tmp/}).
    @ivar names: the unique file name to use in each Maildir, in order.
    @ivar prefix: header lines that local delivery adds before the message
        (C{Return-Path:}).
    @ivar content: the message itself, when it is small enough to be held
        in memory; otherwise C{None} and C{spoolPath} names it.
    @ivar spoolPath: the spool file holding the message, or C{None}.
    @ivar spoolSize: how many bytes of the spool file are the message.
    @ivar delivered: after success, the path of the file in each C{new/}.
    """

    maildirs: Sequence[str]
    names: Sequence[str]
    prefix: bytes = b""
    content: bytes | None = None
    spoolPath: str | None = None
    spoolSize: int = 0
    delivered: list[str] = field(factory=list)

    @property
    def size(self) -> int:
        """
        The size of each delivered file.
        """
        body = len(self.content) if self.content is not None else self.spoolSize
        return len(self.prefix) + body


class _Staged:
    """
    A delivery written into C{tmp/}, not yet durable nor visible.

    @ivar fd: the open descriptor of the first copy (kept open until the
        data is durable).
    @ivar tmps: the file in each Maildir's C{tmp/}.
    """

    def __init__(self, delivery: MaildirDelivery, fd: int, tmps: list[str]) -> None:
        self.delivery = delivery
        self.fd: int | None = fd
        self.tmps = tmps


def _stage(fs: FileSystem, delivery: MaildirDelivery, complete: set[str]) -> _Staged:
    """
    Write C{delivery} into the first Maildir's C{tmp/} and link it into the
    others' (nothing fsynced yet).  On failure, everything this created is
    removed before the error propagates.
    """
    for maildir in delivery.maildirs:
        if maildir not in complete:
            # Once per Maildir and process: repair one that lacks a subdirectory.
            ensureMaildir(fs, maildir)
            if len(complete) > _MAX_KNOWN_MAILDIRS:
                complete.clear()
            complete.add(maildir)
    first = _tmpPath(delivery.maildirs[0], delivery.names[0])
    fd = _openTmp(fs, first, delivery.maildirs[0])
    tmps = [first]
    try:
        if delivery.prefix:
            fs.write(fd, delivery.prefix)
        if delivery.content is not None:
            fs.write(fd, delivery.content)
        else:
            assert delivery.spoolPath is not None
            source = fs.openRead(delivery.spoolPath)
            try:
                fs.copy(source, fd, delivery.spoolSize)
            finally:
                fs.close(source)
        for maildir, name in zip(delivery.maildirs[1:], delivery.names[1:]):
            path = _tmpPath(maildir, name)
            _linkOrCopy(fs, first, path, maildir, delivery.size)
            tmps.append(path)
    except BaseException:
        _closeQuietly(fs, fd)
        _removeAll(fs, tmps)
        raise
    return _Staged(delivery, fd, tmps)


def _closeQuietly(fs: FileSystem, fd: int) -> None:
    try:
        fs.close(fd)
    except OSError:
        pass


def _publish(fs: FileSystem, staged: _Staged) -> list[str]:
    """
    Rename each C{tmp/} file into C{new/}.  On failure everything of this
    delivery is removed (renamed or not) before the error propagates.
    """
    delivery = staged.delivery
    done: list[str] = []
    try:
        for tmp, maildir, name in zip(staged.tmps, delivery.maildirs, delivery.names):
            target = os.path.join(maildir, "new", name)
            try:
                fs.rename(tmp, target)
            except FileNotFoundError:
                # tmp/ is there (we just wrote into it) but new/ is not.
                ensureMaildir(fs, maildir)
                fs.rename(tmp, target)
            done.append(target)
    except BaseException:
        _removeAll(fs, done + staged.tmps[len(done) :])
        raise
    return done


def writeMessage(fs: FileSystem, delivery: MaildirDelivery) -> list[str]:
    """
    Deliver one message on its own: staged, fsynced, renamed into C{new/}.
    The caller fsyncs the C{new/} directories afterwards.

    @return: the paths in C{new/}.
    """
    staged = _stage(fs, delivery, set())
    try:
        assert staged.fd is not None
        fs.fsync(staged.fd)
    except BaseException:
        _removeAll(fs, staged.tmps)
        raise
    finally:
        assert staged.fd is not None
        _closeQuietly(fs, staged.fd)
    return _publish(fs, staged)


def _tmpPath(maildir: str, name: str) -> str:
    return os.path.join(maildir, "tmp", name)


def _openTmp(fs: FileSystem, path: str, maildir: str) -> int:
    try:
        return fs.openExclusive(path)
    except FileNotFoundError:
        ensureMaildir(fs, maildir)
        return fs.openExclusive(path)


def ensureMaildir(fs: FileSystem, maildir: str) -> None:
    """
    Create C{cur/ new/ tmp/} under C{maildir} where they are missing, and
    make the new directory entries durable (where there is no C{syncfs},
    which the batch calls anyway, by fsyncing the Maildir and its parent).
    """
    created = False
    for sub in ("tmp", "new", "cur"):
        path = os.path.join(maildir, sub)
        try:
            fs.mkdir(path)
        except FileExistsError:
            continue
        except FileNotFoundError:
            fs.makedirs(path)
        created = True
    if created and not fs.canSyncFilesystem:
        fs.fsyncDirectory(maildir)
        fs.fsyncDirectory(os.path.dirname(maildir))


def _linkOrCopy(fs: FileSystem, source: str, target: str, maildir: str, size: int) -> None:
    try:
        try:
            fs.link(source, target)
        except FileNotFoundError:
            ensureMaildir(fs, maildir)
            fs.link(source, target)
    except OSError as e:
        if e.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
            raise
        # Another file system (or no hard links there): copy, fsynced.
        fd = fs.openExclusive(target)
        try:
            try:
                src = fs.openRead(source)
                try:
                    fs.copy(src, fd, size)
                finally:
                    fs.close(src)
                fs.fsync(fd)
            finally:
                fs.close(fd)
        except BaseException:
            _removeAll(fs, [target])
            raise


def _removeAll(fs: FileSystem, paths: Sequence[str]) -> None:
    for path in paths:
        try:
            fs.unlink(path)
        except OSError:
            pass


def runBatch(
    fs: FileSystem,
    deliveries: Sequence[MaildirDelivery],
    complete: set[str] | None = None,
) -> list[BaseException | None]:
    """
    Deliver a batch as one group commit: every message written into
    C{tmp/}; their data made durable; each renamed into C{new/}; the
    directory entries made durable.  Where the file system offers
    C{syncfs(2)} each "made durable" is one call per file system for the
    whole batch (one device flush instead of one per message); otherwise
    each file and each C{new/} directory is fsynced.

    @param complete: Maildirs known to have C{cur/ new/ tmp/} (the
        committer keeps it across batches); others are checked first.
    @return: for each delivery, C{None} on success (its C{delivered} is
        filled in) or the exception that stopped it; a failed delivery left
        nothing in C{tmp/} or C{new/}.
    """
    if complete is None:
        complete = set()
    results: list[BaseException | None] = [None] * len(deliveries)
    staged: dict[int, _Staged] = {}
    for index, delivery in enumerate(deliveries):
        try:
            staged[index] = _stage(fs, delivery, complete)
        except Exception as e:
            results[index] = e

    def fail(index: int, error: BaseException) -> None:
        results[index] = error
        item = staged.pop(index)
        if item.fd is not None:
            _closeQuietly(fs, item.fd)
            item.fd = None
        _removeAll(fs, item.tmps + item.delivery.delivered)

    # 1. The data.
    if fs.canSyncFilesystem:
        groups: dict[int, list[int]] = {}
        for index, item in list(staged.items()):
            try:
                assert item.fd is not None
                groups.setdefault(fs.device(item.fd), []).append(index)
            except Exception as e:
                fail(index, e)
        for indexes in groups.values():
            try:
                fd = staged[indexes[0]].fd
                assert fd is not None
                fs.syncfs(fd)
            except Exception as e:
                for index in indexes:
                    fail(index, e)
    else:
        for index in list(staged):
            try:
                fd = staged[index].fd
                assert fd is not None
                fs.fsync(fd)
            except Exception as e:
                fail(index, e)
    for index in list(staged):
        item = staged[index]
        fd, item.fd = item.fd, None
        try:
            assert fd is not None
            fs.close(fd)
        except Exception as e:
            fail(index, e)

    # 2. Visible in new/.
    directories: dict[str, list[int]] = {}
    for index in list(staged):
        item = staged[index]
        try:
            item.delivery.delivered = _publish(fs, item)
        except Exception as e:
            results[index] = e
            del staged[index]
            continue
        for path in item.delivery.delivered:
            directories.setdefault(os.path.dirname(path), []).append(index)

    # 3. The directory entries.  If they may not be durable, take back
    # every message that went through the directory: the client hears 451
    # and retries, rather than trusting a message that may be lost.
    def failAll(indexes: Sequence[int], error: BaseException) -> None:
        for index in indexes:
            if index in staged:
                fail(index, error)

    if not fs.canSyncFilesystem:
        for directory, indexes in directories.items():
            try:
                fs.fsyncDirectory(directory)
            except Exception as e:
                failAll(indexes, e)
        return results
    # One syncfs per file system stands for all its directories.
    groups: dict[int, tuple[int, list[int]]] = {}
    for directory, indexes in directories.items():
        try:
            fd = fs.openDirectory(directory)
        except Exception as e:
            failAll(indexes, e)
            continue
        try:
            device = fs.device(fd)
        except Exception as e:
            _closeQuietly(fs, fd)
            failAll(indexes, e)
            continue
        if device in groups:
            _closeQuietly(fs, fd)
            groups[device][1].extend(indexes)
        else:
            groups[device] = (fd, list(indexes))
    for fd, indexes in groups.values():
        try:
            fs.syncfs(fd)
        except Exception as e:
            failAll(indexes, e)
        finally:
            _closeQuietly(fs, fd)
    return results


class Committer:
    """
    Runs L{MaildirDelivery} batches on one worker thread and reports each
    result on the reactor thread.

    @param reactor: the reactor results are reported through.
    @param fs: the file operations (a seam for tests).
    @param threaded: C{False} runs each delivery at once on the calling
        thread, for tests driven by a L{Clock}.
    """

    log = Logger()

    def __init__(
        self,
        reactor: IReactorFromThreads,
        fs: FileSystem | None = None,
        threaded: bool = True,
    ) -> None:
        self._reactor = reactor
        self._fs = fs or FileSystem()
        self._threaded = threaded
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._stopped: Deferred[None] | None = None
        self.batches = 0
        self._complete: set[str] = set()

    def start(self) -> None:
        """
        Start the worker thread (a no-op when not threaded).
        """
        if self._threaded and self._thread is None:
            self._thread = threading.Thread(
                target=self._work, name="mailhub-committer", daemon=True
            )
            self._thread.start()

    def stop(self) -> Deferred[None]:
        """
        Finish every delivery already submitted, then stop the thread.

        @return: fires when the last result has been reported.
        """
        if self._thread is None:
            return succeed(None)
        self._stopped = Deferred()
        self._queue.put(_STOP)
        return self._stopped

    def submit(self, delivery: MaildirDelivery) -> Deferred[MaildirDelivery]:
        """
        Deliver durably.

        @return: fires with C{delivery} (its C{delivered} filled in) once
            every file and directory entry is fsynced, or fails with the
            L{OSError} that stopped it.
        """
        d: Deferred[MaildirDelivery] = Deferred()
        if self._stopped is not None:
            d.errback(Failure(OSError(errno.ESHUTDOWN, "delivery is stopping")))
            return d
        if not self._threaded:
            self._report([(delivery, d)], runBatch(self._fs, [delivery], self._complete))
            return d
        if self._thread is None:
            self.start()
        self._queue.put((delivery, d))
        return d

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            stop = item is _STOP
            batch = [] if stop else [item]
            while True:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is _STOP:
                    stop = True
                else:
                    batch.append(more)
            if batch:
                deliveries = [d for d, _ in batch]  # type: ignore[misc]
                try:
                    results: list[BaseException | None] = runBatch(self._fs, deliveries, self._complete)
                except BaseException as e:  # never lose a caller's Deferred
                    results = [e] * len(batch)
                self._reactor.callFromThread(self._report, batch, results)
            if stop:
                self._reactor.callFromThread(self._finished)
                return

    def _finished(self) -> None:
        self._thread = None
        stopped, self._stopped = self._stopped, None
        if stopped is not None:
            stopped.callback(None)

    def _report(
        self,
        batch: Sequence[tuple[MaildirDelivery, Deferred[MaildirDelivery]]],
        results: Sequence[BaseException | None],
    ) -> None:
        self.batches += 1
        for (delivery, d), error in zip(batch, results):
            if error is None:
                d.callback(delivery)
            else:
                d.errback(Failure(error))
