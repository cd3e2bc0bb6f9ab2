"""Shared Signals (SSF 1.0): Security Event Tokens pushed by identity providers (RFC 8417, RFC 8935), verified
and turned into job requests."""
