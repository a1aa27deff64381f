"""Exception and warning types shared by every part of peakfit.

All errors raised on bad user input derive from :class:`InputError`, which is
also a :class:`ValueError`, so ``except ValueError`` keeps working for callers
who do not know peakfit's types.
"""

from __future__ import annotations

__all__ = [
    "FileFormatError",
    "FitWarning",
    "GPUUnavailableError",
    "InputError",
    "PeakfitError",
]


class PeakfitError(Exception):
    """Base class of every exception raised by peakfit."""


class InputError(PeakfitError, ValueError):
    """Bad input: wrong shape, non-finite values, inconsistent options.

    The message always names the offending argument and, where it helps, the
    count and the first index of the bad values.
    """


class FileFormatError(InputError):
    """A file could not be read as spectra.

    Parameters
    ----------
    message : str
        What is wrong.
    path : str, optional
        The file.
    line, column : int, optional
        1-based position of the problem, when known.
    """

    def __init__(
        self,
        message: str,
        path: str | None = None,
        line: int | None = None,
        column: int | None = None,
    ) -> None:
        self.path = path
        self.line = line
        self.column = column
        where = []
        if path is not None:
            where.append(str(path))
        if line is not None:
            where.append(f"line {line}")
        if column is not None:
            where.append(f"column {column}")
        prefix = ", ".join(where)
        super().__init__(f"{prefix}: {message}" if prefix else message)


class GPUUnavailableError(PeakfitError, RuntimeError):
    """``device='gpu'`` was asked for but CuPy or a CUDA device is missing."""


class FitWarning(UserWarning):
    """A fit finished but something about it deserves attention."""
