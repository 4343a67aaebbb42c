"""Errors that the `trl-plus` command line reports as one line, without a traceback.

Kept apart from `trl_plus.cli` so that commands, data loaders and `python -m trl_plus.cli` all see
one class (a module run as `__main__` is a second copy of itself).
"""


class UserError(Exception):
    """An error caused by the user's input; the message names the problem and the fix.

    The CLI prints the message alone and exits with status 2.
    """
