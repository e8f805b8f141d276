"""The one exception type that reaches users as a message rather than a traceback."""


class GalleryError(Exception):
    """A problem with what the user asked for: bad input, missing file, no weights.

    The CLI prints ``str(error)`` on one line and exits with status 2; ``--debug`` shows
    the traceback instead. Messages name the value received and what was expected.
    """
