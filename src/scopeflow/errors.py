"""Errors a user can fix: their message is one line naming the file or key and what to do."""


class ScopeflowError(ValueError):
    """Base class for user-facing input and configuration errors."""


class InputImageError(ScopeflowError):
    """An input image is missing, unreadable or inconsistent."""
