"""Pages generated when the site is built (run by the ``gen-files`` plugin, see ``mkdocs.yml``).

* ``gallery/``: every script of :data:`GALLERY` in ``examples/`` is executed, cell by cell
  (cells start at ``# %%`` lines; the comment lines right after are the cell's text); its
  printed output and its matplotlib figures are embedded under the code that produced them.
  An example that raises stops the build.
* ``performance.md``: plots and tables drawn from the committed benchmark results
  ``benchmarks/results/*.json`` (nothing is timed while the site is built).

Run ``mkdocs build`` from the repository root; ``python docs/gen_pages.py`` alone does nothing
useful (it needs the plugin's virtual file system).
"""

from __future__ import annotations

import ast
import contextlib
import io
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import mkdocs_gen_files

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
RESULTS = REPO / "benchmarks" / "results"

#: gallery scripts, in page order (examples/ may hold more: see tests/test_examples.py)
GALLERY = [
    "plot_4peaks.py",
    "matlab_display.py",
    "start_hard.py",
    "batch_map.py",
    "compare_matlab.py",
    "batch_folder.py",
    "seed_4peaks.py",
    "gd_figures.py",
]
#: command-line arguments of the scripts that write files: a folder relative to the (temporary)
#: working directory, so that the printed paths are short
ARGS = {"compare_matlab.py": ["compare"], "batch_folder.py": ["batch"]}


# --------------------------------------------------------------------------- gallery
def split_script(source: str) -> tuple[str, list[tuple[str, str]]]:
    """Docstring and ``[(text, code), ...]`` cells of an example script."""
    tree = ast.parse(source)
    doc = ast.get_docstring(tree) or ""
    lines = source.splitlines()
    first = tree.body[0] if tree.body else None
    if doc and isinstance(first, ast.Expr):
        lines = lines[first.end_lineno:]
    cells: list[tuple[list[str], list[str]]] = [([], [])]
    for line in lines:
        if line.startswith("# %%"):
            cells.append(([], []))
        elif line.startswith("#") and not cells[-1][1]:
            cells[-1][0].append(line[1:].strip())
        else:
            cells[-1][1].append(line)
    out = [(" ".join(t).strip(), "\n".join(c).strip("\n")) for t, c in cells]
    return doc, [(t, c) for t, c in out if t or c.strip()]


def rst_to_md(text: str) -> str:
    """The few reST forms used in example docstrings, as Markdown."""
    text = re.sub(r":(?:func|mod|class|meth):`~?([^`]+)`", r"`\1`", text)
    text = text.replace("``", "`")
    return re.sub(r"::\n\n((?:    .*\n?|\n)+)", lambda m: ":\n\n```\n"
                  + re.sub(r"^    ", "", m.group(1).strip("\n"), flags=re.M) + "\n```\n\n", text)


def run_cells(path: Path, cells: list[tuple[str, str]]) -> list[tuple[str, str, str, list]]:
    """Execute the cells in one namespace: ``[(text, code, stdout, [(label, png)])]``."""
    ns: dict = {"__name__": "__main__", "__file__": str(path)}
    out = []
    argv, cwd, show, tmpdir = sys.argv, os.getcwd(), plt.show, tempfile.tempdir
    plt.close("all")
    with tempfile.TemporaryDirectory(prefix="peakfit-gallery-") as tmp:
        try:
            sys.argv = [str(path), *ARGS.get(path.name, [])]
            os.chdir(tmp)
            tempfile.tempdir = tmp  # the scripts' temporary folders go, and are removed, here
            plt.show = lambda *a, **k: None
            for text, code in cells:
                buf = io.StringIO()
                try:
                    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
                        exec(compile(code, str(path), "exec"), ns)
                except SystemExit as exc:  # scripts end with sys.exit(main())
                    if exc.code not in (None, 0):
                        raise RuntimeError(f"{path.name} exited with {exc.code}:\n"
                                           f"{buf.getvalue()}") from None
                figs = []
                for num in plt.get_fignums():
                    fig = plt.figure(num)
                    png = io.BytesIO()
                    fig.savefig(png, format="png")
                    figs.append((fig.get_label(), png.getvalue()))
                plt.close("all")
                out.append((text, code, buf.getvalue(), figs))
        finally:
            sys.argv, plt.show, tempfile.tempdir = argv, show, tmpdir
            os.chdir(cwd)
    return out


