"""Tests of peakfit.matlab_text: parsing MATLAB cfit displays and .mat coefficient files."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from peakfit.errors import FileFormatError
from peakfit.io import MissingFileError
from peakfit.matlab_text import MatlabFit, load_matlab_coefficients, parse_matlab_fit

GAUSS2 = """\
fitresult =\x20

     General model Gauss2:
     fitresult(x) =  a1*exp(-((x-b1)/c1)^2) + a2*exp(-((x-b2)/c2)^2)
     Coefficients (with 95% confidence bounds):
       a1 =       313.2  (278.5, 348)
       b1 =   2.113e+04  (1.964e+04, 2.262e+04)
       c1 =       -23.51  (fixed at bound)
       a2 =      0.5\x20\x20
       b2 =     1.2  (-Inf, Inf)
       c2 =    3  (NaN, NaN)

Goodness of fit:
  SSE: 478.7
  R-square: 0.9992
  Adjusted R-square: 0.9992
  RMSE: 0.6982
"""

GAUSS4 = """\
f =\x20

     General model Gauss4:
     f(x) =\x20
              a1*exp(-((x-b1)/c1)^2) + a2*exp(-((x-b2)/c2)^2) +\x20
              a3*exp(-((x-b3)/c3)^2) + a4*exp(-((x-b4)/c4)^2)
       where x is normalized by mean 5 and std 3.028
     Coefficients (with 99% confidence bounds):
       a1 =       1.002  (0.9, 1.1)
       b1 =      -1.251  (-1.3, -1.2)
       c1 =      0.1049  (0.1, 0.11)
       a2 =       2.003  (1.9, 2.1)
       b2 =     -0.4166  (-0.42, -0.41)
       c2 =      0.2098  (0.2, 0.22)
       a3 =   1.5e-05  (-3e-05, 6e-05)
       b3 =      0.4163  (0.41, 0.42)
       c3 =      0.1399  (fixed at bound)
       a4 =      -2.999  (-3.1, -2.9)
       b4 =       1.249  (1.2, 1.3)
       c4 =      0.3147  (0.3, 0.33)

gof =\x20

  struct with fields:

           sse: 478.7000
       rsquare: 0.9992
           dfe: 17
    adjrsquare: 0.9989
          rmse: 0.6982
"""


def test_gauss2_display_exact():
    f = parse_matlab_fit(GAUSS2)
    assert isinstance(f, MatlabFit)
    assert f.model == "gauss2" and f.n_terms == 2
    assert list(f.coefficients) == ["a1", "b1", "c1", "a2", "b2", "c2"]
    assert f.coefficients == {
        "a1": 313.2, "b1": 21130.0, "c1": -23.51, "a2": 0.5, "b2": 1.2, "c2": 3.0
    }  # fmt: skip
    assert f.lower["a1"] == 278.5 and f.upper["a1"] == 348.0
    assert f.lower["b1"] == 19640.0 and f.upper["b1"] == 22620.0
    assert f.lower["b2"] == -math.inf and f.upper["b2"] == math.inf
    for name in ("c1", "a2", "c2"):
        assert math.isnan(f.lower[name]) and math.isnan(f.upper[name])
    assert f.fixed_at_bound == frozenset({"c1"})
    assert f.level == 0.95
    assert f.gof == {"sse": 478.7, "rsquare": 0.9992, "adjrsquare": 0.9992, "rmse": 0.6982}
    assert f.normalized is None and f.source is None
    assert f.names == ("a1", "b1", "c1", "a2", "b2", "c2")
    np.testing.assert_array_equal(f.as_array(), [313.2, 21130.0, -23.51, 0.5, 1.2, 3.0])


def test_gauss4_continuation_lines_normalization_and_struct_gof():
    f = parse_matlab_fit(GAUSS4)
    assert f.model == "gauss4" and f.n_terms == 4
    assert len(f.coefficients) == 12
    assert f.coefficients["a3"] == 1.5e-05 and f.coefficients["c4"] == 0.3147
    assert (f.lower["a3"], f.upper["a3"]) == (-3e-05, 6e-05)
    assert f.fixed_at_bound == frozenset({"c3"})
    assert f.level == 0.99
    assert f.normalized == (5.0, 3.028)
    assert f.gof == {
        "sse": 478.7, "rsquare": 0.9992, "dfe": 17.0, "adjrsquare": 0.9989, "rmse": 0.6982
    }  # fmt: skip


def test_roundtrip_of_matlab_argstring_format():
    """Lines built with MATLAB's own sprintf formats parse back to the printed values."""
    rng = np.random.default_rng(3)
    values = rng.normal(scale=1e3, size=9) * 10.0 ** rng.integers(-6, 6, size=9)
    names = [f"{p}{i}" for i in range(1, 4) for p in "abc"]
    lines = ["     General model Gauss3:", "     Coefficients (with 95% confidence bounds):"]
    for name, v in zip(names, values):
        lo, hi = v - abs(v) / 7, v + abs(v) / 5
        lines.append("       %s = %11.4g  (%.4g, %.4g)" % (name, v, lo, hi))  # noqa: UP031
    f = parse_matlab_fit("\n".join(lines))
    for name, v in zip(names, values):
        assert f.coefficients[name] == float("%.4g" % v)  # noqa: UP031
        assert f.lower[name] == float("%.4g" % (v - abs(v) / 7))
    assert f.n_terms == 3


