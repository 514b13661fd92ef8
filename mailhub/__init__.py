"""
mailhub: a complete mail server on one Twisted reactor.
"""

__version__ = "0.1.0"
