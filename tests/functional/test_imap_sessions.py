"""
IMAP sessions that are not alone: two sessions at once (IDLE pushes the
other's APPEND, EXPUNGE and STORE; mail arriving over SMTP wakes IDLE),
POP3 and IMAP on one mailbox, UIDs across restarts and across a lost or
stale index, and a Maildir that another tool writes into.

IDLE is driven with the raw client on the reactor (each push awaited with
a deadline of L{PUSH_WITHIN} seconds, which fails the test when it
passes), and once with C{imaplib}'s own socket in a thread.
"""

from __future__ import annotations

import imaplib
import os
import poplib
import shutil
import threading
import time
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.threads import deferToThread

from tests.functional.imapsupport import (
    ALICE,
    PUSH_WITHIN,
    REPLY_GUARD,
    IMAPTestCase,
    RawIMAP,
    Reply,
    check,
    fetched,
    maildirFiles,
    parseValues,
    unverified,
)
from tests.functional.support import DOMAIN, PASSWORD, SOCKET_GUARD, message, popSession


async def startIdle(client: RawIMAP) -> Deferred[Reply]:
    """
    IDLE on C{client}; once the server's continuation has come, the
    Deferred of the tagged reply (which comes after DONE).
    """
    _, done = client.start("IDLE")
    await client.waitFor(rb"\+ ")
    return done


async def endIdle(client: RawIMAP, done: Deferred[Reply]) -> Reply:
    client.send(b"DONE\r\n")
    reply = await done
    assert reply.ok, reply
    return reply


