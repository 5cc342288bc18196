"""The one exception type for bad user input.

Entry points (train.py, eval.py, scripts/) catch `UserError` and print its message on
one line with a non-zero exit, no traceback: the message itself must name the bad value
and say what is allowed. Library callers get an ordinary `ValueError` subclass.
"""


class UserError(ValueError):
    """Invalid input from a user: config value, file, dataset, option."""
