"""The errors a user causes and can fix from the message alone. The tools' common error path
(``multitask_pose/engine/cli.py``) prints them as one line and exits 2 (the traceback with
``--debug``); any other exception is a bug and keeps its traceback."""

__all__ = ["ConfigError", "UserError"]


class UserError(Exception):
    """An error the user caused and can fix from its message, which is one line naming the
    culprit and what to do. Subclasses also derive from the builtin error they stand for."""


class ConfigError(UserError, ValueError):
    """A config file or override that cannot be used (missing, other stage, unknown key, bad
    value, unknown dataset, device not present)."""