class TwoSessionTests(IMAPTestCase):
    """
    One session idles while another changes the mailbox.
    """

    async def appendFrom(self, count: int, folder: str = "INBOX") -> None:
        def work(client: imaplib.IMAP4) -> None:
            for n in range(count):
                check(client.append(folder, None, None, message(f"appended {n}")))

        await self.imap(work)

    async def test_idleSeesOtherSessionsAppend(self) -> None:
        """
        An APPEND by another session is pushed to the idling one as EXISTS
        within L{PUSH_WITHIN} seconds; DONE ends IDLE with a tagged OK.
        """
        watcher = await self.raw()
        await watcher.command("SELECT INBOX")
        done = await startIdle(watcher)
        await self.appendFrom(1)
        await watcher.waitFor(rb"\* 1 EXISTS", PUSH_WITHIN)
        await self.appendFrom(2)
        await watcher.waitFor(rb"\* 3 EXISTS", PUSH_WITHIN)
        await endIdle(watcher, done)
        reply = await watcher.command("UID FETCH 1:* (UID)")
        self.assertEqual(len([r for r in reply.untagged if b"FETCH" in r]), 3)
        await watcher.command("LOGOUT")

    async def test_idleSeesOtherSessionsExpunge(self) -> None:
        """
        Messages another session expunges are pushed as EXPUNGE responses,
        numbered as they must be when each is sent.
        """
        await self.appendFrom(4)
        watcher = await self.raw()
        await watcher.command("SELECT INBOX")
        done = await startIdle(watcher)

        def expunge(client: imaplib.IMAP4) -> None:
            check(client.select("INBOX"))
            check(client.store("2,4", "+FLAGS.SILENT", "(\\Deleted)"))
            check(client.expunge())

        await self.imap(expunge)
        first = await watcher.waitFor(rb"\* \d+ EXPUNGE", PUSH_WITHIN)
        second = await watcher.waitFor(rb"\* \d+ EXPUNGE", PUSH_WITHIN)
        self.assertEqual(sorted([first, second]), [b"* 2 EXPUNGE", b"* 3 EXPUNGE"])
        await endIdle(watcher, done)
        reply = await watcher.command("FETCH 1:* (UID)")
        self.assertEqual([parseValues(r)[3] for r in reply.untagged], [["UID", 1], ["UID", 3]])
        await watcher.command("LOGOUT")

    async def test_idleSeesOtherSessionsStore(self) -> None:
        """
        Flags another session stores are pushed as FETCH (FLAGS ...).
        """
        await self.appendFrom(2)
        watcher = await self.raw()
        await watcher.command("SELECT INBOX")
        done = await startIdle(watcher)

        def store(client: imaplib.IMAP4) -> None:
            check(client.select("INBOX"))
            check(client.store("2", "+FLAGS", "(\\Flagged $Important)"))

        await self.imap(store)
        pushed = await watcher.waitFor(rb"\* 2 FETCH", PUSH_WITHIN)
        self.assertEqual(sorted(parseValues(pushed)[3][1]), ["$Important", "\\Flagged"])
        await endIdle(watcher, done)
        await watcher.command("LOGOUT")

    async def test_smtpDeliveryWakesIdle(self) -> None:
        """
        Mail delivered over SMTP is pushed as EXISTS and RECENT to a client
        idling in INBOX, here C{imaplib}'s own socket driven by hand in a
        thread; the push comes within L{PUSH_WITHIN} seconds of the
        delivery's 250.
        """
        ready: Deferred[None] = Deferred()

        def idle() -> tuple[list[bytes], float, bytes]:
            client = imaplib.IMAP4("127.0.0.1", self.server.ports["imap"], timeout=SOCKET_GUARD)
            try:
                client.starttls(ssl_context=unverified())
                client.login(ALICE, PASSWORD)
                check(client.select("INBOX"))
                tag = client._new_tag()
                client.send(tag + b" IDLE\r\n")
                assert client.readline().startswith(b"+ "), "no continuation"
                reactor.callFromThread(ready.callback, None)
                lines = []
                client.sock.settimeout(PUSH_WITHIN + REPLY_GUARD)
                while not any(line.endswith(b"RECENT\r\n") for line in lines):
                    lines.append(client.readline())
                arrived = time.monotonic()
                client.send(b"DONE\r\n")
                end = client.readline()
                return lines, arrived, end
            finally:
                client.logout()

        result = deferToThread(idle)
        await ready
        await self.deliver(message("wake up"))
        delivered = time.monotonic()
        lines, arrived, end = await result
        self.assertEqual(lines, [b"* 1 EXISTS\r\n", b"* 1 RECENT\r\n"])
        self.assertLess(arrived - delivered, PUSH_WITHIN)
        self.assertTrue(end.endswith(b" OK IDLE terminated\r\n"), end)

    async def test_idleOnlyDoneEndsIt(self) -> None:
        """
        During IDLE a line other than DONE is answered BAD and IDLE goes on
        (it still pushes); DONE in any case ends it.
        """
        watcher = await self.raw()
        await watcher.command("SELECT INBOX")
        done = await startIdle(watcher)
        watcher.send(b"t9 NOOP\r\n")
        await watcher.waitFor(rb"\* BAD")
        await self.appendFrom(1)
        await watcher.waitFor(rb"\* 1 EXISTS", PUSH_WITHIN)
        watcher.send(b"done\r\n")
        self.assertTrue((await done).ok)
        self.assertTrue((await watcher.command("NOOP")).ok)
        await watcher.command("LOGOUT")

    async def test_idleAndDoneInOnePacket(self) -> None:
        """
        IDLE and DONE sent together: the continuation, then the tagged OK;
        the next command is answered.
        """
        client = await self.raw()
        await client.command("SELECT INBOX")
        tag = client.nextTag()
        reply = client.expectTag(tag)
        client.send(tag + b" IDLE\r\nDONE\r\n")
        answer = await reply
        self.assertTrue(answer.ok, answer)
        self.assertEqual(answer.untagged, [b"+ idling"])
        self.assertTrue((await client.command("NOOP")).ok)
        await client.command("LOGOUT")

    async def test_noopShowsTheOtherSessionsChanges(self) -> None:
        """
        Without IDLE, the other session's changes come with NOOP, in order:
        EXPUNGE, EXISTS, FETCH FLAGS; a FETCH does not send EXPUNGE (RFC
        3501 §7.4.1), the next NOOP does.
        """
        await self.appendFrom(3)
        first, second = await self.raw(), await self.raw()
        await first.command("SELECT INBOX")
        await second.command("SELECT INBOX")
        await second.command("STORE 1 +FLAGS.SILENT (\\Deleted)")
        await second.command("EXPUNGE")
        await second.command("STORE 2 +FLAGS.SILENT (\\Seen)")
        await self.appendFrom(1)
        reply = await first.command("FETCH 2:3 (UID)")
        self.assertTrue(reply.ok, reply)
        self.assertFalse([r for r in reply.untagged if r.endswith(b"EXPUNGE")], reply.untagged)
        reply = await first.command("NOOP")
        self.assertEqual(reply.untagged[0], b"* 1 EXPUNGE")
        self.assertIn(b"* 3 EXISTS", reply.untagged)
        self.assertIn(b"* 2 FETCH (FLAGS (\\Seen))", reply.untagged)
        await first.command("LOGOUT")
        await second.command("LOGOUT")

    async def test_fetchOfMessageExpungedElsewhere(self) -> None:
        """
        A FETCH of messages one of which another session has expunged,
        before this session has been told, sends the others and answers NO
        [EXPUNGEISSUED] (RFC 2180 §4.1.3, RFC 5530), also when it would
        set \\Seen; SEARCH, STORE and COPY that meet the message do not
        fail with an internal error; the next NOOP sends the EXPUNGE.
        """
        await self.appendFrom(3)
        first, second = await self.raw(), await self.raw()
        await first.command("SELECT INBOX")
        await second.command("SELECT INBOX")
        await second.command("STORE 1 +FLAGS.SILENT (\\Deleted)")
        await second.command("EXPUNGE")
        for command in ("FETCH 1:2 (UID BODY.PEEK[HEADER.FIELDS (SUBJECT)])", "FETCH 1:3 (UID BODY[TEXT])"):
            reply = await first.command(command)
            self.assertEqual(reply.status, "NO", reply)
            self.assertIn("[EXPUNGEISSUED]", reply.text)
            fetchedUids = [dict(zip(*[iter(parseValues(r)[3])] * 2))["UID"] for r in reply.untagged if b" FETCH " in r]
            self.assertEqual(fetchedUids, [2, 3] if "1:3" in command else [2])
        for command in ("SEARCH UNSEEN", "UID SEARCH SUBJECT appended", "STORE 1:2 +FLAGS (\\Flagged)", "COPY 1:2 Archive"):
            reply = await first.command(command)
            self.assertIn(reply.status, ("OK", "NO"), (command, reply))
            self.assertNotIn("SERVERBUG", reply.text, command)
        reply = await first.command("NOOP")
        self.assertIn(b"* 1 EXPUNGE", reply.untagged)
        reply = await first.command("FETCH 1:* (UID FLAGS)")
        self.assertTrue(reply.ok, reply)
        await first.command("LOGOUT")
        await second.command("LOGOUT")


