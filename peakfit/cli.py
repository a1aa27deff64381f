"""The ``peakfit`` command: fit, batch-fit, plot and compare with MATLAB from the shell.

Subcommands
-----------
``peakfit demo``
    Fit the bundled 4-peak example and print MATLAB's display and the sorted means (needs only
    NumPy and SciPy).
``peakfit fit FILE -n 4``
    Fit every spectrum of a file (or ``--index I``; ``FILE`` may be ``-``, standard input);
    print MATLAB's display, the sorted means and the peak table, or ``--format json|csv``.
    ``-n auto`` chooses the number of peaks (``--criterion``, ``--n-max``).
``peakfit batch INPUT... -n 4 -o OUT``
    Fit every spectrum of many files, chunk by chunk, into a CSV/Parquet/HDF5 table; resumable.
``peakfit plot FILE -n 4 -o fit.png``
    Data, total fit, each component and the residuals (needs matplotlib).
``peakfit compare-matlab FILE --matlab RESULT``
    Fit like MATLAB and like peakfit, match the peaks by centre and compare with MATLAB's
    printed (or ``.mat``) result.
``peakfit gd-demo --out DIR``
    The gradient-descent figures and report of :mod:`peakfit.gd`.

Exit codes: 0 success; 1 a fit did not converge or the comparison with MATLAB disagrees;
2 a usage or input error (one line ``peakfit: error: ...`` on stderr, no traceback); 130
interrupted (``batch``: rerunning the same command resumes).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from typing import Any, TextIO

import numpy as np

from . import __version__
from .errors import InputError, PeakfitError
from .matlab.compare import compare_with_matlab

__all__ = [
    "EXIT_FIT_PROBLEM",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "build_parser",
    "compare_with_matlab",
    "main",
]

EXIT_OK = 0
EXIT_FIT_PROBLEM = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

_BASELINES = ("none", "constant", "linear", "quadratic", "exponential")
_INPUT_EXTS = (".csv", ".tsv", ".txt", ".dat", ".npy", ".npz", ".h5", ".hdf5", ".mat")


class _UsageError(Exception):
    """A command-line problem found after parsing (reported as ``peakfit: error: ...``)."""


# --------------------------------------------------------------------------------------------
# argument parsing
# --------------------------------------------------------------------------------------------


def _column(text: str) -> int | str:
    """A column given on the command line: a 0-based index or a name."""
    t = text.strip()
    try:
        return int(t)
    except ValueError:
        return t


def _columns(text: str) -> int | str | list[int | str]:
    parts = [p for p in text.split(",") if p.strip()]
    if len(parts) == 1:
        return _column(parts[0])
    return [_column(p) for p in parts]


def _int_at_least(lowest: int, wanted: str) -> Any:
    """An argparse ``type`` accepting integers ``>= lowest``; ``wanted`` names them in errors."""

    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            v = lowest - 1
        if v < lowest:
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {text!r}")
        return v

    return parse


_positive_int = _int_at_least(1, "a positive integer")
_nonneg_int = _int_at_least(0, "an integer >= 0")


def _nonneg_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        v = -1.0
    if not v >= 0 or not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"expected a number of seconds >= 0, got {text!r}")
    return v


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not v > 0 or not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return v


_DPI_RANGE = (10, 1200)


def _dpi(text: str) -> int:
    """``--dpi``: an integer in ``_DPI_RANGE`` (a 10 000 dpi figure would need gigabytes)."""
    lo, hi = _DPI_RANGE
    try:
        v = int(text)
    except ValueError:
        v = lo - 1
    if not lo <= v <= hi:
        raise argparse.ArgumentTypeError(
            f"expected a resolution from {lo} to {hi} dots per inch, got {text!r}"
        )
    return v


def _start(text: str) -> str | list[float]:
    t = text.strip()
    if t.lower() in ("auto", "matlab"):
        return t.lower()
    try:
        return [float(v) for v in t.replace(";", ",").split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--start must be 'auto', 'matlab' or comma-separated numbers, got {text!r}"
        ) from None


def _scalar_or_text(text: str) -> Any:
    """``--smooth``/``--downsample`` values: none/off, an int, a float, or a method name."""
    t = text.strip()
    if t.lower() in ("none", "off", "false", "0"):
        return None
    try:
        return int(t)
    except ValueError:
        pass
    try:
        return float(t)
    except ValueError:
        return t


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # same wording as argparse, one usage line
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _add_reading(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("reading the input (see peakfit.io.load_spectra)")
    g.add_argument("--x", type=_column, metavar="COL",
                   help="x column (0-based index or header name; text files) or x variable "
                        "name (npz/HDF5/.mat)")
    g.add_argument("--y", type=_columns, metavar="COL[,COL...]",
                   help="y column(s) (text) or spectra variable/dataset name (containers)")
    g.add_argument("--layout", choices=("auto", "columns", "rows"), default="auto",
                   help="text: x column + y columns ('columns', default) or one spectrum per "
                        "row ('rows'); containers: orientation of the 2-D array")
    g.add_argument("--dataset", metavar="NAME", help="HDF5 dataset / .mat variable of spectra")
    g.add_argument("--delimiter", metavar="CHAR", help="text field separator (default: auto)")
    g.add_argument("--skip-header", type=_nonneg_int, metavar="N",
                   help="text: ignore the first N lines (default: a preamble is found by "
                        "content)")
    g.add_argument("--decimal-comma", action="store_true",
                   help="text: numbers are written 1,5 (cells separated by ; tab or spaces)")


def _n_or_auto(text: str) -> int | str:
    if text.strip().lower() == "auto":
        return "auto"
    return _positive_int(text)


def _add_model(p: argparse.ArgumentParser, *, n_default: int | None = 4) -> None:
    p.add_argument("-n", "--peaks", dest="n", type=_n_or_auto, default=n_default,
                   metavar="N|auto", help=f"number of Gaussian peaks, or 'auto' to choose it "
                                          f"(default {n_default})")
    p.add_argument("--criterion", choices=("bic", "aicc", "ftest"), default="bic",
                   help="with -n auto: how to choose n (default bic)")
    p.add_argument("--n-max", type=_positive_int, default=8, metavar="N",
                   help="with -n auto: the largest n tried (default 8)")
    p.add_argument("--baseline", choices=_BASELINES, default="none",
                   help="baseline term added to the peaks (default none)")


def _add_format(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--format", choices=("text", "json", "csv"), default=None,
                   help=f"output: text (default), json or csv ({what})")
    p.add_argument("--json", action="store_true", help="same as --format json")


def _add_solver(p: argparse.ArgumentParser, *, extra: bool = True) -> None:
    g = p.add_argument_group("start point and solver")
    g.add_argument("--start", type=_start, default="auto", metavar="auto|matlab|V1,V2,...",
                   help="start point: robust estimator (auto, default), MATLAB's gaussnstart "
                        "(matlab), or explicit coefficients a1,b1,c1,...")
    if extra:
        g.add_argument("--smooth", type=_scalar_or_text, metavar="S",
                       help="smoothing of the data used only for the 'auto' start estimate")
        g.add_argument("--downsample", type=_scalar_or_text, metavar="D",
                       help="downsampling used only for the 'auto' start estimate")
    g.add_argument("--tol-fun", type=_positive_float, default=1e-6, metavar="T",
                   help="MATLAB TolFun (default 1e-6)")
    g.add_argument("--tol-x", type=_positive_float, default=1e-6, metavar="T",
                   help="MATLAB TolX (default 1e-6)")
    g.add_argument("--max-iter", type=_positive_int, default=400, metavar="K",
                   help="MATLAB MaxIter (default 400)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``peakfit`` command (all subcommands).

    Examples
    --------
    >>> args = build_parser().parse_args(["fit", "data.csv", "-n", "3", "--json"])
    >>> args.command, args.n, args.json
    ('fit', 3, True)
    """
    parser = _Parser(
        prog="peakfit",
        description="Fit sums of Gaussian peaks (MATLAB gaussN semantics) to spectra.",
        epilog="Exit codes: 0 ok, 1 fit problems reported, 2 usage/input errors, "
               "130 interrupted. 'peakfit COMMAND -h' shows each command's options.",
    )
    parser.add_argument("--version", action="version", version=f"peakfit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("demo", help="fit the bundled 4-peak example (core dependencies only)",
                       description="Fit the bundled example spectrum with 4 Gaussians and print "
                                   "MATLAB's display and the sorted peak means.")
    _add_format(p, "csv: one row per peak")

    p = sub.add_parser("fit", help="fit the spectra of one file and print the results",
                       description="Fit each spectrum of FILE (or the one chosen with --index) "
                                   "and print MATLAB's display, the sorted means and the table "
                                   "of peaks (centre, height, sigma, FWHM, area with standard "
                                   "errors). FILE '-' reads standard input.")
    p.add_argument("file", metavar="FILE")
    _add_model(p)
    _add_reading(p)
    p.add_argument("--index", type=_nonneg_int, metavar="I",
                   help="fit only spectrum I (0-based) of the file")
    _add_solver(p)
    p.add_argument("--nan-policy", choices=("raise", "omit"), default="raise",
                   help="non-finite points: error (default) or leave them out")
    p.add_argument("--level", type=float, default=0.95,
                   help="confidence level of the displayed bounds (default 0.95)")
    _add_format(p, "csv: one row per peak of every spectrum")

    p = sub.add_parser("batch", help="fit every spectrum of many files into a table (resumable)",
                       description="Fit every spectrum of every INPUT (files, or folders whose "
                                   "supported files are all taken) and write one row per "
                                   "spectrum to OUT (.csv, .parquet or .h5). Results are "
                                   "committed chunk by chunk; rerunning the same command after "
                                   "an interruption skips what is done.")
    p.add_argument("inputs", nargs="+", metavar="INPUT")
    p.add_argument("-o", "--out", required=True, metavar="OUT",
                   help="result table: .csv, .parquet/.pq (a folder of parts) or .h5/.hdf5")
    _add_model(p)
    _add_reading(p)
    _add_solver(p, extra=False)
    p.add_argument("--device", choices=("auto", "cpu", "gpu"), default="auto",
                   help="where to fit (default auto: GPU if CuPy and a device are available)")
    p.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    p.add_argument("--chunk-size", type=_positive_int, default=1000, metavar="K",
                   help="spectra read, fitted and committed at a time (default 1000)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument("--restart", action="store_true",
                   help="start a new table: move an existing OUT aside to OUT's name with "
                        ".old-N before the extension (nothing is deleted)")
    p.add_argument("--wait", type=_nonneg_float, default=0.0, metavar="SECONDS",
                   help="wait up to SECONDS for another peakfit writing OUT to finish "
                        "(default 0: stop at once with an error)")
    _add_format(p, "of the summary line")

    p = sub.add_parser("plot", help="plot data, fit, components and residuals to an image",
                       description="Fit one spectrum and save a figure: data, total fit, each "
                                   "component (and baseline), residuals (needs matplotlib).")
    p.add_argument("file", metavar="FILE")
    _add_model(p)
    _add_reading(p)
    p.add_argument("--index", type=_nonneg_int, default=0, metavar="I",
                   help="spectrum to plot (0-based, default 0)")
    _add_solver(p)
    p.add_argument("-o", "--out", required=True, metavar="IMAGE",
                   help="output image (.png, .pdf, .svg, ...)")
    p.add_argument("--no-components", action="store_true", help="do not draw each peak")
    p.add_argument("--no-residuals", action="store_true", help="no residual panel")
    p.add_argument("--title", help="figure title")
    p.add_argument("--dpi", type=_dpi, default=120,
                   help=f"image resolution, {_DPI_RANGE[0]} to {_DPI_RANGE[1]} (default 120)")

    p = sub.add_parser("compare-matlab", help="compare with a MATLAB gaussN result",
                       description="Fit FILE the MATLAB way (gaussnstart, MATLAB term order) and "
                                   "the peakfit way, match the peaks to MATLAB's by centre and "
                                   "print a side-by-side table. RESULT is MATLAB's printed cfit "
                                   "display (optionally with cftool's 'Goodness of fit:' block) "
                                   "in a text file, or a .mat file with the coefficients. Exit "
                                   "code 0 when all coefficients agree.")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--matlab", required=True, metavar="RESULT",
                   help="MATLAB's printed output (text) or a .mat file with the coefficients")
    p.add_argument("-n", "--peaks", dest="n", type=_positive_int, default=None, metavar="N",
                   help="number of peaks (default: from RESULT)")
    _add_reading(p)
    p.add_argument("--index", type=_nonneg_int, metavar="I",
                   help="spectrum of FILE to use when it holds several (0-based)")
    p.add_argument("--mat-variable", metavar="NAME", help=".mat: name of the coefficient vector")
    p.add_argument("--rtol", type=_positive_float, default=1e-3,
                   help="relative tolerance of agreement (default 1e-3: MATLAB prints 4 "
                        "significant digits and stops at TolFun 1e-6)")
    p.add_argument("--atol", type=float, default=0.0,
                   help="absolute tolerance added to rtol*|MATLAB value| (default 0)")
    p.add_argument("--use-bounds", action="store_true",
                   help="a coefficient also agrees when it lies inside MATLAB's confidence "
                        "bounds")
    p.add_argument("--against", choices=("auto", "matlab"), default="auto",
                   help="which peakfit fit decides the exit code: the peakfit way (auto, "
                        "default) or the MATLAB way (matlab start and order)")
    p.add_argument("--tol-fun", type=_positive_float, default=1e-6, metavar="T",
                   help="TolFun of both peakfit fits (default MATLAB's 1e-6)")
    p.add_argument("--tol-x", type=_positive_float, default=1e-6, metavar="T",
                   help="TolX of both peakfit fits (default MATLAB's 1e-6)")
    _add_format(p, "csv: one row per coefficient")

    p = sub.add_parser("gd-demo", help="gradient-descent figures and report (peakfit.gd)",
                       description="Run the gradient-descent demonstrations of peakfit.gd and "
                                   "write the figures and report.md to DIR.")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--quick", action="store_true", help="small problems, a few seconds")
    return parser


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def _read_opts(args: argparse.Namespace) -> dict[str, Any]:
    return {"x": args.x, "y": args.y, "layout": args.layout, "dataset": args.dataset,
            "delimiter": args.delimiter, "skip_header": args.skip_header,
            "decimal": "," if getattr(args, "decimal_comma", False) else "."}