def test_coefficient_lines_without_header_infer_terms():
    f = parse_matlab_fit("b1 = 2\na1 = 1\nc1 = 3\n")
    assert f.model is None and f.n_terms == 1
    assert list(f.coefficients) == ["b1", "a1", "c1"]
    g = parse_matlab_fit("p1 = 2\np2 = 1\np3 = 3\n")
    assert g.n_terms is None and g.level == 0.95


def test_assignment_lines_that_are_not_coefficients_are_ignored():
    text = ">> [f, gof] = fit(x, y, 'gauss1')\nf = fit(x, y, 'gauss1')\nans = \n" + GAUSS2
    assert parse_matlab_fit(text).coefficients["a1"] == 313.2


def test_errors_name_the_line():
    bad = GAUSS2.replace("a2 =      0.5", "a2 =      abc")
    with pytest.raises(FileFormatError) as ei:
        parse_matlab_fit(bad)
    assert (ei.value.line, ei.value.column) == (9, 18)
    assert str(ei.value) == "line 9, column 18: value 'abc' of coefficient 'a2' is not a number"

    bad = GAUSS2.replace("(278.5, 348)", "(278.5, oops)")
    with pytest.raises(FileFormatError, match=r"^line 6, column \d+: bound 'oops' of coeff"):
        parse_matlab_fit(bad)
    bad = GAUSS2.replace("(278.5, 348)", "[278.5 348]")
    with pytest.raises(FileFormatError, match=r"^line 6, column 26: cannot read the bounds"):
        parse_matlab_fit(bad)
    bad = GAUSS2.replace("RMSE: 0.6982", "RMSE: --")
    with pytest.raises(FileFormatError, match=r"^line 17, column 9: goodness-of-fit value '--'"):
        parse_matlab_fit(bad)
    bad = GAUSS2.replace("c2 =", "a1 =")
    with pytest.raises(
        FileFormatError, match=r"^line 11, .*'a1' appears twice \(first on line 6\)"
    ):
        parse_matlab_fit(bad)
    with pytest.raises(FileFormatError, match=r"^line 2: no coefficient lines .* after the"):
        parse_matlab_fit("General model Gauss1:\nCoefficients (with 95% confidence bounds):\n\n")
    with pytest.raises(FileFormatError) as ei:
        parse_matlab_fit("Goodness of fit:\n  SSE: 1\n")
    assert ei.value.line is None
    assert str(ei.value) == "no coefficient lines ('name = value') found"


def test_reads_files_and_reports_path(tmp_path):
    p = tmp_path / "matlab_out.txt"
    p.write_text(GAUSS2, encoding="utf-8")
    f = parse_matlab_fit(p)
    assert f.source == str(p) and f.coefficients["a1"] == 313.2
    assert parse_matlab_fit(str(p)).coefficients == f.coefficients
    p.write_text(GAUSS2.replace("1.2  (-Inf", "1..2  (-Inf"), encoding="utf-8")
    with pytest.raises(FileFormatError) as ei:
        parse_matlab_fit(p)
    assert ei.value.path == str(p) and ei.value.line == 10
    assert str(ei.value).startswith(f"{p}, line 10, column 17: value '1..2'")
    with pytest.raises(MissingFileError, match=r"missing\.txt: file not found"):
        parse_matlab_fit(tmp_path / "missing.txt")