class POP3AndIMAPTests(IMAPTestCase):
    """
    POP3 and IMAP on one mailbox: one Maildir, one truth.
    """

    def pop(self, work: Any) -> Deferred[Any]:
        """
        Run C{work(client)} with C{poplib} after STLS and login as alice, in
        a thread; QUIT afterwards (which commits).
        """
        return popSession(self.server.ports, ALICE, work)

    async def test_popDeleteIsExpungeOverIMAP(self) -> None:
        """
        A message POP3 deletes is an EXPUNGE to a selected IMAP session, a
        message it retrieves is \\Seen there; messages the IMAP session
        moved to cur/ are still in the POP3 listing, with UIDLs that are
        the Maildir base names.
        """
        await self.deliver(*(message(f"n{n}") for n in range(3)))
        watcher = await self.raw()
        await watcher.command("SELECT INBOX")
        self.assertEqual(set(maildirFiles(self.folder()).values()), {"cur"})

        def work(client: poplib.POP3) -> Any:
            count = client.stat()[0]
            uidl = client.uidl()[1]
            client.retr(1)
            client.dele(2)
            return count, uidl

        names = sorted(name.split(":")[0] for name in maildirFiles(self.folder()))
        count, uidl = await self.pop(work)
        self.assertEqual(count, 3)
        self.assertEqual(sorted(line.split()[1].decode() for line in uidl), names)
        reply = await watcher.command("NOOP")
        self.assertIn(b"* 2 EXPUNGE", reply.untagged)
        self.assertIn(b"* 1 FETCH (FLAGS (\\Seen \\Recent))", reply.untagged)
        await watcher.command("LOGOUT")
        self.assertEqual(sorted(m["Subject"] for m in self.stdlibMaildir().values()), ["n0", "n2"])

    async def test_imapChangesSeenByPOP3(self) -> None:
        """
        Messages IMAP expunged are gone from the next POP3 session; one
        whose flags IMAP changes while a POP3 session is open (its file
        renamed) is still retrieved whole; UIDLs do not change with flags.
        """
        texts = [message(f"n{n}") for n in range(3)]
        await self.deliver(*texts)
        before: list[bytes] = await self.pop(lambda client: client.uidl()[1])
        imapSession = await self.raw()
        await imapSession.command("SELECT INBOX")
        await imapSession.command("STORE 1 +FLAGS.SILENT (\\Deleted)")
        await imapSession.command("EXPUNGE")
        popped: Deferred[None] = Deferred()
        renamed = threading.Event()

        def work(client: poplib.POP3) -> Any:
            uidl = client.uidl()[1]
            reactor.callFromThread(popped.callback, None)
            renamed.wait(REPLY_GUARD)
            return uidl, [b"\r\n".join(client.retr(n)[1]) + b"\r\n" for n in (1, 2)]

        result = self.pop(work)
        await popped
        reply = await imapSession.command("STORE 1:2 +FLAGS (\\Flagged \\Answered)")
        self.assertTrue(reply.ok)
        renamed.set()
        uidl, bodies = await result
        self.assertEqual([line.split()[1] for line in uidl], [line.split()[1] for line in before[1:]])
        self.assertEqual([b.split(b"\r\n\r\n", 1)[1] for b in bodies], [t.split(b"\r\n\r\n", 1)[1] for t in texts[1:]])
        reply = await imapSession.command("NOOP")
        pushed = [parseValues(r) for r in reply.untagged if b" FETCH " in r]
        self.assertEqual(
            sorted((p[1], sorted(p[3][1])) for p in pushed),
            [(seq, ["\\Answered", "\\Flagged", "\\Recent", "\\Seen"]) for seq in (1, 2)],
        )
        await imapSession.command("LOGOUT")
        flags = sorted(m.get_flags() for m in self.stdlibMaildir().values())
        self.assertEqual(flags, ["FRS", "FRS"])


    async def test_popRetrieveOfMessageIMAPExpunged(self) -> None:
        """
        A message IMAP expunges while a POP3 session has it in its listing
        is answered -ERR by RETR, saying so, (the next session's listing no
        longer has it); the others are retrieved, and QUIT commits.
        """
        texts = [message("first"), message("second")]
        await self.deliver(*texts)
        listed: Deferred[None] = Deferred()
        expunged = threading.Event()

        def work(client: poplib.POP3) -> Any:
            count = client.stat()[0]
            reactor.callFromThread(listed.callback, None)
            expunged.wait(REPLY_GUARD)
            try:
                client.retr(1)
                gone = "retrieved"
            except poplib.error_proto as e:
                gone = e.args[0]
            other = b"\r\n".join(client.retr(2)[1]) + b"\r\n"
            return count, gone, other

        result = self.pop(work)
        await listed
        imapSession = await self.raw()
        await imapSession.command("SELECT INBOX")
        await imapSession.command("STORE 1 +FLAGS.SILENT (\\Deleted)")
        self.assertTrue((await imapSession.command("EXPUNGE")).ok)
        expunged.set()
        count, gone, other = await result
        self.assertEqual(count, 2)
        self.assertEqual(gone, b"-ERR Message 1 was removed by another session")
        # A line in the log, not a traceback.
        self.assertEqual(self.flushLoggedErrors(FileNotFoundError), [])
        self.assertEqual(other.split(b"\r\n\r\n", 1)[1], texts[1].split(b"\r\n\r\n", 1)[1])
        await imapSession.command("LOGOUT")
        self.assertEqual([(m["Subject"], m.get_flags()) for m in self.stdlibMaildir().values()], [("second", "S")])


