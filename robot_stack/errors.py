"""User-facing errors: raised for mistakes a user can fix, printed as one line, never a traceback."""


class UserError(Exception):
    """A problem with the user's input (config, file, device, argument).

    The message must say what is wrong and what to fix, on one line. The CLI and every node
    entry point catch it and print ``robot-stack: error: <message>`` instead of a traceback.
    """
