"""Run the gradient-descent demo: all figures and report.md.

Usage::

    python examples/gd_demo.py                 # into a fresh temporary directory
    python examples/gd_demo.py --out gd-demo   # into ./gd-demo
    python examples/gd_demo.py --quick         # smaller problems, a few seconds
"""

from __future__ import annotations

import argparse
import tempfile

from peakfit.gd.demo import run_demo


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="output directory (default: a new temporary directory)")
    parser.add_argument("--quick", action="store_true", help="smaller, faster demo")
    args = parser.parse_args(argv)
    out = args.out or tempfile.mkdtemp(prefix="peakfit-gd-")
    result = run_demo(out, quick=args.quick)
    print(
        f"wrote {len(result['figures'])} figures and {result['report']} "
        f"in {result['seconds']:.1f} s"
    )
    lr = result["numbers"]["lr"]
    bt = result["numbers"]["batch"]
    print(
        f"lr edge found: {lr['edge_ratio']:.4f} x 2/lambda_max; "
        f"noise scale estimate/exact: {bt['b_simple_ratio']:.3f}"
    )
    return result


if __name__ == "__main__":
    main()