class UIDStabilityTests(IMAPTestCase):
    """
    UIDs are for ever: across restarts, and when the index is lost, stale
    or corrupt (it is a cache; the UID list is the truth).
    """

    async def state(self) -> dict[str, Any]:
        """
        INBOX as a client sees it: UIDVALIDITY, UIDNEXT, and each message's
        UID, flags and subject.
        """

        def work(client: imaplib.IMAP4) -> Any:
            check(client.select("INBOX"))
            validity = client.response("UIDVALIDITY")[1][0]
            uidNext = client.response("UIDNEXT")[1][0]
            data = check(client.fetch("1:*", "(UID FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")) if client.untagged_responses.get("EXISTS", [b"0"])[-1] != b"0" else []
            messages = [
                (v["UID"], sorted(f for f in v["FLAGS"] if f != "\\Recent"), [x for k, x in v.items() if k.startswith("BODY")][0])
                for _, v in sorted(fetched(data).items())
            ] if data else []
            return {"validity": validity, "next": uidNext, "messages": messages}

        return await self.imap(work)

    async def prepare(self) -> dict[str, Any]:
        """
        Four messages, the second expunged, flags and a keyword on the
        others.
        """
        await self.deliver(*(message(f"n{n}") for n in range(4)))

        def work(client: imaplib.IMAP4) -> None:
            check(client.select("INBOX"))
            check(client.store("2", "+FLAGS.SILENT", "(\\Deleted)"))
            check(client.expunge())
            check(client.store("1", "+FLAGS.SILENT", "(\\Seen $Done)"))
            check(client.store("3", "+FLAGS.SILENT", "(\\Flagged)"))

        await self.imap(work)
        state = await self.state()
        self.assertEqual([uid for uid, _, _ in state["messages"]], [1, 3, 4])
        self.assertEqual(state["next"], b"5")
        return state

    async def appendOne(self) -> bytes:
        def work(client: imaplib.IMAP4) -> bytes:
            data = check(client.append("INBOX", None, None, message("after")))
            return data[0]

        return await self.imap(work)

    async def stopAndCopy(self) -> str:
        """
        Stop the server and copy its data directory for the next one to run
        on (L{startOn}): a new process keeps nothing of the old one in
        memory, and neither does a server on another path (in this process
        a folder's index, shared while in use, may linger until the
        garbage collector finds it, and a restart on the same path would
        use it instead of the files).

        @return: the copy, whose files the test may change first.
        """
        await self.sessionsClosed()
        await self.server.stop()
        data = os.path.abspath(self.mktemp())
        shutil.copytree(self.server.data, data)
        return data

    def startOn(self, data: str) -> str:
        """
        Start a server on C{data}; alice's Maildir there.
        """
        self.server = self.startServer(data=data)
        self.watchSessions()
        return self.folder()

    async def test_acrossRestart(self) -> None:
        """
        After a restart the UIDs, flags, UIDVALIDITY and UIDNEXT are what
        they were, and the next message gets the next UID (an expunged
        UID is never reused).
        """
        state = await self.prepare()
        self.startOn(await self.stopAndCopy())
        self.assertEqual(await self.state(), state)
        self.assertIn(b"APPENDUID %s 5]" % (state["validity"],), await self.appendOne())

    async def test_indexDeleted(self) -> None:
        """
        With the index and its side store deleted while the server is
        stopped, the next start rebuilds them from the Maildir and the UID
        list: same UIDs, flags, UIDVALIDITY, UIDNEXT.
        """
        state = await self.prepare()
        data = await self.stopAndCopy()
        root = os.path.join(data, "mail", DOMAIN, "alice")
        for name in ("mailhub-index", "mailhub-cache"):
            if os.path.exists(os.path.join(root, name)):
                os.unlink(os.path.join(root, name))
        self.assertEqual(self.startOn(data), root)
        self.assertEqual(await self.state(), state)
        # Rebuilt, and saved at once as a new index is.
        self.assertTrue(os.path.exists(os.path.join(root, "mailhub-index")))
        self.assertIn(b"APPENDUID %s 5]" % (state["validity"],), await self.appendOne())

    async def test_indexStaleOrCorrupt(self) -> None:
        """
        An old copy of the index put back (as from a backup) after messages
        came, went and changed flags is not believed, nor is a corrupt one:
        the folder and the UID list win.
        """
        await self.prepare()
        with open(os.path.join(self.folder(), "mailhub-index"), "rb") as f:
            old = f.read()
        await self.deliver(message("n4"))

        def change(client: imaplib.IMAP4) -> None:
            check(client.select("INBOX"))
            check(client.uid("STORE", "3", "+FLAGS.SILENT", "(\\Deleted)"))
            check(client.expunge())
            check(client.uid("STORE", "1", "-FLAGS.SILENT", "(\\Seen)"))
            check(client.uid("STORE", "4", "+FLAGS.SILENT", "(\\Answered)"))

        await self.imap(change)
        truth = await self.state()
        self.assertEqual([uid for uid, _, _ in truth["messages"]], [1, 4, 5])
        for damaged in (old, b"MHIX 1 garbage\n\x00\x01\x02"):
            data = await self.stopAndCopy()
            with open(os.path.join(data, "mail", DOMAIN, "alice", "mailhub-index"), "wb") as f:
                f.write(damaged)
            self.startOn(data)
            self.assertEqual(await self.state(), truth)


