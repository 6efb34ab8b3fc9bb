"""One exception type for every user-facing failure.

The CLI catches :class:`ClearfaceError`, prints its message on one line and exits non-zero,
so anything raised with it must already name the file, entry, line or value at fault.
"""


class ClearfaceError(Exception):
    """A problem with the user's input or environment, with a message fit to show as is."""

    exit_code = 2
