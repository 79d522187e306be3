"""Fail when the built Lambda package is too big.

Sums the unzipped size of the function's build folder (``sam build`` output) and compares it with a
limit (default 150 MiB; Lambda's own hard limit for a Zip package is 250 MB unzipped, layers included).
Prints the total and the largest top-level entries, so a regression names its culprit.

    python infra/check_package_size.py [.aws-sam/build/ApiFunction] [--limit-mb 150]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

MIB = 1024 * 1024


def tree_size(path: Path) -> int:
    if path.is_symlink() or path.is_file():
        return path.lstat().st_size
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            total += (Path(root) / name).lstat().st_size
    return total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("build_dir", nargs="?", default=".aws-sam/build/ApiFunction")
    parser.add_argument("--limit-mb", type=float, default=150.0, help="limit in MiB (default 150)")
    parser.add_argument("--top", type=int, default=8, help="how many of the largest entries to list")
    args = parser.parse_args(argv)

    build = Path(args.build_dir)
    if not build.is_dir():
        print(f"package-size: {build} does not exist: run `sam build` first", file=sys.stderr)
        return 2

    entries = sorted(((tree_size(p), p.name) for p in build.iterdir()), reverse=True)
    total = sum(size for size, _ in entries)
    files = sum(len(f) for _, _, f in os.walk(build))
    limit = int(args.limit_mb * MIB)

    print(f"package-size: {build}: {total / MIB:.1f} MiB ({total:,} bytes, {files} files) unzipped;"
          f" limit {args.limit_mb:g} MiB")
    for size, name in entries[: args.top]:
        print(f"  {size / MIB:8.1f} MiB  {name}")
    if total > limit:
        print(f"package-size: FAIL: {total / MIB:.1f} MiB > {args.limit_mb:g} MiB", file=sys.stderr)
        return 1
    print("package-size: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
