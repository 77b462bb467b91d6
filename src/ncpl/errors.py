"""The errors ncpl raises: one base, `NcplError`, and a kind for each thing a user can get wrong.

Each kind also derives from the builtin exception a Python caller would expect (a bad value is a
`ValueError`, an unreadable model directory an `OSError` as in transformers' `from_pretrained`,
an unfitted estimator an `AttributeError` as in scikit-learn), so `except ValueError` keeps
working. Messages name the library parameter or field, never a command-line flag: the CLI maps
parameters to its flags where it reports the error.
"""

from __future__ import annotations


class NcplError(Exception):
    """Base of every error ncpl raises on purpose; the CLI prints its message and exits with code 2."""


class ConfigError(NcplError, ValueError):
    """A setting, config field or argument is invalid; the message names the field, the value and the fix."""


class DataError(NcplError, ValueError):
    """A runs file, sweep or curve is unreadable or holds bad rows; the message names the file and the row."""


class ModelDirError(NcplError, OSError):
    """A model directory is missing, incomplete, corrupted or of an unknown predictor."""


class NotFittedError(NcplError, AttributeError):
    """A predictor was asked to predict before `fit` (or loading a model directory)."""