class ForeignMaildirTests(IMAPTestCase):
    """
    Another tool (a delivery agent, a mail reader, a migration script)
    writes into the Maildir: IMAP picks its files up.
    """

    def drop(self, name: str, content: bytes, sub: str = "new", mtime: float | None = None) -> str:
        """
        Write a message as a Maildir tool does: into tmp/, then renamed into
        C{sub}.
        """
        root = self.folder()
        temporary = os.path.join(root, "tmp", name.split(":")[0])
        with open(temporary, "wb") as f:
            f.write(content)
        if mtime is not None:
            os.utime(temporary, (mtime, mtime))
        final = os.path.join(root, sub, name)
        os.rename(temporary, final)
        return final

    async def test_filesDroppedIntoNew(self) -> None:
        """
        Files with bare LF line ends and names without sizes, dropped into
        new/ and cur/ while a session idles, are pushed as EXISTS; their
        RFC822.SIZE and BODY[] are those of the CRLF form; flags come from
        the name; the internal date from the name's leading seconds or the
        file's mtime; each gets a UID in the UID list.
        """
        watcher = await self.raw()
        await watcher.command("SELECT INBOX")
        done = await startIdle(watcher)
        plain = b"From: tool@example.test\nSubject: from a tool\n\nLine one.\nLine two.\n"
        seen = b"From: reader@example.test\nSubject: already read\n\nRead.\n"
        self.drop("1767225600.M1P2.othertool", plain)
        self.drop("imported-message:2,FS", seen, sub="cur", mtime=1700000000)
        await watcher.waitFor(rb"\* 2 EXISTS", PUSH_WITHIN)
        await endIdle(watcher, done)
        reply = await watcher.command("FETCH 1:2 (UID FLAGS RFC822.SIZE INTERNALDATE BODY[])")
        items = {parseValues(r)[1]: dict(zip(*[iter(parseValues(r)[3])] * 2)) for r in reply.untagged if b" FETCH " in r}
        crlf = plain.replace(b"\n", b"\r\n")
        self.assertEqual(items[1]["BODY[]"], crlf)
        self.assertEqual(items[1]["RFC822.SIZE"], len(crlf))
        self.assertEqual(items[1]["INTERNALDATE"], b"01-Jan-2026 00:00:00 +0000")
        self.assertIn("\\Seen", items[1]["FLAGS"])  # BODY[] set it
        self.assertEqual(items[2]["RFC822.SIZE"], len(seen.replace(b"\n", b"\r\n")))
        self.assertEqual(sorted(items[2]["FLAGS"]), ["\\Flagged", "\\Seen"])
        self.assertEqual(items[2]["INTERNALDATE"], b"14-Nov-2023 22:13:20 +0000")
        self.assertEqual((items[1]["UID"], items[2]["UID"]), (1, 2))
        with open(os.path.join(self.folder(), "dovecot-uidlist")) as f:
            records = f.read().splitlines()[1:]
        self.assertEqual([r.split(" ", 1)[0] for r in records], ["1", "2"])
        self.assertTrue(records[0].endswith(":1767225600.M1P2.othertool"), records)
        await watcher.command("LOGOUT")

    async def test_otherToolRenamesAndRemoves(self) -> None:
        """
        A mail reader that marks a message read (renames it with :2,S) or
        deletes its file is seen by the selected session: FETCH FLAGS and
        EXPUNGE, pushed during IDLE.
        """
        await self.deliver(message("one"), message("two"))
        watcher = await self.raw()
        await watcher.command("SELECT INBOX")
        done = await startIdle(watcher)
        cur = os.path.join(self.folder(), "cur")
        first, second = sorted(os.listdir(cur))
        os.rename(os.path.join(cur, first), os.path.join(cur, first.split(":")[0] + ":2,S"))
        os.unlink(os.path.join(cur, second))
        await watcher.waitFor(rb"\* 2 EXPUNGE", PUSH_WITHIN)
        pushed = await watcher.waitFor(rb"\* 1 FETCH", PUSH_WITHIN)
        self.assertIn(b"\\Seen", pushed)
        await endIdle(watcher, done)
        reply = await watcher.command("UID SEARCH ALL")
        self.assertEqual(reply.untagged, [b"* SEARCH 1"])
        await watcher.command("LOGOUT")


