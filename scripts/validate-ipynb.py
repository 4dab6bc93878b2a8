#!/usr/bin/env python3
"""Checks Jupyter notebooks against the nbformat schema.

    python3 scripts/validate-ipynb.py FILE...

Prints "OK FILE" or the problems for each file and exits 1 if any file fails, 2 on bad usage or
when the nbformat package is missing (Debian: apt-get install python3-nbformat; elsewhere:
pip install nbformat).
"""

import copy
import json
import sys


def check(nbformat, path):
    """Raises on the first problem with the notebook at `path`."""
    with open(path, encoding="utf-8") as file:
        raw = json.load(file)
    # nbformat.read upgrades older notebooks (adding cell ids, repairing duplicates) before it
    # validates; the file as written must be 4.5 with unique ids on its own.
    version = (raw.get("nbformat"), raw.get("nbformat_minor"))
    if version[0] != 4 or not isinstance(version[1], int) or version[1] < 5:
        raise ValueError(f"nbformat {version[0]}.{version[1]}, expected 4.5 or a later 4.x")
    ids = [cell.get("id") for cell in raw.get("cells", [])]
    duplicates = sorted({i for i in ids if ids.count(i) > 1 and isinstance(i, str)})
    if duplicates:
        raise ValueError(f"duplicate cell ids: {', '.join(duplicates)}")
    nbformat.validate(copy.deepcopy(raw))

    with open(path, encoding="utf-8") as file:
        notebook = nbformat.read(file, as_version=4)
    nbformat.validate(notebook)


def main(paths):
    if not paths:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    try:
        import nbformat
    except ImportError:
        print("nbformat is not installed (apt-get install python3-nbformat, or pip install nbformat)",
              file=sys.stderr)
        return 2

    failed = 0
    for path in paths:
        try:
            check(nbformat, path)
        except Exception as error:  # every failure of one file is reported, then the next is read
            failed += 1
            print(f"FAIL {path}: {type(error).__name__}: {error}")
        else:
            print(f"OK {path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