# ------------------------------------------------------------------------------------------
# .mat files
# ------------------------------------------------------------------------------------------


def test_mat_v5_vector_scalars_and_gof(tmp_path):
    p = tmp_path / "c.mat"
    gof = {"sse": 478.7, "rsquare": 0.9992, "dfe": 17.0, "adjrsquare": 0.999, "rmse": 0.6982}
    scipy.io.savemat(p, {"coeffs": np.array([[313.2, 21130.0, 23.5, 0.5, 1.2, 3.0]]), "gof": gof})
    f = load_matlab_coefficients(p)
    assert f.model == "gauss2" and f.n_terms == 2
    assert f.coefficients == {
        "a1": 313.2, "b1": 21130.0, "c1": 23.5, "a2": 0.5, "b2": 1.2, "c2": 3.0
    }  # fmt: skip
    assert all(math.isnan(v) for v in (*f.lower.values(), *f.upper.values()))
    assert f.gof == gof and f.fixed_at_bound == frozenset() and f.source == str(p)

    q = tmp_path / "p.mat"
    scipy.io.savemat(q, {"p": np.array([[1.0], [2.0], [3.0]])})  # column vector
    assert load_matlab_coefficients(q).coefficients == {"a1": 1.0, "b1": 2.0, "c1": 3.0}

    r = tmp_path / "s.mat"
    scalars = {"c2": 6.0, "a1": 1.0, "b2": 5.0, "b1": 2.0, "c1": 3.0, "a2": 4.0, "other": 9.0}
    scipy.io.savemat(r, scalars)
    f = load_matlab_coefficients(r)
    assert list(f.coefficients.items()) == [
        ("a1", 1.0), ("b1", 2.0), ("c1", 3.0), ("a2", 4.0), ("b2", 5.0), ("c2", 6.0)
    ]  # fmt: skip

    s = tmp_path / "named.mat"
    scipy.io.savemat(s, {"fitted": np.arange(1.0, 4.0)})
    assert load_matlab_coefficients(s, variable="fitted").as_array().tolist() == [1.0, 2.0, 3.0]


def test_mat_errors(tmp_path):
    p = tmp_path / "bad.mat"
    scipy.io.savemat(p, {"coeffs": np.arange(5.0)})
    with pytest.raises(FileFormatError, match=r"bad\.mat: 'coeffs' has 5 values; expected 3 per"):
        load_matlab_coefficients(p)
    q = tmp_path / "half.mat"
    scipy.io.savemat(q, {"a1": 1.0, "b1": 2.0, "c1": 3.0, "a2": 4.0})
    with pytest.raises(FileFormatError, match="incomplete coefficients: missing b2, c2"):
        load_matlab_coefficients(q)
    r = tmp_path / "none.mat"
    scipy.io.savemat(r, {"x": np.arange(3.0), "y": np.arange(3.0)})
    with pytest.raises(FileFormatError, match=r"no coefficients: .*available: 'x', 'y'"):
        load_matlab_coefficients(r)
    with pytest.raises(FileFormatError, match="no variable 'zz'; available: 'x', 'y'"):
        load_matlab_coefficients(r, variable="zz")
    with pytest.raises(MissingFileError):
        load_matlab_coefficients(tmp_path / "absent.mat")


def test_mat_v73_vector(tmp_path):
    h5py = pytest.importorskip("h5py")
    p = tmp_path / "v73.mat"
    with h5py.File(p, "w", userblock_size=512) as f:
        ds = f.create_dataset("coefficients", data=np.array([[2.0], [0.5], [1.5]]))  # MATLAB 1x3
        ds.attrs["MATLAB_class"] = np.bytes_("double")
        g = f.create_group("gof")
        g["sse"] = np.array([[0.25]])
    with open(p, "r+b") as fh:
        fh.write(b"MATLAB 7.3 MAT-file".ljust(116, b" ") + b"\0" * 8 + b"\x00\x02IM")
    f = load_matlab_coefficients(Path(p))
    assert f.coefficients == {"a1": 2.0, "b1": 0.5, "c1": 1.5}
    assert f.gof == {"sse": 0.25} and f.n_terms == 1
