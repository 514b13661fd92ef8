"""
APPEND, COPY, MOVE, UIDPLUS, EXPUNGE, STORE and the folder commands
(CREATE, DELETE, RENAME, LIST, LSUB, SUBSCRIBE, STATUS) end to end with
the stdlib C{imaplib} and the raw client, with what they leave on disk
read back with the stdlib's C{mailbox.Maildir}: the Dovecot tree, flags
in names, keywords in C{dovecot-keywords}.
"""

from __future__ import annotations

import email.utils
import imaplib
import os
import re
from typing import Any

from tests.functional.imapsupport import (
    IMAPTestCase,
    check,
    failure,
    fetched,
    maildirFiles,
    parseValues,
    responseCode,
    untagged,
)
from tests.functional.support import message


def uidsOf(client: imaplib.IMAP4) -> list[int]:
    """
    Every UID of the selected mailbox.
    """
    return [int(n) for n in check(client.uid("SEARCH", "ALL"))[0].split()]


class AppendTests(IMAPTestCase):
    """
    APPEND, read back from the Maildir with the stdlib's reader.
    """

    async def test_appendWithFlagsAndDate(self) -> None:
        """
        APPEND with system flags, a keyword and an internal date stores the
        exact octets in cur/ with the flags in the name (keywords as
        Dovecot's letters), answers APPENDUID with the folder's
        UIDVALIDITY and UIDNEXT, and FETCH gives the date back.
        """
        text = message("appended", b"Body.\r\n")

        def work(client: imaplib.IMAP4) -> Any:
            status = check(client.status("Drafts", "(UIDVALIDITY UIDNEXT)"))[0]
            data = check(client.append("Drafts", "(\\Draft \\Seen $Pending)", '"24-Dec-2025 18:30:00 -0500"', text))
            appendUid = responseCode(data, "APPENDUID")
            check(client.select("Drafts"))
            items = fetched(check(client.fetch("1", "(UID FLAGS INTERNALDATE RFC822.SIZE)")))[1]
            return status, appendUid, items

        status, appendUid, items = await self.imap(work)
        values = parseValues(status)
        uidValidity, uidNext = values[1][1], values[1][3]
        self.assertEqual(appendUid, [str(uidValidity), str(uidNext)])
        self.assertEqual(items["UID"], uidNext)
        self.assertEqual(sorted(items["FLAGS"]), ["$Pending", "\\Draft", "\\Seen"])
        self.assertEqual(items["RFC822.SIZE"], len(text))
        when = email.utils.parsedate_to_datetime(
            re.sub(r"^\s*(\d+)-(\w+)-(\d+) ", r"\1 \2 \3 ", items["INTERNALDATE"].decode())
        )
        self.assertEqual(when, email.utils.parsedate_to_datetime("Wed, 24 Dec 2025 18:30:00 -0500"))
        box = self.stdlibMaildir("Drafts")
        [(key, stored)] = box.items()
        self.assertEqual(box.get_bytes(key), text)
        self.assertEqual(stored.get_subdir(), "cur")
        self.assertEqual(stored.get_flags(), "DSa")
        with open(os.path.join(self.folder("Drafts"), "dovecot-keywords")) as f:
            self.assertEqual(f.read().split(), ["0", "$Pending"])
        # The file's mtime is the internal date, as Dovecot keeps it.
        path = os.path.join(self.folder("Drafts"), "cur", os.path.basename(box._toc[key]))
        self.assertEqual(int(os.stat(path).st_mtime), int(when.timestamp()))

    async def test_appendRefused(self) -> None:
        """
        APPEND to a missing folder is NO [TRYCREATE]; an empty message and
        \\Recent as a flag are refused; a date-time that is no date (a
        month, day or hour that does not exist) is BAD, not an internal
        error; nothing is stored.
        """

        def work(client: imaplib.IMAP4) -> list[str]:
            return [
                failure(client.append, "Nowhere", None, None, message("lost")),
                failure(client.append, "INBOX", None, None, b""),
                failure(client.append, "INBOX", "(\\Recent)", None, message("recent")),
                failure(client.append, "INBOX", None, '"31-Foo-2026 10:00:00 +0000"', message("bad month")),
                failure(client.append, "INBOX", None, '"32-Jan-2026 10:00:00 +0000"', message("bad day")),
                failure(client.append, "INBOX", None, '"01-Jan-2026 24:00:00 +0000"', message("bad hour")),
            ]

        trycreate, empty, recent, *badDates = await self.imap(work)
        self.assertIn("TRYCREATE", trycreate)
        self.assertTrue(empty.startswith(("NO", "BAD")), empty)
        self.assertIn("BAD", recent)
        for text in badDates:
            self.assertIn("BAD", text)
        self.assertEqual(maildirFiles(self.folder()), {})
        self.assertFalse(os.path.exists(self.folder("Nowhere")))

    async def test_appendAndCopyLeaveRecentAlone(self) -> None:
        """
        A session that APPENDs or COPYs into INBOX without selecting it
        takes no \\Recent: the delivered messages stay in new/, STATUS
        counts them RECENT, and they are \\Recent to the next session
        that selects INBOX.
        """
        await self.deliver(message("one"), message("two"))

        def other(client: imaplib.IMAP4) -> Any:
            check(client.append("INBOX", None, None, message("appended")))
            check(client.append("Archive", None, None, message("archived")))
            check(client.select("Archive"))
            check(client.copy("1", "INBOX"))
            return parseValues(check(client.status("INBOX", "(MESSAGES RECENT)"))[0])

        status = await self.imap(other)
        self.assertEqual(status, [b"INBOX", ["MESSAGES", 4, "RECENT", 2]])
        self.assertEqual(sorted(maildirFiles(self.folder()).values()), ["cur", "cur", "new", "new"])

        def reader(client: imaplib.IMAP4) -> Any:
            check(client.select("INBOX"))
            return client.response("RECENT")[1], check(client.search(None, "RECENT"))[0]

        self.assertEqual(await self.imap(reader), ([b"2"], b"1 2"))

    async def test_appendAndCopyToSelectedMailbox(self) -> None:
        """
        APPEND and COPY into the selected mailbox answer EXISTS at once (RFC
        3501 §6.3.11), so the client can use the new sequence numbers right
        away.
        """
        client = await self.raw()
        await client.command("SELECT INBOX")
        text = message("into the selected mailbox")
        tag = client.nextTag()
        reply = client.expectTag(tag)
        client.send(tag + b" APPEND INBOX {%d+}\r\n" % len(text) + text + b"\r\n")
        answer = await reply
        self.assertTrue(answer.ok, answer)
        self.assertIn(b"* 1 EXISTS", answer.untagged)
        reply = await client.command("STORE 1 +FLAGS (\\Flagged)")
        self.assertEqual(reply.untagged, [b"* 1 FETCH (FLAGS (\\Flagged))"])
        reply = await client.command("COPY 1 INBOX")
        self.assertTrue(reply.ok, reply)
        self.assertIn(b"* 2 EXISTS", reply.untagged)
        reply = await client.command("FETCH 2 (UID FLAGS)")
        self.assertEqual(reply.untagged, [b"* 2 FETCH (UID 2 FLAGS (\\Flagged))"])
        await client.command("LOGOUT")

    async def test_appendLiteralPlus(self) -> None:
        """
        LITERAL+ (RFC 7888): an APPEND with a non-synchronising literal gets
        no continuation and is stored; a synchronising one gets "+" first.
        """
        client = await self.raw()
        text = message("literal plus")
        tag = client.nextTag()
        reply = client.expectTag(tag)
        client.send(tag + b" APPEND INBOX (\\Seen) {%d+}\r\n" % len(text) + text + b"\r\n")
        answer = await reply
        self.assertTrue(answer.ok, answer)
        self.assertIn("APPENDUID", answer.text)
        self.assertEqual([r for r in answer.untagged if r.startswith(b"+")], [])
        tag = client.nextTag()
        reply = client.expectTag(tag)
        client.send(tag + b" APPEND INBOX {%d}\r\n" % len(text))
        await client.waitFor(rb"\+ ")
        client.send(text + b"\r\n")
        self.assertTrue((await reply).ok)
        await client.command("LOGOUT")
        self.assertEqual(sorted(m.get_flags() for m in self.stdlibMaildir().values()), ["", "S"])
        self.assertEqual([self.stdlibMaildir().get_bytes(k) for k in self.stdlibMaildir().keys()], [text, text])

    async def test_oversizedLiteralRefusedBeforeReading(self) -> None:
        """
        An APPEND literal over the message size limit is NO [TOOBIG] at
        once, with no continuation (the client never sends the octets);
        a non-synchronising one is BAD [TOOBIG] and the connection is
        closed, since its octets are already on their way; a string
        literal over 64 KiB elsewhere is BAD [TOOBIG].
        """
        limit = self.server.service.factories["imap"].maxLiteral
        client = await self.raw()
        tag = client.nextTag()
        reply = client.expectTag(tag)
        client.send(tag + b" APPEND INBOX {%d}\r\n" % (limit + 1))
        answer = await reply
        self.assertEqual((answer.status, answer.untagged), ("NO", []))
        self.assertIn("[TOOBIG]", answer.text)
        tag = client.nextTag()
        reply = client.expectTag(tag)
        client.send(tag + b" LOGIN {100000}\r\n")
        answer = await reply
        self.assertEqual(answer.status, "BAD")
        self.assertIn("[TOOBIG]", answer.text)
        self.assertTrue((await client.command("NOOP")).ok)
        tag = client.nextTag()
        reply = client.expectTag(tag)
        client.send(tag + b" APPEND INBOX {%d+}\r\n" % (limit + 1) + b"x" * 1000)
        answer = await reply
        self.assertEqual(answer.status, "BAD")
        await client.closed
        self.assertEqual(maildirFiles(self.folder()), {})


