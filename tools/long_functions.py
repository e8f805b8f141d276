"""Lists the functions longer than a limit (60 lines by default), longest first.

A function's length runs from its ``def`` line to its last line, as the AST states them
(decorators left out; a nested function counts in its parent and again on its own).
Issue 22 measures the code by it: ``python tools/long_functions.py [--limit N] [PATH ...]``.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path


def lengths(path: Path):
    """(length, qualified name, line) of every function and method in the file at ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []

    def walk(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}{child.name}"
                if not isinstance(child, ast.ClassDef):
                    found.append((child.end_lineno - child.lineno + 1, name, child.lineno))
                walk(child, name + ".")
            else:
                walk(child, prefix)

    walk(tree, "")
    return found


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("paths", nargs="*", type=Path, default=[Path("gallery")])
    ap.add_argument("--limit", type=int, default=60, help="list functions longer than this (default: 60)")
    args = ap.parse_args(argv)
    files = sorted(f for p in args.paths for f in ([p] if p.is_file() else p.rglob("*.py")))
    rows = sorted(((n, f"{f.with_suffix('').as_posix().replace('/', '.')}.{name}", f"{f}:{line}")
                   for f in files for n, name, line in lengths(f) if n > args.limit), reverse=True)
    for n, name, where in rows:
        print(f"{n:5d}  {name}  ({where})")
    print(f"{len(rows)} functions over {args.limit} lines in {len(files)} files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
