"""
IMAP4rev1 (RFC 3501) for mailhub: message-level logic (ENVELOPE,
BODYSTRUCTURE, BODY[section] and partials in L{mailhub.imap.message}; SEARCH
in L{mailhub.imap.search}), kept free of protocol code so that the server,
the index and the benchmarks can all use it.
"""
