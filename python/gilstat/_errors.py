"""The package's exception and warning types."""


class GilstatError(RuntimeError):
    """gilstat could not measure (another gilstat reads this process, a nested
    measure(), the probe or the reader failed).  The message says what and the
    hint (`.hint`) what to do."""

    def __init__(self, message, hint=""):
        super().__init__(message + ("\nhint: " + hint if hint else ""))
        self.hint = hint


class GilstatWarning(UserWarning):
    """Something a measurement could not show (the GIL disabled in a free-threaded
    build): the assertions pass, never silently."""