class CopyMoveTests(IMAPTestCase):
    """
    COPY, MOVE, and UIDPLUS's COPYUID and UID EXPUNGE.
    """

    async def test_copyAnswersCOPYUID(self) -> None:
        """
        COPY keeps the source, answers COPYUID pairing source and new UIDs
        in order, and the copies have the flags and octets of the
        originals; COPY to a missing folder is NO [TRYCREATE].
        """
        texts = [message(f"copy {n}") for n in range(3)]

        def work(client: imaplib.IMAP4) -> Any:
            for n, text in enumerate(texts):
                check(client.append("INBOX", "(\\Flagged)" if n == 1 else None, None, text))
            check(client.select("INBOX"))
            copyUid = responseCode(check(client.copy("2:3", "Archive")), "COPYUID")
            # (imaplib's uid() returns untagged data; the tagged text has COPYUID.)
            uidCopy = responseCode(check(client._simple_command("UID", "COPY", "3,1", "Trash")), "COPYUID")
            missing = failure(client.copy, "1", "Nowhere")
            count = check(client.select("INBOX"))[0]
            check(client.select("Archive"))
            items = fetched(check(client.fetch("1:*", "(UID FLAGS BODY.PEEK[])")))
            return copyUid, uidCopy, missing, count, items

        copyUid, uidCopy, missing, count, items = await self.imap(work)
        self.assertEqual(uidCopy[1:], ["1,3", "1:2"])
        validity, sources, targets = copyUid
        self.assertEqual(sources, "2:3")
        self.assertEqual(targets, "1:2")
        self.assertIn("TRYCREATE", missing)
        self.assertEqual(count, b"3")
        self.assertEqual([items[n]["BODY[]"] for n in (1, 2)], texts[1:])
        self.assertEqual(items[1]["FLAGS"], ["\\Flagged"])
        self.assertEqual(items[2]["FLAGS"], [])
        self.assertEqual(len(self.stdlibMaildir("Archive")), 2)

    async def test_moveAnswersCOPYUIDThenEXPUNGE(self) -> None:
        """
        MOVE (RFC 6851) sends COPYUID in an untagged OK, then EXPUNGE for
        each message moved, highest first numbering kept valid; the
        messages are in the target and no longer in the source, on disk
        too.
        """
        client = await self.raw()
        for n in range(4):
            text = message(f"move {n}")
            tag = client.nextTag()
            reply = client.expectTag(tag)
            client.send(tag + b" APPEND INBOX {%d+}\r\n" % len(text) + text + b"\r\n")
            self.assertTrue((await reply).ok)
        await client.command("SELECT INBOX")
        reply = await client.command("MOVE 2,4 Trash")
        self.assertTrue(reply.ok, reply)
        self.assertTrue(reply.untagged[0].startswith(b"* OK [COPYUID "), reply.untagged)
        self.assertEqual(reply.untagged[0].split()[3:6], [reply.untagged[0].split()[3], b"2,4", b"1:2]"])
        self.assertEqual(reply.untagged[1:], [b"* 2 EXPUNGE", b"* 3 EXPUNGE"])
        reply = await client.command("UID MOVE 3 Trash")
        self.assertTrue(reply.ok, reply)
        self.assertEqual(reply.untagged[1:], [b"* 2 EXPUNGE"])
        await client.command("LOGOUT")
        subjects = sorted(m["Subject"] for m in self.stdlibMaildir("Trash").values())
        self.assertEqual(subjects, ["move 1", "move 2", "move 3"])
        self.assertEqual([m["Subject"] for m in self.stdlibMaildir().values()], ["move 0"])

    async def test_uidExpungeOnlyThose(self) -> None:
        """
        UID EXPUNGE (RFC 4315) removes only the \\Deleted messages among
        the UIDs given; another \\Deleted message stays, still \\Deleted.
        """

        def work(client: imaplib.IMAP4) -> Any:
            for n in range(4):
                check(client.append("INBOX", "(\\Deleted)" if n != 2 else None, None, message(f"n{n}")))
            check(client.select("INBOX"))
            typ, data = client.uid("EXPUNGE", "2:3")
            check((typ, data))
            expunged = client.response("EXPUNGE")[1]
            left = fetched(check(client.fetch("1:*", "(UID FLAGS)")))
            return expunged, left

        expunged, left = await self.imap(work)
        self.assertEqual(expunged, [b"2"])
        self.assertEqual({v["UID"]: v["FLAGS"] for v in left.values()}, {1: ["\\Deleted"], 3: [], 4: ["\\Deleted"]})
        self.assertEqual(len(self.stdlibMaildir()), 3)

    async def test_expunge(self) -> None:
        """
        EXPUNGE removes every \\Deleted message, answering one EXPUNGE each
        with sequence numbers valid when sent; the files are gone and the
        UIDs of the others stay.
        """

        def work(client: imaplib.IMAP4) -> Any:
            for n in range(5):
                check(client.append("INBOX", None, None, message(f"n{n}")))
            check(client.select("INBOX"))
            check(client.store("2,3,5", "+FLAGS.SILENT", "(\\Deleted)"))
            expunged = check(client.expunge())
            return expunged, uidsOf(client)

        expunged, uids = await self.imap(work)
        self.assertEqual(expunged, [b"2", b"2", b"3"])
        self.assertEqual(uids, [1, 4])
        self.assertEqual(sorted(m["Subject"] for m in self.stdlibMaildir().values()), ["n0", "n3"])

    async def test_store(self) -> None:
        """
        STORE sets, adds and removes flags and keywords, answers FETCH
        FLAGS (with UID for UID STORE) unless .SILENT; the names on disk
        follow.
        """

        def work(client: imaplib.IMAP4) -> Any:
            check(client.append("INBOX", None, None, message("flags")))
            check(client.select("INBOX"))
            added = check(client.store("1", "+FLAGS", "(\\Flagged $Label1)"))
            replaced = check(client.uid("STORE", "1", "FLAGS", "(\\Seen \\Answered)"))
            silent = check(client.store("1", "-FLAGS.SILENT", "(\\Answered)"))
            return added, replaced, silent

        added, replaced, silent = await self.imap(work)
        self.assertEqual(parseValues(added[0]), [1, ["FLAGS", ["\\Flagged", "$Label1"]]])
        items = dict(zip(*[iter(parseValues(replaced[0])[1])] * 2))
        self.assertEqual((sorted(items["FLAGS"]), items["UID"]), (["\\Answered", "\\Seen"], 1))
        self.assertEqual(silent, [None])
        [stored] = self.stdlibMaildir().values()
        self.assertEqual(stored.get_flags(), "S")