class SessionEndTests(IMAPTestCase):
    """
    How sessions end, and what one session does to a folder another has
    selected.
    """

    async def test_clientVanishesWhileIdling(self) -> None:
        """
        A client that drops the connection during IDLE leaves nothing
        running on the server (its poll stops: the test would end with a
        pending call otherwise), and its session slot is freed.
        """
        factory = self.server.service.factories["imap"]
        factory.connectionsPerUser = 1
        watcher = await self.raw()
        await watcher.command("SELECT INBOX")
        done = await startIdle(watcher)
        watcher.transport.abortConnection()
        await watcher.closed
        with self.assertRaises(ConnectionLost):
            await done
        await self.sessionsClosed()
        again = await self.raw()
        self.assertTrue((await again.command("SELECT INBOX")).ok)
        await again.command("LOGOUT")

    async def test_serverStopsWhileIdling(self) -> None:
        """
        When the server stops, an idling client hears BYE and is
        disconnected.
        """
        watcher = await self.raw()
        await watcher.command("SELECT INBOX")
        done = await startIdle(watcher)
        stopped = Deferred.fromCoroutine(self.server.stop())
        await watcher.waitFor(rb"\* BYE")
        await watcher.closed
        with self.assertRaises(ConnectionDone):
            await done
        await stopped

    async def test_idleWithoutSelectedMailbox(self) -> None:
        """
        IDLE in the authenticated state is allowed and ends with DONE.
        """
        client = await self.raw()
        done = await startIdle(client)
        await endIdle(client, done)
        self.assertTrue((await client.command("SELECT INBOX")).ok)
        await client.command("LOGOUT")

    async def selectWork(self) -> RawIMAP:
        """
        A session with folder Work, holding one message, selected.
        """
        client = await self.raw()
        await client.command("CREATE Work")
        text = message("work")
        tag = client.nextTag()
        reply = client.expectTag(tag)
        client.send(tag + b" APPEND Work {%d+}\r\n" % len(text) + text + b"\r\n")
        self.assertTrue((await reply).ok)
        await client.command("SELECT Work")
        return client

    async def deleteWork(self) -> None:
        def delete(other: imaplib.IMAP4) -> None:
            check(other.delete("Work"))

        await self.imap(delete)

    async def test_selectedFolderDeletedElsewhere(self) -> None:
        """
        A folder another session deletes while this one has it selected:
        FETCH, SEARCH and STORE get answers, not an internal error; the
        next NOOP says BYE and hangs up (as Dovecot does: the client
        starts again and finds the folder gone).
        """
        client = await self.selectWork()
        await self.deleteWork()
        for command in ("FETCH 1 (FLAGS BODY.PEEK[])", "SEARCH ALL", "STORE 1 +FLAGS (\\Seen)"):
            reply = await client.command(command)
            self.assertNotIn("SERVERBUG", reply.text, (command, reply))
        _, noop = client.start("NOOP")
        await client.waitFor(rb"\* BYE ")
        await client.closed
        with self.assertRaises(ConnectionDone):
            await noop
        self.assertFalse(os.path.exists(self.folder("Work")))

    async def test_selectedFolderRenamedElsewhere(self) -> None:
        """
        A folder another session renames while this one has it selected is
        gone for this session too: the next NOOP says BYE.
        """
        client = await self.selectWork()

        def rename(other: imaplib.IMAP4) -> None:
            check(other.rename("Work", "Play"))

        await self.imap(rename)
        _, noop = client.start("NOOP")
        await client.waitFor(rb"\* BYE ")
        await client.closed
        with self.assertRaises(ConnectionDone):
            await noop
        self.assertEqual([m["Subject"] for m in self.stdlibMaildir("Play").values()], ["work"])

    async def test_idlingFolderDeletedElsewhere(self) -> None:
        """
        A session idling in a folder that another session deletes hears
        BYE and is disconnected, within L{PUSH_WITHIN} seconds.
        """
        client = await self.selectWork()
        done = await startIdle(client)
        await self.deleteWork()
        await client.waitFor(rb"\* BYE ", PUSH_WITHIN)
        await client.closed
        with self.assertRaises(ConnectionDone):
            await done

    async def test_perUserLimitAcrossListeners(self) -> None:
        """
        The per-user session limit counts the user's sessions on both
        IMAP listeners together.
        """
        for name in ("imap", "imaps"):
            self.server.service.factories[name].connectionsPerUser = 2
        await self.raw()
        await self.raw(tls="implicit")
        third = await self.raw(tls="implicit", user=None)
        refused = await third.command(f'LOGIN "{ALICE}" "{PASSWORD}"')
        self.assertEqual(refused.status, "NO", refused)
        self.assertIn("[LIMIT]", refused.text)
