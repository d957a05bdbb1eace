"""The one exception type this package raises for bad user input (the CLI maps it to exit code 2)."""


class InputError(ValueError):
    """Bad input from the user: a missing file or column, a malformed value, an empty arm...

    The message is one line that names the offending file, column or value.
    """