class FolderTests(IMAPTestCase):
    """
    CREATE, DELETE, RENAME, LIST, LSUB, SUBSCRIBE, STATUS, and the
    Maildir++ tree they make on disk.
    """

    def listed(self, lines: list[bytes]) -> dict[str, list[str]]:
        """
        LIST lines as C{{name: attributes}}.
        """
        out = {}
        for line in untagged(lines):
            attributes, delimiter, name = parseValues(line)
            self.assertEqual(delimiter, b"/")
            out[name.decode() if isinstance(name, bytes) else name] = attributes
        return out

    async def test_dovecotTree(self) -> None:
        """
        The first login makes INBOX and the special-use folders as Dovecot
        lays them out (C{.Sent} with C{maildirfolder}, C{cur new tmp}),
        subscribed; a nested folder is C{.Parent.Child}; a name in
        modified UTF-7 is stored so.
        """

        def work(client: imaplib.IMAP4) -> Any:
            check(client.create("Projects/2026"))
            check(client.create("Entw&APw-rfe"))
            return self.listed(check(client.list()))

        folders = await self.imap(work)
        root = self.folder()
        for name in ("Sent", "Drafts", "Trash", "Junk", "Archive", "Projects.2026", "Entw&APw-rfe"):
            path = os.path.join(root, "." + name)
            self.assertTrue(os.path.isfile(os.path.join(path, "maildirfolder")), name)
            for sub in ("cur", "new", "tmp"):
                self.assertTrue(os.path.isdir(os.path.join(path, sub)), (name, sub))
        self.assertFalse(os.path.exists(os.path.join(root, ".Projects")))
        with open(os.path.join(root, "subscriptions")) as f:
            self.assertEqual(sorted(f.read().split()), ["Archive", "Drafts", "INBOX", "Junk", "Sent", "Trash"])
        self.assertEqual(
            set(folders),
            {"INBOX", "Sent", "Drafts", "Trash", "Junk", "Archive", "Projects", "Projects/2026", "Entw&APw-rfe"},
        )
        # SPECIAL-USE (RFC 6154) and CHILDREN (RFC 3348).
        for name, use in (("Sent", "\\Sent"), ("Drafts", "\\Drafts"), ("Trash", "\\Trash"), ("Junk", "\\Junk"), ("Archive", "\\Archive")):
            self.assertIn(use, folders[name])
        self.assertEqual(sorted(folders["Projects"]), ["\\HasChildren", "\\Noselect"])
        self.assertEqual(folders["Projects/2026"], ["\\HasNoChildren"])
        self.assertIn("\\HasNoChildren", folders["INBOX"])
        # Dovecot's own reader would see the same folders.
        box = self.stdlibMaildir()
        self.assertIn("Projects.2026", box.list_folders())

    async def test_listPatterns(self) -> None:
        """
        LIST with % stops at the separator, * does not; a reference is
        prefixed; INBOX matches in any case; an empty pattern gives the
        delimiter.
        """

        def work(client: imaplib.IMAP4) -> Any:
            check(client.create("Projects/2026/Q1"))
            check(client.create("Projects/2025"))
            return (
                self.listed(check(client.list('""', "%"))),
                self.listed(check(client.list('""', "Projects/*"))),
                self.listed(check(client.list("Projects/", "%"))),
                self.listed(check(client.list('""', "inbox"))),
                check(client.list('""', '""')),
            )

        top, below, referenced, inbox, root = await self.imap(work)
        self.assertEqual(set(top), {"INBOX", "Sent", "Drafts", "Trash", "Junk", "Archive", "Projects"})
        self.assertEqual(set(below), {"Projects/2025", "Projects/2026", "Projects/2026/Q1"})
        self.assertEqual(set(referenced), {"Projects/2025", "Projects/2026"})
        self.assertIn("\\HasChildren", below["Projects/2026"])
        self.assertEqual(set(inbox), {"INBOX"})
        self.assertEqual(parseValues(root[0]), [["\\Noselect"], b"/", b""])

    async def test_subscriptions(self) -> None:
        """
        SUBSCRIBE, LSUB and UNSUBSCRIBE, kept in the C{subscriptions} file.
        """

        def work(client: imaplib.IMAP4) -> Any:
            check(client.create("Lists"))
            check(client.subscribe("Lists"))
            check(client.unsubscribe("Junk"))
            lsub = check(client.lsub())
            missing = failure(client.unsubscribe, "Junk")
            return [parseValues(line)[2] for line in lsub], missing

        subscribed, missing = await self.imap(work)
        self.assertEqual(sorted(subscribed), [b"Archive", b"Drafts", b"INBOX", b"Lists", b"Sent", b"Trash"])
        self.assertTrue(missing.startswith("NO"), missing)
        with open(os.path.join(self.folder(), "subscriptions")) as f:
            self.assertEqual(sorted(f.read().split()), ["Archive", "Drafts", "INBOX", "Lists", "Sent", "Trash"])

    async def test_createAndDelete(self) -> None:
        """
        CREATE with a trailing separator, CREATE of an existing folder (NO
        [ALREADYEXISTS]) or INBOX, DELETE with its messages, DELETE of a
        folder with children (it becomes \\Noselect, the children stay),
        DELETE of INBOX or a missing folder refused.
        """

        def work(client: imaplib.IMAP4) -> Any:
            check(client.create("Work/"))
            check(client.create("Work/Old"))
            check(client.append("Work", None, None, message("work")))
            exists = failure(client.create, "Work")
            inbox = failure(client.create, "inbox")
            check(client.delete("Work"))
            afterParent = self.listed(check(client.list('""', "Work*")))
            check(client.delete("Work/Old"))
            deleteInbox = failure(client.delete, "INBOX")
            missing = failure(client.delete, "Work")
            return exists, inbox, afterParent, deleteInbox, missing, self.listed(check(client.list('""', "Work*")))

        exists, inbox, afterParent, deleteInbox, missing, afterAll = await self.imap(work)
        self.assertIn("ALREADYEXISTS", exists)
        self.assertTrue(inbox.startswith("NO"), inbox)
        self.assertEqual(sorted(afterParent["Work"]), ["\\HasChildren", "\\Noselect"])
        self.assertIn("Work/Old", afterParent)
        self.assertTrue(deleteInbox.startswith("NO"), deleteInbox)
        self.assertIn("NONEXISTENT", missing)
        self.assertEqual(afterAll, {})
        self.assertEqual([e for e in os.listdir(self.folder()) if e.startswith(".Work")], [])

    async def test_rename(self) -> None:
        """
        RENAME moves a folder with its children and messages, UIDs kept;
        renaming onto an existing folder, below itself, or a missing one
        is refused.
        """

        def work(client: imaplib.IMAP4) -> Any:
            check(client.create("Old"))
            check(client.create("Old/Child"))
            check(client.append("Old", None, None, message("kept")))
            check(client.append("Old", None, None, message("kept too")))
            check(client.select("Old"))
            check(client.store("1", "+FLAGS", "(\\Deleted)"))
            check(client.expunge())
            before = uidsOf(client)
            check(client.unselect())
            check(client.rename("Old", "New"))
            check(client.select("New"))
            after = uidsOf(client)
            subject = fetched(check(client.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")))[1]
            refused = [
                failure(client.rename, "New", "Sent"),
                failure(client.rename, "New", "New/Below"),
                failure(client.rename, "Nothing", "Else"),
                failure(client.rename, "New", "INBOX"),
            ]
            return before, after, subject, refused, self.listed(check(client.list()))

        before, after, subject, refused, folders = await self.imap(work)
        self.assertEqual(before, [2])
        self.assertEqual(after, [2])
        self.assertEqual(list(subject.values()), [b"Subject: kept too\r\n\r\n"])
        for text in refused:
            self.assertTrue(text.startswith("NO"), text)
        self.assertIn("New/Child", folders)
        self.assertNotIn("Old", folders)
        self.assertNotIn("Old/Child", folders)
        self.assertTrue(os.path.isdir(self.folder("New/Child")))
        self.assertEqual([m["Subject"] for m in self.stdlibMaildir("New").values()], ["kept too"])

    async def test_renameInbox(self) -> None:
        """
        RENAME INBOX (RFC 3501 §6.3.5) moves every message of INBOX into
        the new folder; INBOX stays, empty and selectable.
        """
        await self.deliver(message("one"), message("two"))

        def work(client: imaplib.IMAP4) -> Any:
            check(client.rename("INBOX", '"Old Mail"'))
            inbox = check(client.select("INBOX"))[0]
            old = check(client.select('"Old Mail"'))[0]
            subjects = fetched(check(client.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")))
            return inbox, old, sorted(list(v.values())[0] for v in subjects.values())

        inbox, old, subjects = await self.imap(work)
        self.assertEqual((inbox, old), (b"0", b"2"))
        self.assertEqual(subjects, [b"Subject: one\r\n\r\n", b"Subject: two\r\n\r\n"])
        self.assertEqual(len(self.stdlibMaildir()), 0)
        self.assertEqual(len(self.stdlibMaildir("Old Mail")), 2)
        await self.deliver(message("three"))
        self.assertEqual([m["Subject"] for m in self.stdlibMaildir().values()], ["three"])

    async def test_status(self) -> None:
        """
        STATUS of a folder that is not selected: MESSAGES, RECENT, UIDNEXT,
        UIDVALIDITY, UNSEEN; of a missing folder NO; an unknown item BAD.
        """
        await self.deliver(message("new one"), message("new two"))

        def work(client: imaplib.IMAP4) -> Any:
            check(client.append("INBOX", "(\\Seen)", None, message("seen")))
            inbox = parseValues(check(client.status("INBOX", "(MESSAGES RECENT UIDNEXT UIDVALIDITY UNSEEN)"))[0])
            sent = parseValues(check(client.status("Sent", "(MESSAGES UIDNEXT UNSEEN)"))[0])
            check(client.select("INBOX"))
            validity = client.response("UIDVALIDITY")[1]
            return inbox, sent, validity, failure(client.status, "Nowhere", "(MESSAGES)"), failure(client.status, "INBOX", "(SIZE-OF-ALL)")

        inbox, sent, validity, missing, unknown = await self.imap(work)
        self.assertEqual(inbox[0], b"INBOX")
        items = dict(zip(inbox[1][::2], inbox[1][1::2]))
        self.assertEqual(
            {k: v for k, v in items.items() if k != "UIDVALIDITY"},
            {"MESSAGES": 3, "RECENT": 2, "UIDNEXT": 4, "UNSEEN": 2},
        )
        self.assertEqual([str(items["UIDVALIDITY"]).encode()], validity)
        self.assertEqual(sent, [b"Sent", ["MESSAGES", 0, "UIDNEXT", 1, "UNSEEN", 0]])
        self.assertIn("NONEXISTENT", missing)
        self.assertIn("BAD", unknown)
