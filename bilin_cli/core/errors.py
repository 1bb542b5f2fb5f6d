"""The one exception type for problems a user can cause (bad file, bad option value).

The CLI turns it into ``error: <message>`` on stderr and exit code 1.
"""


class BilinError(Exception):
    """A user-facing error: the message is one line that says what to do."""
