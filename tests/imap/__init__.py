"""
Tests for L{mailhub.imap}.
"""
