"""The errors the project raises on purpose: bad input, a missing or unloadable file, an unreachable source, a run
that cannot go on. Each message says what is wrong and names the fix. main.py prints these as one line; any other
exception is a bug and keeps its traceback.

They subclass the built-in exception a caller would expect (InputError is a ValueError, InputTypeError a TypeError,
...), so `except ValueError` keeps working.
"""


class ProjectError(Exception):
    """Base of every error raised on purpose; its message names the fix."""


class InputError(ProjectError, ValueError):
    """A value, flag, setting or data row out of range or of the wrong kind."""


class InputTypeError(ProjectError, TypeError):
    """An argument of the wrong type (e.g. None or bytes where texts are expected)."""


class InputFileNotFound(ProjectError, FileNotFoundError):
    """A file the user named does not exist."""
