"""The one exception type for mistakes a user can make (bad paths, bad options, bad files)."""


class AnosegError(Exception):
    """A user-caused error. The CLI prints its message as one red line and exits with code 2.

    The message must name the offending file or option, e.g.
    ``AnosegError("mask missing for data/mvtec/bottle/test/crack/003.png")``.
    """


class Interrupted(AnosegError):
    """Ctrl-C during a command. The CLI prints its message (what was kept) as one line and exits with code 130."""