def _load(path: str, args: argparse.Namespace) -> Any:
    from .io import load_spectra

    return load_spectra(path, **_read_opts(args))


def _fit_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    kw: dict[str, Any] = {"baseline": args.baseline, "start": args.start,
                          "tol_fun": args.tol_fun, "tol_x": args.tol_x,
                          "max_iter": args.max_iter}
    if getattr(args, "smooth", None) is not None:
        kw["smooth"] = args.smooth
    if getattr(args, "downsample", None) is not None:
        kw["downsample"] = args.downsample
    if getattr(args, "nan_policy", None) is not None:
        kw["nan_policy"] = args.nan_policy
    if isinstance(kw["start"], list):
        kw["start"] = np.asarray(kw["start"], dtype=float)
    if getattr(args, "n", None) == "auto":
        kw.update(criterion=args.criterion, n_max=args.n_max)
    return kw


def _format(args: argparse.Namespace) -> str:
    if getattr(args, "json", False):
        if args.format not in (None, "json"):
            raise _UsageError(f"--json contradicts --format {args.format}")
        return "json"
    return args.format or "text"


_PEAK_CSV_HEAD = ("source", "index", "name", "peak")


def _peak_csv(rows: list[tuple[str, int, str, Any]], out: TextIO) -> None:
    """CSV of the peak tables of several fits: source, index, name, then the table's columns
    and the fit's n, state, sse and rsquare."""
    import csv

    w = csv.writer(out, lineterminator="\n")
    head_done = False
    for source, i, name, r in rows:
        recs = r.peaks.to_records()
        if not head_done:
            cols = [c for c in r.peaks.columns if c != "peak"]
            w.writerow([*_PEAK_CSV_HEAD, *cols, "n", "state", "sse", "rsquare"])
            head_done = True
        for rec in recs:
            vals = [int(v) if isinstance(v, bool) else repr(v) if isinstance(v, float) else v
                    for k, v in rec.items() if k != "peak"]
            w.writerow([source, i, name, rec["peak"], *vals, r.n, r.state.name.lower(),
                        repr(float(r.gof.sse)), repr(float(r.gof.rsquare))])