def gallery_page(name: str) -> tuple[str, str, str | None]:
    """Write ``gallery/<stem>.md`` and its images; return (title, summary, first image)."""
    path = EXAMPLES / name
    stem = path.stem
    doc, cells = split_script(path.read_text())
    title, _, rest = doc.partition("\n")
    command = " ".join(["python", f"examples/{name}", *ARGS.get(name, [])])
    t0 = time.perf_counter()
    ran = run_cells(path, cells)
    seconds = time.perf_counter() - t0
    md = ["---\nhide:\n  - toc\n---\n", f"# {rst_to_md(title.strip())}\n",
          rst_to_md(rest.strip()) + "\n",
          f"Source: `examples/{name}`. This page shows the output of `{command}`, run when "
          f"the site was built ({seconds:.1f} s).\n"]
    first = None
    n_img = 0
    for text, code, stdout, figs in ran:
        if text:
            md.append(rst_to_md(text) + "\n")
        md.append(f"```python\n{code}\n```\n")
        if stdout.strip():
            md.append(f'<div class="gallery-output" markdown>\n\n```text title="Output"\n'
                      f"{stdout.rstrip()}\n```\n\n</div>\n")
        for label, png in figs:
            n_img += 1
            img = f"images/{stem}_{n_img}.png"
            with mkdocs_gen_files.open(f"gallery/{img}", "wb") as fh:
                fh.write(png)
            first = first or img
            alt = label or f"Figure {n_img} of {stem}"
            md.append(f"![{alt}]({img})\n")
    with mkdocs_gen_files.open(f"gallery/{stem}.md", "w") as fh:
        fh.write("\n".join(md))
    mkdocs_gen_files.set_edit_path(f"gallery/{stem}.md", f"../examples/{name}")
    return rst_to_md(title.strip()), stem, first


def gallery() -> None:
    entries = [gallery_page(name) for name in GALLERY]
    md = ["# Gallery\n",
          "Runnable scripts from the `examples/` folder of the repository. Every page shows the "
          "code, the output it printed and the figures it drew, all produced by running the "
          "script when this site was built; the test suite runs the same scripts "
          "(`tests/test_examples.py`).\n",
          '<div class="grid cards gallery-grid" markdown>\n']
    for title, stem, first in entries:
        md.append(f"-   [**{title}**]({stem}.md)\n")
        if first:
            md.append(f"    [![{title}]({first})]({stem}.md)\n")
    md.append("</div>\n")
    md.append("## Adding an example\n\n"
              "Write `examples/NAME.py` with a docstring (title line, then how to run it), split "
              "into cells by `# %%` lines (comment lines right after one are the cell's text); "
              "call `plt.show()` for figures. Add it to `GALLERY` in `docs/gen_pages.py`, to the "
              "Gallery section of `nav` in `mkdocs.yml`, and a test asserting its numbers to "
              "`tests/test_examples.py`.\n")
    with mkdocs_gen_files.open("gallery/index.md", "w") as fh:
        fh.write("\n".join(md))


# --------------------------------------------------------------------------- performance
def _load(name: str) -> dict | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _figure(fig, name: str) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    with mkdocs_gen_files.open(f"performance/{name}.png", "wb") as fh:
        fh.write(buf.getvalue())
    return f"performance/{name}.png"


def _machine(doc: dict) -> str:
    m = doc["machine"]
    return (f"{m['cpu']}, {m['logical_cpus']} logical CPUs, {m['os']}, Python {m['python']}; "
            f"{m['note']}. Measured {doc['date']}.")


def _commands(doc: dict) -> str:
    return "```bash\n" + "\n".join(doc["commands"]) + "\n```\n"


def gpu_records() -> list[tuple[dict, dict]]:
    """``(results file, record)`` of every GPU batch record committed in benchmarks/results."""
    docs = [json.loads(p.read_text()) for p in sorted(RESULTS.glob("*.json"))]
    return [(d, r) for d in docs for r in d["records"]
            if str(r.get("device", "")).startswith("gpu") and "fits_per_s" in r]


