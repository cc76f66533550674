"""Errors a user can fix: their message is one line naming the file or key and what to do."""


class ScopeflowError(ValueError):
    """Base class for user-facing input and configuration errors."""


class InputImageError(ScopeflowError):
    """An input image is missing, unreadable or inconsistent."""


class ImageNotFoundError(InputImageError, FileNotFoundError):
    """An input image file does not exist (also a :class:`FileNotFoundError`)."""


def os_error_line(exc: OSError) -> str:
    """One line for an operating-system error: the path, what failed, and what to do.

    A full disk (``ENOSPC``) or quota (``EDQUOT``) says to free space and rerun; permission
    errors say to check the permissions; anything else names the error.
    """
    import errno

    where = exc.filename or "(unknown path)"
    if exc.filename2:
        where = f"{where} -> {exc.filename2}"
    what = exc.strerror or str(exc) or type(exc).__name__
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        todo = "free space on that file system (or raise the quota) and rerun; finished work is kept"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        todo = "check that the folder is writable by this user and rerun"
    else:
        todo = "check the file system and rerun"
    return f"{where}: {what} [{errno.errorcode.get(exc.errno, exc.errno)}]; {todo}"
