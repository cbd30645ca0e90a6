"""Exceptions of nbengine's public API that have a home of their own in ignite (``ignite.exceptions``)."""

__all__ = ["NotComputableError"]


class NotComputableError(RuntimeError):
    """Raised by a metric's ``compute()`` when it has not seen enough data to produce a value."""
