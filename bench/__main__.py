"""`python -m bench` (or `make bench`): the word-count and upload benchmarks, one after the
other, each printing its figures beside a baseline measured in the same run.

The load benchmark of the whole service is separate: `python -m bench.load` (`make load`).
"""

from __future__ import annotations

import argparse
import sys

from bench import upload, wordcount


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small inputs (a smoke run)")
    args = parser.parse_args(argv)
    counting = wordcount.run(quick=args.quick)
    sys.stdout.write(wordcount.format_results(counting) + "\n\n")
    sys.stdout.write(upload.report(upload.run(quick=args.quick)) + "\n")
    return 0 if all(r["counts_match"] for r in counting) else 1


if __name__ == "__main__":
    raise SystemExit(main())