def gpu_section() -> list[str]:
    """GPU batch records of any results file, or a plain statement that none was measured."""
    rows = gpu_records()
    md = ["## GPU\n"]
    if not rows:
        md.append("**Not measured.** No GPU result is committed in `benchmarks/results/`: "
                  "every figure above is a CPU figure. The GPU path (`device='gpu'`, CuPy) "
                  "is tested for agreement with the CPU where a CUDA device exists; to "
                  "measure it, run `python benchmarks/results/collect.py batch_gpu` on a "
                  "machine with a CUDA GPU and commit `batch_gpu.json`.\n")
        return md
    md += ["| device | dtype | spectra | fits/s | success | × curve_fit |\n"
           "|---|---|---:|---:|---:|---:|"]
    for _, r in rows:
        md.append(f"| {r['device']} | {r['dtype']} | {r['k']} | {r['fits_per_s']:.0f} | "
                  f"{100 * r['success_rate']:.1f} % | {r.get('speedup_vs_curve_fit', '-')} |")
    for d in {id(d): d for d, _ in rows}.values():
        md += ["", f"Machine: {_machine(d)}\n", _commands(d)]
    return md


def performance() -> None:
    md = ["---\nhide:\n  - toc\n---\n", "# Performance\n",
          "Every figure on this page is drawn from benchmark results committed in "
          "`benchmarks/results/*.json`, written by `python benchmarks/results/collect.py`, which "
          "runs the benchmark scripts of `benchmarks/` with the small sizes shown below. Nothing "
          "is timed while the site is built.\n",
          '!!! warning "What has not been measured"\n    '
          + ("" if gpu_records() else
             "**No GPU figure has been measured**: no GPU was available where these results "
             "were collected, so this page shows CPU results only. ")
          + "The CPU machine was a 2-vCPU virtual machine (named below with the date), so "
          "absolute figures vary from run to run; the ratios (peakfit against `curve_fit` and "
          "lmfit) were measured in the same run and are the more reliable numbers. Larger "
          "batches than 3000 spectra were not measured here.\n"]
    batch = _load("batch")
    if batch:
        recs = [r for r in batch["records"] if "engine" in r and r.get("device") == "cpu"]
        fig, ax = plt.subplots(figsize=(7.5, 4.5))
        for eng, colour in (("numpy", "C0"), ("numba", "C1")):
            rs = sorted((r for r in recs if r["engine"] == eng), key=lambda r: r["k"])
            if rs:
                ax.plot([r["k"] for r in rs], [r["fits_per_s"] for r in rs], "o-", color=colour,
                        label=f"peakfit batch, {eng} engine ({rs[0]['threads']} threads)")
        for key, colour, label in (("curve_fit", "C2", "scipy curve_fit, looped"),
                                   ("lmfit", "C3", "lmfit, looped")):
            rs = sorted((r for r in recs if key in r), key=lambda r: r["k"])
            if rs:
                ax.plot([r["k"] for r in rs], [r[key]["fits_per_s"] for r in rs], "s--",
                        color=colour, label=label)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("number of spectra in the batch")
        ax.set_ylabel("fits per second")
        ax.set_title("4 peaks, 1000 points, float64, start estimation included")
        ax.legend(fontsize="small")
        ax.grid(True, which="both", alpha=0.3)
        img = _figure(fig, "batch_fits_per_s")
        md += ["## Batch fitting on the CPU\n",
               "`peakfit.fit_gaussians_batch` on synthetic 4-peak spectra (1000 points, 1 % "
               "noise) with its default start estimation, for each CPU engine, against "
               "`scipy.optimize.curve_fit` and lmfit looped over the first spectra of the same "
               "batch, started from peakfit's start points (so the solvers are compared).\n",
               f"![fits per second against the number of spectra]({img})\n",
               "| engine | spectra | fits/s | success | curve_fit fits/s | lmfit fits/s "
               "| × curve_fit | × lmfit |\n|---|---:|---:|---:|---:|---:|---:|---:|"]
        for r in sorted(recs, key=lambda r: (r["engine"], r["k"])):
            md.append(f"| {r['engine']} | {r['k']} | {r['fits_per_s']:.0f} | "
                      f"{100 * r['success_rate']:.1f} % | {r['curve_fit']['fits_per_s']:.0f} | "
                      f"{r.get('lmfit', {}).get('fits_per_s', float('nan')):.1f} | "
                      f"{r['speedup_vs_curve_fit']:.1f} | {r.get('speedup_vs_lmfit', 0):.0f} |")
        md += ["", f"Machine: {_machine(batch)}\n", _commands(batch)]
    single = _load("single")
    if single:
        md += ["## One spectrum at a time\n",
               "`peakfit.fit_gaussians` on single 4-peak spectra of 1000 points, against "
               "`curve_fit` and lmfit given a good start (the truth perturbed by 3 %).\n",
               "| method | ms per fit | success | speed relative to curve_fit |\n"
               "|---|---:|---:|---:|"]
        for r in single["records"]:
            md.append(f"| {r['method']} | {r['ms_per_fit']:.2f} | "
                      f"{100 * r['success_rate']:.0f} % | {r['speedup_vs_curve_fit']:.2f} |")
        md += ["", f"Machine: {_machine(single)}\n", _commands(single)]
    start = _load("start")
    if start:
        rates = [r for r in start["records"] if r.get("kind") == "rate"]
        methods = [m for m in ("auto", "matlab", "scipy", "truth") if f"{m}_rate" in rates[0]]
        labels = {"auto": "peakfit default start", "matlab": "MATLAB gaussnstart",
                  "scipy": "find_peaks + curve_fit", "truth": "started from the truth"}
        fig, ax = plt.subplots(figsize=(9, 6.5))
        names = [("all" if r["factor"] == "all" else f"{r['factor']}={r['level']}")
                 + f" ({r['n']})" for r in rates]
        h = 0.8 / len(methods)
        for j, me in enumerate(methods):
            ax.barh([i + j * h for i in range(len(rates))],
                    [100 * r[f"{me}_rate"] for r in rates], height=h, label=labels[me])
        ax.set_yticks([i + 0.4 - h / 2 for i in range(len(rates))], names, fontsize="small")
        ax.invert_yaxis()
        ax.set_xlabel("success rate, % (every centre within 0.1 c of the truth)")
        ax.set_xlim(0, 100)
        ax.legend(fontsize="small", loc="lower left")
        fig.tight_layout()
        img = _figure(fig, "start_success")
        meta = next(r for r in start["records"] if r.get("kind") == "meta")
        md += ["## Start points: success by subgroup\n",
               f"{meta['count']} synthetic 4-peak spectra of `benchmarks/synth.py` (random "
               "overlap, height ratio, noise, x scale, sampling, order, baseline and size; the "
               "number of spectra of each subgroup in brackets), each fitted four ways.\n",
               f"![start success rates by subgroup]({img})\n",
               "| subgroup | n | " + " | ".join(labels[m] for m in methods) + " |\n"
               "|---|---:|" + "---:|" * len(methods)]
        for r, name in zip(rates, names):
            md.append(f"| {name.rsplit(' (', 1)[0]} | {r['n']} | "
                      + " | ".join(f"{100 * r[f'{m}_rate']:.1f} %" for m in methods) + " |")
        speed = next((r for r in start["records"] if r.get("kind") == "speed"), None)
        if speed:
            md.append(f"\nOne 4-peak spectrum of 1000 points (best of 7): `fit_gaussians` with "
                      f"its default start {speed['fit_gaussians_auto_ms']:.2f} ms, "
                      f"`curve_fit` from a good start {speed['curve_fit_good_p0_ms']:.2f} ms "
                      f"(ratio {speed['auto_over_curve_fit']:.2f}).\n")
        md += ["", f"Machine: {_machine(start)}\n", _commands(start)]
    md += gpu_section()
    with mkdocs_gen_files.open("performance.md", "w") as fh:
        fh.write("\n".join(md))


gallery()
performance()
