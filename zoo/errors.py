"""The one exception type for mistakes a user can make (bad name, bad path, bad value).

Entry points catch it and print one line, ``error: <message>``, with a non-zero exit; any other
exception is a bug and keeps its traceback.
"""


class ZooError(Exception):
    """A user-facing error: its message is the whole story, no traceback needed."""
