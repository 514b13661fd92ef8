"""
POP3 (RFC 1939, 2449, 2595, 3206, 5034) over a user's Maildir INBOX:
L{mailhub.pop3.server} is the protocol, L{mailhub.pop3.mailbox} the
maildrop.
"""
