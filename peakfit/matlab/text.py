"""Read fit results produced by MATLAB's Curve Fitting Toolbox, for comparison with peakfit.

:func:`parse_matlab_fit` reads what MATLAB prints for a ``cfit`` object (``fitresult = ...``
with ``Coefficients (with 95% confidence bounds):``), the cftool "Goodness of fit:" block and
the display of the ``gof`` struct, pasted into a text file or given as a string.
:func:`load_matlab_coefficients` reads coefficients saved to a ``.mat`` file.  Both return a
:class:`MatlabFit`; :func:`read_matlab_result` picks one of them by the file's extension.

The display format (CFTB ``argstring.m``/``makedisplay.m``)::

         General model Gauss2:
         fitresult(x) =  a1*exp(-((x-b1)/c1)^2) + a2*exp(-((x-b2)/c2)^2)
         Coefficients (with 95% confidence bounds):
           a1 =       313.2  (278.5, 348)
           c1 =      -23.51  (fixed at bound)

i.e. ``'       %s = %11.4g  (%.4g, %.4g)'``; ``(fixed at bound)`` for a coefficient at an active
bound; no interval at all when it is not available.  Values are printed with 4 significant
digits, so compare to MATLAB at about 1e-3 relative.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from peakfit.errors import FileFormatError
from peakfit.io import MissingFileError, _is_hdf5, _require

__all__ = ["MatlabFit", "load_matlab_coefficients", "parse_matlab_fit", "read_matlab_result"]


@dataclass(frozen=True)
class MatlabFit:
    """Coefficients, confidence bounds and goodness of fit of one MATLAB fit.

    Attributes
    ----------
    model : str or None
        Lower-case library model name, e.g. ``'gauss2'`` (``None`` when not shown).
    n_terms : int or None
        Number of Gaussian terms: from ``gaussN``, else inferred when the coefficients are
        exactly ``a1, b1, c1, ..., aN, bN, cN``.
    coefficients : dict of str to float
        Values in file order (MATLAB order ``a1, b1, c1, a2, ...`` for ``gaussN``).
    lower, upper : dict of str to float
        Confidence bounds per coefficient; NaN when not shown or fixed at a bound.
    fixed_at_bound : frozenset of str
        Coefficients printed with ``(fixed at bound)``.
    level : float
        Confidence level of the bounds (0.95 from ``with 95% confidence bounds``).
    gof : dict of str to float
        Any of ``sse``, ``rsquare``, ``dfe``, ``adjrsquare``, ``rmse`` that were present.
    normalized : tuple of (float, float) or None
        ``(mean, std)`` from ``where x is normalized by mean ... and std ...``.
    source : str or None
        The file read, if any.

    Examples
    --------
    >>> f = parse_matlab_fit("a1 = 2  (1, 3)\\nb1 = 0.5\\nc1 = 1.5")
    >>> f.n_terms, f.as_array().tolist(), f.lower["a1"], f.upper["a1"]
    (1, [2.0, 0.5, 1.5], 1.0, 3.0)
    """

    model: str | None
    n_terms: int | None
    coefficients: dict[str, float]
    lower: dict[str, float]
    upper: dict[str, float]
    fixed_at_bound: frozenset[str]
    level: float = 0.95
    gof: dict[str, float] = field(default_factory=dict)
    normalized: tuple[float, float] | None = None
    source: str | None = None

    @property
    def names(self) -> tuple[str, ...]:
        """Coefficient names in file order."""
        return tuple(self.coefficients)

    def as_array(self) -> np.ndarray:
        """Coefficient values in file order as a float64 array."""
        return np.array(list(self.coefficients.values()), dtype=np.float64)


# --------------------------------------------------------------------------------------------
# Text parsing
# --------------------------------------------------------------------------------------------

_MODEL_RE = re.compile(r"^\s*(?:[A-Za-z]+\s+)?model(?:\s+(\S+?))?\s*:\s*$", re.IGNORECASE)
_FORMULA_RE = re.compile(r"^\s*[A-Za-z_]\w*\s*\(\s*[A-Za-z_]\w*\s*\)\s*=")
_COEF_HEADER_RE = re.compile(
    r"^\s*Coefficients\s*(?:\(\s*with\s+(?P<pct>\S+?)\s*%\s*confidence\s+bounds\s*\))?\s*:\s*$",
    re.IGNORECASE,
)
_ASSIGN_RE = re.compile(r"^\s*(?P<name>[A-Za-z_]\w*)\s*=\s*(?P<rest>.*?)\s*$")
_VALUE_RE = re.compile(r"^(?P<value>[^\s(]+)\s*(?P<tail>.*)$")
_FIXED_RE = re.compile(r"^\(\s*fixed\s+at\s+bound\s*\)$", re.IGNORECASE)
_BOUNDS_RE = re.compile(r"^\(\s*(?P<lo>[^,()\s]+)\s*,\s*(?P<hi>[^,()\s]+)\s*\)$")
_NORMALIZED_RE = re.compile(
    r"where\s+x\s+is\s+normali[sz]ed\s+by\s+mean\s+(?P<mean>\S+)\s+and\s+std\s+(?P<std>\S+?)"
    r"[.,;]?\s*$",
    re.IGNORECASE,
)
_GOF_RE = re.compile(r"^\s*(?P<key>[A-Za-z][A-Za-z \-]*?)\s*:\s*(?P<value>\S+)\s*$")
_GOF_KEYS = {
    "sse": "sse",
    "rsquare": "rsquare",
    "r-square": "rsquare",
    "adjrsquare": "adjrsquare",
    "adjusted r-square": "adjrsquare",
    "adj r-square": "adjrsquare",
    "rmse": "rmse",
    "dfe": "dfe",
}
_TERM_RE = re.compile(r"^([abc])([1-9]\d*)$")


def _number(token: str) -> float | None:
    """MATLAB-printed number (``313.2``, ``2.113e+04``, ``-Inf``, ``NaN``) or None."""
    if "_" in token:
        return None
    try:
        return float(token)
    except ValueError:
        return None


def _read_input(text_or_path: str | os.PathLike) -> tuple[str, str | None]:
    if isinstance(text_or_path, os.PathLike) or (
        isinstance(text_or_path, str) and "\n" not in text_or_path and "=" not in text_or_path
    ):
        path = os.fspath(text_or_path)
        if not os.path.isfile(path):
            if os.path.isdir(path):
                raise FileFormatError("is a directory, expected a text file", path)
            raise MissingFileError(path)
        try:
            with open(path, encoding="utf-8-sig", errors="strict") as fh:
                return fh.read(), path
        except UnicodeDecodeError as exc:
            raise FileFormatError(f"not a UTF-8 text file ({exc.reason})", path) from exc
        except OSError as exc:
            raise FileFormatError(f"cannot open: {exc.strerror or exc}", path) from exc
    if not isinstance(text_or_path, str):
        raise TypeError(f"expected text or a path; got {type(text_or_path).__name__}")
    return text_or_path, None


def parse_matlab_fit(text_or_path: str | os.PathLike) -> MatlabFit:
    """Parse MATLAB's display of a ``cfit`` (and optionally of ``gof``).

    Parameters
    ----------
    text_or_path : str or path-like
        The pasted text, or the path of a text file holding it.  A ``str`` is taken as a path
        when it is a single line without ``=``.

    Returns
    -------
    MatlabFit

    Raises
    ------
    peakfit.errors.FileFormatError
        With the 1-based ``line`` (and ``column`` of the bad token) when a coefficient line
        after the ``Coefficients`` header has a value or bounds that are not numbers, a
        coefficient appears twice, a goodness-of-fit value is not a number; without a line
        when there are no coefficient lines at all.  A missing file raises
        :class:`peakfit.io.MissingFileError`.

    Notes
    -----
    Recognised lines, anywhere and in any order: ``... model Gauss2:``; the formula
    ``name(x) = ...`` and its continuation lines (ignored); ``Coefficients (with P%
    confidence bounds):`` (sets ``level``); ``name = value`` with an optional ``(lo, hi)`` or
    ``(fixed at bound)``; ``where x is normalized by mean M and std S``; goodness of fit in the
    cftool form (``SSE:``, ``R-square:``, ``Adjusted R-square:``, ``RMSE:``) or the struct form
    (``sse:``, ``rsquare:``, ``dfe:``, ``adjrsquare:``, ``rmse:``).  Before the coefficients
    header, ``name = ...`` lines whose value is not a number (``fitresult =``, a pasted command)
    are ignored; after it they are errors.

    Examples
    --------
    >>> text = '''
    ...      General model Gauss1:
    ...      f(x) =  a1*exp(-((x-b1)/c1)^2)
    ...      Coefficients (with 90% confidence bounds):
    ...        a1 =       313.2  (278.5, 348)
    ...        b1 =   2.113e+04  (1.964e+04, 2.262e+04)
    ...        c1 =       23.51  (fixed at bound)
    ... Goodness of fit:
    ...   SSE: 478.7
    ... '''
    >>> f = parse_matlab_fit(text)
    >>> f.model, f.n_terms, f.level, f.coefficients["b1"], sorted(f.fixed_at_bound)
    ('gauss1', 1, 0.9, 21130.0, ['c1'])
    >>> f.gof
    {'sse': 478.7}
    """
    text, path = _read_input(text_or_path)
    model: str | None = None
    level = 0.95
    coefficients: dict[str, float] = {}
    lower: dict[str, float] = {}
    upper: dict[str, float] = {}
    fixed: set[str] = set()
    first_seen: dict[str, int] = {}
    gof: dict[str, float] = {}
    normalized: tuple[float, float] | None = None
    header_line: int | None = None
    in_coefficients = False

    def fail(message: str, line: int, column: int | None = None) -> FileFormatError:
        return FileFormatError(message, path, line, column)

    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.rstrip()
        if not line.strip():
            continue
        m = _COEF_HEADER_RE.match(line)
        if m:
            header_line = lineno
            in_coefficients = True
            if m.group("pct") is not None:
                pct = _number(m.group("pct"))
                if pct is None or not 0 < pct < 100:
                    raise fail(
                        f"confidence level {m.group('pct')!r}% is not a number in (0, 100)",
                        lineno,
                        m.start("pct") + 1,
                    )
                level = pct / 100.0
            continue
        m = _NORMALIZED_RE.search(line)
        if m:
            mean, std = _number(m.group("mean")), _number(m.group("std"))
            if mean is None or std is None:
                bad = "mean" if mean is None else "std"
                raise fail(
                    f"normalization {bad} {m.group(bad)!r} is not a number",
                    lineno,
                    m.start(bad) + 1,
                )
            normalized = (mean, std)
            continue
        m = _MODEL_RE.match(line)
        if m:
            model = m.group(1).lower() if m.group(1) else None
            in_coefficients = False
            continue
        if _FORMULA_RE.match(line):
            in_coefficients = False
            continue
        m = _ASSIGN_RE.match(line)
        if m:
            parsed = _parse_coefficient(m, lineno, strict=in_coefficients, fail=fail)
            if parsed is None:  # 'fitresult =', 'gof =', a pasted command: not a coefficient
                in_coefficients = False
                continue
            name, value, lo, hi, is_fixed = parsed
            if name in coefficients:
                raise fail(
                    f"coefficient {name!r} appears twice (first on line {first_seen[name]})",
                    lineno,
                    m.start("name") + 1,
                )
            first_seen[name] = lineno
            coefficients[name], lower[name], upper[name] = value, lo, hi
            if is_fixed:
                fixed.add(name)
            continue
        in_coefficients = False
        m = _GOF_RE.match(line)
        if m:
            key = _GOF_KEYS.get(re.sub(r"\s+", " ", m.group("key").strip().lower()))
            if key is not None:
                value = _number(m.group("value"))
                if value is None:
                    raise fail(
                        f"goodness-of-fit value {m.group('value')!r} for {key} is not a number",
                        lineno,
                        m.start("value") + 1,
                    )
                gof[key] = value
        # anything else (formula continuation lines, 'Goodness of fit:', prose) is ignored

    if not coefficients:
        where = "after the 'Coefficients' header" if header_line is not None else "found"
        raise FileFormatError(f"no coefficient lines ('name = value') {where}", path, header_line)
    return MatlabFit(
        model=model,
        n_terms=_n_terms(model, coefficients),
        coefficients=coefficients,
        lower=lower,
        upper=upper,
        fixed_at_bound=frozenset(fixed),
        level=level,
        gof=gof,
        normalized=normalized,
        source=path,
    )


def _parse_coefficient(
    m: re.Match[str], lineno: int, *, strict: bool, fail: Any
) -> tuple[str, float, float, float, bool] | None:
    """Parse ``name = value [(lo, hi) | (fixed at bound)]``; None for a non-coefficient line."""
    name, rest = m.group("name"), m.group("rest")
    rest_col = m.start("rest") + 1
    vm = _VALUE_RE.match(rest)
    if vm is None:
        if strict and rest:
            raise fail(f"coefficient {name!r} has no value before {rest!r}", lineno, rest_col)
        return None  # 'name =' with nothing after it: a variable display header
    value = _number(vm.group("value"))
    if value is None:
        if strict:
            raise fail(
                f"value {vm.group('value')!r} of coefficient {name!r} is not a number",
                lineno,
                rest_col + vm.start("value"),
            )
        return None
    tail = vm.group("tail").strip()
    tail_col = rest_col + vm.start("tail")
    lo = hi = math.nan
    is_fixed = False
    if not tail:
        pass
    elif _FIXED_RE.match(tail):
        is_fixed = True
    else:
        bm = _BOUNDS_RE.match(tail)
        if bm is None:
            if strict:
                raise fail(
                    f"cannot read the bounds {tail!r} of coefficient {name!r}; expected "
                    "'(lower, upper)' or '(fixed at bound)'",
                    lineno,
                    tail_col,
                )
            return None
        lo_v, hi_v = _number(bm.group("lo")), _number(bm.group("hi"))
        if lo_v is None or hi_v is None:
            if strict:
                key = "lo" if lo_v is None else "hi"
                raise fail(
                    f"bound {bm.group(key)!r} of coefficient {name!r} is not a number",
                    lineno,
                    tail_col + bm.start(key),
                )
            return None
        lo, hi = lo_v, hi_v
    return name, value, lo, hi, is_fixed


def _n_terms(model: str | None, coefficients: Mapping[str, float]) -> int | None:
    if model is not None:
        mm = re.fullmatch(r"gauss([1-9]\d*)", model)
        return int(mm.group(1)) if mm else None
    names = list(coefficients)
    if not names or len(names) % 3:
        return None
    n = len(names) // 3
    expected = {f"{p}{i}" for i in range(1, n + 1) for p in "abc"}
    return n if set(names) == expected else None


# --------------------------------------------------------------------------------------------
# .mat files
# --------------------------------------------------------------------------------------------

_VECTOR_NAMES = ("coeffs", "coefficients", "p")
_GOF_FIELDS = ("sse", "rsquare", "dfe", "adjrsquare", "rmse")


def load_matlab_coefficients(path: str | os.PathLike, *, variable: str | None = None) -> MatlabFit:
    """Read Gaussian coefficients saved from MATLAB to a ``.mat`` file (v5 or v7.3).

    Parameters
    ----------
    path : str or path-like
        The ``.mat`` file.
    variable : str, optional
        Name of the coefficient vector.  Default: the first of ``coeffs``, ``coefficients``,
        ``p``; if none exists, scalars ``a1, b1, c1, a2, ...``.

    Returns
    -------
    MatlabFit
        ``model='gaussN'``, coefficients in MATLAB order ``a1, b1, c1, a2, ...``, bounds NaN.
        A struct variable ``gof`` (as returned by ``fit``) fills ``gof``.

    Raises
    ------
    peakfit.errors.FileFormatError
        No coefficient variables (the message lists the variables found), a vector whose
        length is not a multiple of 3, incomplete scalar triples, non-numeric values.

    Examples
    --------
    >>> import os, tempfile, numpy as np, scipy.io
    >>> p = os.path.join(tempfile.mkdtemp(), "c.mat")
    >>> scipy.io.savemat(p, {"coeffs": np.array([[2.0, 0.5, 1.5]])})
    >>> f = load_matlab_coefficients(p)
    >>> f.model, f.coefficients
    ('gauss1', {'a1': 2.0, 'b1': 0.5, 'c1': 1.5})
    """
    spath = os.fspath(path)
    if not os.path.exists(spath):
        raise MissingFileError(spath)
    if Path(spath).suffix.lower() != ".mat":
        raise FileFormatError("expected a MATLAB .mat file", spath)
    if _is_hdf5(spath):
        h5py = _require("h5py", "reading MATLAB v7.3 .mat files")
        with h5py.File(spath, "r") as fh:
            variables: dict[str, Any] = {}
            for key in fh:
                if key.startswith("#"):
                    continue
                obj = fh[key]
                if isinstance(obj, h5py.Dataset):
                    if obj.dtype.kind in "biuf" and not obj.attrs.get("MATLAB_empty", 0):
                        variables[key] = np.asarray(obj[()]).T
                    else:
                        variables[key] = None
                elif isinstance(obj, h5py.Group):
                    variables[key] = {
                        f: np.asarray(obj[f][()]).T
                        for f in obj
                        if isinstance(obj[f], h5py.Dataset) and obj[f].dtype.kind in "biuf"
                    }
    else:
        import scipy.io as sio

        try:
            raw = sio.loadmat(spath, squeeze_me=True, struct_as_record=False)
        except Exception as exc:  # scipy raises several types on corrupt files
            raise FileFormatError(f"not a valid MATLAB .mat file: {exc}", spath) from exc
        variables = {}
        for key, val in raw.items():
            if key.startswith("__"):
                continue
            if hasattr(val, "_fieldnames"):
                variables[key] = {f: getattr(val, f) for f in val._fieldnames}
            else:
                variables[key] = val
    return _fit_from_variables(variables, variable, spath)


def _fit_from_variables(variables: dict[str, Any], variable: str | None, path: str) -> MatlabFit:
    available = ", ".join(repr(k) for k in variables) or "(none)"
    names = (variable,) if variable is not None else _VECTOR_NAMES
    vec_name = next((n for n in names if n in variables), None)
    if variable is not None and vec_name is None:
        raise FileFormatError(f"no variable {variable!r}; available: {available}", path)
    if vec_name is not None:
        values = _numeric(variables[vec_name], vec_name, path).ravel()
        if values.size == 0 or values.size % 3:
            raise FileFormatError(
                f"{vec_name!r} has {values.size} values; expected 3 per Gaussian term "
                "(a1, b1, c1, a2, ...)",
                path,
            )
        n = values.size // 3
        coefficients = {
            f"{p}{i}": float(values[3 * (i - 1) + j])
            for i in range(1, n + 1)
            for j, p in enumerate("abc")
        }
    else:
        terms: dict[int, dict[str, float]] = {}
        for key, val in variables.items():
            tm = _TERM_RE.match(key)
            if tm:
                arr = _numeric(val, key, path).ravel()
                if arr.size != 1:
                    raise FileFormatError(f"{key!r} has {arr.size} values; expected a scalar", path)
                terms.setdefault(int(tm.group(2)), {})[tm.group(1)] = float(arr[0])
        if not terms:
            raise FileFormatError(
                "no coefficients: expected a vector 'coeffs', 'coefficients' or 'p' "
                f"(a1, b1, c1, a2, ...) or scalars a1, b1, c1, ...; available: {available} "
                "(a cfit object cannot be read outside MATLAB: save coeffvalues(f) instead)",
                path,
            )
        n = max(terms)
        missing = [f"{p}{i}" for i in range(1, n + 1) for p in "abc" if p not in terms.get(i, {})]
        if missing:
            raise FileFormatError(f"incomplete coefficients: missing {', '.join(missing)}", path)
        coefficients = {f"{p}{i}": terms[i][p] for i in range(1, n + 1) for p in "abc"}
    gof: dict[str, float] = {}
    g = variables.get("gof")
    if isinstance(g, dict):
        for f in _GOF_FIELDS:
            if f in g:
                arr = np.asarray(g[f], dtype=np.float64).ravel()
                if arr.size == 1:
                    gof[f] = float(arr[0])
    nan = {k: math.nan for k in coefficients}
    return MatlabFit(
        model=f"gauss{n}",
        n_terms=n,
        coefficients=coefficients,
        lower=dict(nan),
        upper=dict(nan),
        fixed_at_bound=frozenset(),
        level=0.95,
        gof=gof,
        normalized=None,
        source=path,
    )


def _numeric(value: Any, name: str, path: str) -> np.ndarray:
    arr = None if value is None or isinstance(value, dict) else np.asarray(value)
    if arr is None or arr.dtype.kind not in "biuf":
        raise FileFormatError(f"variable {name!r} is not a real numeric array", path)
    return arr.astype(np.float64)


def read_matlab_result(path: str | os.PathLike, *, variable: str | None = None) -> MatlabFit:
    """A MATLAB result from a file: ``.mat`` (:func:`load_matlab_coefficients`), else the
    printed text (:func:`parse_matlab_fit`).

    Raises
    ------
    FileFormatError
        ``path`` is a directory, or not a MATLAB result.
    MissingFileError
        ``path`` does not exist.
    """
    p = os.fspath(path)
    if os.path.splitext(p)[1].lower() == ".mat":
        return load_matlab_coefficients(p, variable=variable)
    if not os.path.isfile(p):
        if os.path.isdir(p):
            raise FileFormatError("is a directory, expected a text file", p)
        raise MissingFileError(p)
    return parse_matlab_fit(Path(p))