def _select(spectra: Any, index: int | None) -> list[int]:
    if index is None:
        return list(range(spectra.k))
    if index >= spectra.k:
        raise _UsageError(
            f"--index {index}: {spectra.source} holds {spectra.k} spectr"
            f"{'um' if spectra.k == 1 else 'a'} (indices 0..{spectra.k - 1})"
        )
    return [index]


def _fmt_means(means: np.ndarray) -> str:
    return "  ".join(f"{v:.10g}" for v in means)


def _json_default(v: Any) -> Any:
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return None if not math.isfinite(float(v)) else float(v)
    if isinstance(v, np.ndarray):
        return v.tolist()
    return str(v)


def _clean(v: Any) -> Any:
    """JSON-safe: NaN/Inf -> None, recursively."""
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    if isinstance(v, (float, np.floating)):
        return float(v) if math.isfinite(float(v)) else None
    if isinstance(v, np.integer):
        return int(v)
    return v


def _print_json(obj: Any, out: TextIO) -> None:
    out.write(json.dumps(_clean(obj), indent=2, default=_json_default, allow_nan=False) + "\n")


@contextlib.contextmanager
def _cli_warnings() -> Iterator[None]:
    """Show warnings as one ``peakfit: warning: ...`` line each (no file/line noise)."""

    def show(message: Any, category: Any, filename: str, lineno: int, file: Any = None,
             line: Any = None) -> None:
        print(f"peakfit: warning: {message}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.simplefilter("default")
        old = warnings.showwarning
        warnings.showwarning = show
        try:
            yield
        finally:
            warnings.showwarning = old


def _report_fit(result: Any, header: str, out: TextIO, level: float = 0.95) -> None:
    out.write(f"{header}\n")
    sel = result.__dict__.get("selection")
    if sel is not None:
        out.write(sel.to_text() + "\n\n")
    out.write(result.display("f", level=level) + "\n")
    out.write(f"\nMeans (sorted): {_fmt_means(result.means)}\n")
    out.write(f"\nPeaks:\n{result.peaks.to_text()}\n")


def _fit_json(result: Any) -> dict[str, Any]:
    d = {**result.to_dict(), "peaks": result.peaks.to_records()}
    sel = result.__dict__.get("selection")
    if sel is not None:
        d["selection"] = {"criterion": sel.criterion, "n": sel.n,
                          "candidates": sel.to_records()}
    return d


# --------------------------------------------------------------------------------------------
# demo / fit / plot
# --------------------------------------------------------------------------------------------


def _bundled_example() -> Any:
    from importlib import resources

    from .io import load_spectra

    ref = resources.files("peakfit") / "data" / "example_4peaks.csv"
    with resources.as_file(ref) as path:
        return load_spectra(path)


def _cmd_demo(args: argparse.Namespace, out: TextIO) -> int:
    from .fit import fit_gaussians

    s = _bundled_example()
    r = fit_gaussians(s.x, s.Y[0], 4)
    fmt = _format(args)
    if fmt == "json":
        _print_json({"source": "peakfit/data/example_4peaks.csv", **_fit_json(r)}, out)
    elif fmt == "csv":
        _peak_csv([("peakfit/data/example_4peaks.csv", 0, s.names[0], r)], out)
    else:
        _report_fit(r, f"peakfit demo: 4 Gaussians fitted to the bundled example "
                       f"({s.m} points, true means 470, 492, 560, 620)", out)
    return EXIT_OK if r.converged else EXIT_FIT_PROBLEM


def _cmd_fit(args: argparse.Namespace, out: TextIO) -> int:
    from .fit import fit_gaussians

    s = _load(args.file, args)
    kw = _fit_kwargs(args)
    items = []
    fits = []
    status = EXIT_OK
    chosen = _select(s, args.index)
    fmt = _format(args)
    for i in chosen:
        try:
            r = fit_gaussians(s.x_of(i), s.Y[i], args.n, **kw)
        except InputError as exc:
            raise InputError(f"{s.source}, spectrum {i} ({s.names[i]}): {exc}") from exc
        if not r.converged:
            status = EXIT_FIT_PROBLEM
        if fmt == "json":
            items.append({"index": i, "name": s.names[i], **_fit_json(r)})
        elif fmt == "csv":
            fits.append((s.source, i, s.names[i], r))
        else:
            if i != chosen[0]:
                out.write("\n")
            _report_fit(r, f"{s.source}: spectrum {i} ({s.names[i]}), {s.m} points",
                        out, args.level)
            if not r.converged:
                out.write(f"Not converged: {r.output.message}\n")
    if fmt == "json":
        _print_json({"source": s.source, "spectra": items}, out)
    elif fmt == "csv":
        _peak_csv(fits, out)
    return status


def _cmd_plot(args: argparse.Namespace, out: TextIO) -> int:
    try:
        import matplotlib
    except ImportError:
        raise _UsageError(
            'plotting needs matplotlib; install it with: pip install "peakfit[plot]"'
        ) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .fit import fit_gaussians
    from .plot import plot_fit

    _check_image_path(args.out, args.file)
    s = _load(args.file, args)
    (i,) = _select(s, args.index)
    r = fit_gaussians(s.x_of(i), s.Y[i], args.n, **_fit_kwargs(args))
    fig = plot_fit(r, components=not args.no_components, residuals=not args.no_residuals,
                   title=args.title)
    try:
        fig.savefig(args.out, dpi=args.dpi, bbox_inches="tight")
    except (OSError, ValueError) as exc:
        msg = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise InputError(f"cannot write {args.out}: {msg}") from exc
    finally:
        plt.close(fig)
    out.write(f"wrote {args.out} (spectrum {i} of {s.source}; means "
              f"{_fmt_means(r.means)}; SSE {r.gof.sse:.6g})\n")
    return EXIT_OK if r.converged else EXIT_FIT_PROBLEM


def _check_image_path(out: str, data: str) -> None:
    """``plot -o``: a file in an existing, writable folder, and not the data file."""
    if os.path.isdir(out):
        raise _UsageError(f"cannot write {out}: it is a directory; give -o an image file name "
                          f"such as {os.path.join(out, 'fit.png')}")
    if os.path.exists(out) and os.path.exists(data) and os.path.samefile(out, data):
        raise _UsageError(f"cannot write {out}: it is the data file; give -o an image file "
                          "name such as fit.png")
    folder = os.path.dirname(os.path.abspath(out))
    ancestor = folder
    while not os.path.exists(ancestor):
        ancestor = os.path.dirname(ancestor)
    if not os.path.isdir(ancestor):
        raise _UsageError(f"cannot write {out}: {ancestor} is a file, not a folder")
    if ancestor != folder:
        raise _UsageError(f"cannot write {out}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise _UsageError(f"cannot write {out}: the folder {folder} is read-only")


# --------------------------------------------------------------------------------------------
# batch
# --------------------------------------------------------------------------------------------


def _expand_inputs(inputs: Sequence[str], out: str) -> list[str]:
    """Files as given; a folder stands for its supported files (sorted, not recursive).

    The output table is never an input, even when it lies in an input folder.
    """
    paths: list[str] = []
    out_abs = os.path.abspath(out)
    for item in inputs:
        if os.path.isdir(item):
            found = sorted(
                os.path.join(item, f) for f in os.listdir(item)
                if os.path.splitext(f)[1].lower() in _INPUT_EXTS
                and os.path.isfile(os.path.join(item, f))
                and os.path.abspath(os.path.join(item, f)) != out_abs
            )
            if not found:
                raise InputError(f"{item}: folder has no spectra files "
                                 f"({' '.join(_INPUT_EXTS)})")
            paths.extend(found)
        else:
            paths.append(item)
    seen: set[str] = set()
    unique = []
    for p in paths:
        key = os.path.normpath(p)
        if key not in seen:
            seen.add(key)
            unique.append(key)
    return unique


class _Progress:
    """tqdm bar on a terminal; otherwise a log line to stderr every ``interval`` seconds."""

    def __init__(self, total: int, initial: int, quiet: bool, interval: float = 5.0) -> None:
        self.total, self.n, self.quiet, self.interval = total, initial, quiet, interval
        self.t0 = time.monotonic()
        self.fitted = 0
        self.last = self.t0
        self.bar = None
        if not quiet and sys.stderr.isatty():
            try:
                from tqdm import tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                self.bar = tqdm(total=total, initial=initial, unit="spectra", file=sys.stderr,
                                dynamic_ncols=True, smoothing=0.1)

    def update(self, done: int, fitted: int) -> None:
        self.n += done
        self.fitted += fitted
        if self.bar is not None:
            self.bar.update(done)
            return
        now = time.monotonic()
        if not self.quiet and now - self.last >= self.interval:
            self.last = now
            print(f"peakfit: {self.line()}", file=sys.stderr, flush=True)

    def line(self) -> str:
        dt = max(time.monotonic() - self.t0, 1e-9)
        rate = self.fitted / dt
        left = self.total - self.n
        eta = f", ETA {left / rate:.0f} s" if rate > 0 and left > 0 else ""
        return f"{self.n}/{self.total} spectra ({rate:.1f} spectra/s{eta})"

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _fit_chunk(x: np.ndarray, Y: np.ndarray, args: argparse.Namespace) -> Any:
    from .batch import fit_gaussians_batch

    start: Any = args.start
    if isinstance(start, list):
        start = np.asarray(start, dtype=float)
    kw = dict(device=args.device, dtype=args.dtype, start=start, baseline=args.baseline,
              tol_fun=args.tol_fun, tol_x=args.tol_x, max_iter=args.max_iter)
    if args.n == "auto":
        from .selection import fit_auto_batch

        return fit_auto_batch(x, Y, "auto", criterion=args.criterion, n_max=args.n_max, **kw)
    return fit_gaussians_batch(x, Y, args.n, **kw)


def _chunk_table(source: str, start: int, spectra: Any, rows: np.ndarray,
                 args: argparse.Namespace) -> dict[str, Any]:
    """Fit rows ``rows`` (chunk-local) of a chunk; the table with source/index/name columns."""
    from .result import FitState

    Y = spectra.Y[rows]
    if spectra.x.ndim == 1:
        x = spectra.x
    elif np.all(spectra.x[rows] == spectra.x[rows][:1]):
        x = spectra.x[rows[0]]
    else:
        x = spectra.x[rows]
    table = _fit_chunk(x, Y, args).to_table()
    out: dict[str, Any] = {
        "source": [source] * rows.size,
        "index": (start + rows).astype(np.int64),
        "name": [spectra.names[j] for j in rows],
    }
    for key, col in table.items():
        if key == "index":
            continue
        if key == "state" and np.asarray(col).dtype.kind in "iu":
            col = np.array([FitState(int(v)).name.lower() for v in np.asarray(col)], dtype=str)
        out[key] = col
    return out


def _batch_settings(args: argparse.Namespace) -> dict[str, Any]:
    """What a batch table records and a resume must repeat: the model, solver and reading."""
    settings = {"n": args.n, "baseline": args.baseline, "start": args.start,
                "tol_fun": args.tol_fun, "tol_x": args.tol_x, "max_iter": args.max_iter,
                "dtype": args.dtype, **_read_opts(args)}
    if args.n == "auto":
        settings.update(criterion=args.criterion, n_max=args.n_max)
    return settings


def _cmd_batch(args: argparse.Namespace, out: TextIO) -> int:
    from .io import count_spectra, iter_spectra_chunks
    from .tables import ResultWriter, _check_inputs_are_not_output, _table_format, read_table

    read_opts = _read_opts(args)
    paths = _expand_inputs(args.inputs, args.out)
    _check_inputs_are_not_output(paths, args.out, _table_format(args.out))
    counts = {p: count_spectra(p, **read_opts) for p in paths}  # input errors before any work
    total = sum(counts.values())
    writer = ResultWriter(args.out, settings=_batch_settings(args), inputs=paths,
                          restart=args.restart, timeout=args.wait)
    if writer.moved_to is not None:
        print(f"peakfit: --restart: moved the previous {args.out} aside to {writer.moved_to}",
              file=sys.stderr)
    committed = fitted = 0
    failed_now = 0
    progress = None
    try:
        done = {k for k in writer.done_keys() if k[0] in counts}
        if done and not args.quiet:
            print(f"peakfit: resuming {args.out}: {len(done)} of {total} spectra already done",
                  file=sys.stderr)
        progress = _Progress(total, len(done), args.quiet)
        for path in paths:
            if sum(1 for k in done if k[0] == path) >= counts[path]:
                continue  # the whole file is done: do not even read it
            for start, chunk in iter_spectra_chunks(path, args.chunk_size, **read_opts):
                idx = start + np.arange(chunk.k)
                todo = np.array([(path, int(i)) not in done for i in idx], dtype=bool)
                rows = np.flatnonzero(todo)
                if rows.size:
                    table = _chunk_table(path, start, chunk, rows, args)
                    failed_now += int(np.sum(np.asarray(table["state"]) != "converged"))
                    committed += writer.write_chunk(table)
                    fitted += rows.size
                progress.update(int(rows.size), int(rows.size))
        progress.close()
    except KeyboardInterrupt:
        if progress is not None:
            progress.close()
        writer.close()
        print(f"peakfit: interrupted; {committed} spectra committed to {args.out} in this run. "
              "Rerun the same command to resume.", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        writer.close()
    failed = failed_now
    resumed = total - fitted
    if resumed:
        table = read_table(args.out)
        mine = np.isin(table["source"], list(counts))
        failed = int(np.sum(mine & (np.asarray(table["state"]) != "converged")))
    summary = (f"peakfit: {total} spectra from {len(paths)} file(s) in {args.out}: "
               f"{fitted} fitted now, {resumed} already done; {failed} not converged")
    if not args.quiet:
        print(summary, file=sys.stderr)
    fmt = _format(args)
    if fmt == "json":
        _print_json({"out": args.out, "spectra": total, "converged": total - failed,
                     "not_converged": failed, "fitted_now": fitted, "already_done": resumed},
                    out)
    elif fmt == "csv":
        out.write("out,spectra,converged,not_converged,fitted_now,already_done\n")
        out.write(f"{args.out},{total},{total - failed},{failed},{fitted},{resumed}\n")
    else:
        out.write(f"{args.out}: {total} spectra, {total - failed} converged, {failed} not "
                  "converged\n")
    return EXIT_FIT_PROBLEM if failed else EXIT_OK


# --------------------------------------------------------------------------------------------
# compare-matlab
# --------------------------------------------------------------------------------------------


def _g(v: Any, spec: str = ".6g") -> str:
    width = spec.split(".")[0]
    pad = int(width) if width.isdigit() else 0
    if v is None:
        return "-".rjust(pad)
    v = float(v)
    if math.isnan(v):
        return "NaN".rjust(pad)
    if math.isinf(v):
        return ("Inf" if v > 0 else "-Inf").rjust(pad)
    return format(v, spec)


def _print_comparison(cmp: dict[str, Any], data: str, result: str, out: TextIO) -> None:
    n = cmp["n"]
    pct = f"{cmp['level'] * 100:g}%"
    out.write(f"Comparison of {data} with MATLAB's gauss{n} result {result}\n")
    match = ", ".join(f"{j + 1}<-{i}" for j, i in enumerate(cmp["matching"]["peakfit"]))
    out.write(f"Peaks matched by centre (MATLAB term <- peakfit term): {match}\n\n")
    head = (f"{'coefficient':<11} {'peakfit':>12} {'MATLAB start':>12} {'MATLAB':>12} "
            f"{'difference':>11} {'rel. diff':>9}  {'in ' + pct + ' bounds':<16} agree")
    out.write(head + "\n" + "-" * len(head) + "\n")
    for r in cmp["rows"]:
        inb = ("fixed at bound" if r["fixed_at_bound"] else
               "-" if r["in_bounds"] is None else "yes" if r["in_bounds"] else "NO")
        out.write(f"{r['name']:<11} {_g(r['peakfit'], '12.6g')} "
                  f"{_g(r['peakfit_matlab_start'], '12.6g')} {_g(r['matlab'], '12.6g')} "
                  f"{_g(r['difference'], '11.3g')} {_g(r['relative'], '9.2g')}  {inb:<16} "
                  f"{'yes' if r['agree'] else 'NO'}\n")
    g = cmp["gof"]
    out.write(f"\n{'':<26} {'SSE':>12} {'R-square':>12} {'RMSE':>12}\n")
    lines = [("peakfit", g["peakfit"]), ("peakfit (MATLAB start)", g["peakfit_matlab_start"]),
             ("MATLAB (printed)", g["matlab_printed"]),
             ("at MATLAB's coefficients", g["at_matlab_coefficients"])]
    for label, d in lines:
        if not d:
            continue
        out.write(f"{label:<26} {_g(d.get('sse'), '12.6g')} {_g(d.get('rsquare'), '12.6g')} "
                  f"{_g(d.get('rmse'), '12.6g')}\n")
    which = "peakfit" if cmp["against"] == "auto" else "peakfit (MATLAB start)"
    crit = f"rtol {cmp['rtol']:g}" + (f", atol {cmp['atol']:g}" if cmp["atol"] else "")
    if cmp["use_bounds"]:
        crit += f" or inside MATLAB's {pct} bounds"
    bad = [r["name"] for r in cmp["rows"] if not r["agree"]]
    if not bad:
        out.write(f"\nAGREE: all {len(cmp['rows'])} coefficients of {which} match MATLAB "
                  f"({crit}).\n")
    else:
        out.write(f"\nDISAGREE: {', '.join(bad)} of {which} differ from MATLAB ({crit}).\n")
        sse_ours = g["peakfit" if cmp["against"] == "auto" else "peakfit_matlab_start"]["sse"]
        sse_mat = g["matlab_printed"].get("sse", g["at_matlab_coefficients"]["sse"])
        if sse_ours < sse_mat * (1 - 1e-3):
            out.write(f"Note: {which} has the lower SSE ({_g(sse_ours)} vs {_g(sse_mat)}): "
                      "MATLAB stopped in a worse local minimum.\n")


def _cmd_compare(args: argparse.Namespace, out: TextIO) -> int:
    from .matlab.text import read_matlab_result

    mfit = read_matlab_result(args.matlab, variable=args.mat_variable)
    if mfit.n_terms is None:
        raise InputError(
            f"{args.matlab}: cannot tell the number of Gaussian terms: the coefficients are "
            f"{', '.join(mfit.coefficients)}; expected a1, b1, c1, ..., aN, bN, cN"
        )
    if args.n is not None and args.n != mfit.n_terms:
        raise _UsageError(f"-n {args.n} but {args.matlab} holds a gauss{mfit.n_terms} result")
    s = _load(args.file, args)
    if args.index is None and s.k > 1:
        raise _UsageError(f"{s.source} holds {s.k} spectra; choose one with --index")
    (i,) = _select(s, args.index if args.index is not None else 0)
    cmp = compare_with_matlab(s.x_of(i), s.Y[i], mfit, rtol=args.rtol, atol=args.atol,
                              use_bounds=args.use_bounds, against=args.against,
                              tol_fun=args.tol_fun, tol_x=args.tol_x)
    fmt = _format(args)
    if fmt == "json":
        _print_json({"data": s.source, "index": i, "matlab": args.matlab, **cmp}, out)
    elif fmt == "csv":
        import csv

        w = csv.writer(out, lineterminator="\n")
        keys = list(cmp["rows"][0]) if cmp["rows"] else []
        w.writerow(keys)
        for row in cmp["rows"]:
            w.writerow([_clean(row[k]) for k in keys])
    else:
        _print_comparison(cmp, f"{s.source} (spectrum {i}, {s.m} points)", args.matlab, out)
    return EXIT_OK if cmp["agree"] else EXIT_FIT_PROBLEM


# --------------------------------------------------------------------------------------------
# gd-demo and main
# --------------------------------------------------------------------------------------------


def _cmd_gd_demo(args: argparse.Namespace, out: TextIO) -> int:
    try:
        from .gd.demo import run_demo
    except ImportError as exc:
        raise _UsageError(f"the gradient-descent demo is not available: {exc}") from None
    res = run_demo(args.out, quick=args.quick)
    out.write(f"wrote the gradient-descent demo to {args.out}\n")
    if isinstance(res, dict):
        for key, val in res.items():
            if isinstance(val, (str, int, float, os.PathLike)):
                out.write(f"  {key}: {val}\n")
    return EXIT_OK


_COMMANDS = {
    "demo": _cmd_demo,
    "fit": _cmd_fit,
    "batch": _cmd_batch,
    "plot": _cmd_plot,
    "compare-matlab": _cmd_compare,
    "gd-demo": _cmd_gd_demo,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``peakfit`` command line; returns the exit code.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments without the program name (default ``sys.argv[1:]``).

    Returns
    -------
    int
        0 success, 1 fit problems (non-converged fits, disagreement with MATLAB), 2 usage or
        input errors, 130 interrupted.

    Examples
    --------
    >>> main(["fit", "no-such-file.csv"])
    2
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help / --version (0) or a usage error (2)
        return int(exc.code) if isinstance(exc.code, int) else EXIT_USAGE
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    out = sys.stdout
    try:
        with _cli_warnings(), np.errstate(all="ignore"):
            return _COMMANDS[args.command](args, out)
    except PeakfitError as exc:
        msg = str(exc)
        path = str(getattr(exc, "path", None) or "")
        keep = len(path) if path and msg.startswith(path) else 0  # a file name stays as it is
        _error(msg[:keep] + _cli_message(msg[keep:]))
        return EXIT_USAGE
    except _UsageError as exc:
        _error(str(exc))
        return EXIT_USAGE
    except ImportError as exc:
        _error(str(exc))
        return EXIT_USAGE
    except BrokenPipeError:  # pragma: no cover - `peakfit fit ... | head`
        return EXIT_OK
    except OSError as exc:
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        _error(f"{where}{exc.strerror or exc}")
        return EXIT_USAGE
    except KeyboardInterrupt:
        _error("interrupted")
        return EXIT_INTERRUPTED


# Python keyword -> command-line flag, for messages of the library seen through the CLI.
_FLAGS = {
    "n": "-n", "baseline": "--baseline", "start": "--start", "tol_fun": "--tol-fun",
    "tol_x": "--tol-x", "max_iter": "--max-iter", "TolFun": "--tol-fun", "TolX": "--tol-x",
    "MaxIter": "--max-iter", "dtype": "--dtype", "device": "--device", "x": "--x", "y": "--y",
    "layout": "--layout", "dataset": "--dataset", "variable": "--dataset",
    "delimiter": "--delimiter", "skip_header": "--skip-header", "smooth": "--smooth",
    "downsample": "--downsample", "nan_policy": "--nan-policy", "chunk_size": "--chunk-size",
    "level": "--level", "index": "--index", "restart": "--restart",
    "criterion": "--criterion", "n_max": "--n-max",
}
_NAMES = "|".join(sorted(map(re.escape, _FLAGS), key=len, reverse=True))
_KW_VALUE = re.compile(rf"(?<![\w\-./\\])({_NAMES})=('[^'\s]*'|\"[^\"\s]*\"|[^\s,;:)]+)?")
_KW_SUBJECT = re.compile(
    rf"(?<![\w\-./\\'\"])([a-z]+_[a-z_]+|(?:(?<=^)|(?<=: ))(?:{_NAMES}))(?= (?:must|is|has)\b)"
)


def _cli_message(message: str) -> str:
    """A library message in the command line's words: ``skip_header=`` becomes ``--skip-header``.

    Examples
    --------
    >>> _cli_message("skip_header must be an int >= 0 or None; got -1")
    '--skip-header must be an int >= 0; got -1'
    >>> _cli_message("a.csv, spectrum 0: downsample must be a positive integer factor")
    'a.csv, spectrum 0: --downsample must be a positive integer factor'
    >>> _cli_message("with layout='rows', y= must be data row indices")
    'with --layout rows, --y must be data row indices'
    >>> _cli_message("n=3 now, n=2 in the table. pass restart=True to start over")
    '-n 3 now, -n 2 in the table. pass --restart to start over'
    """

    def keyword(m: re.Match[str]) -> str:
        flag, value = _FLAGS[m[1]], m[2]
        if value is None:
            return flag
        if m[1] == "restart" and value == "True":
            return flag
        if value == "None":
            return f"{flag} (not given)"
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        return f"{flag} {value}"

    def subject(m: re.Match[str]) -> str:
        return _FLAGS.get(m[1], m[1])

    out = _KW_VALUE.sub(keyword, message)
    out = _KW_SUBJECT.sub(subject, out)
    out = re.sub(r" or None(?=[;:,.)]|$)", "", out)
    return out.replace("write to a new path", "write to a new path (-o)").replace(
        "Choose a new output path", "Choose a new output path (-o)")


def _error(message: str) -> None:
    print(f"peakfit: error: {message}", file=sys.stderr)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
