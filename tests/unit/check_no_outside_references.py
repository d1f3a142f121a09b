#!/usr/bin/env python3
"""The repository stands on its own: no file points at notes that are not part of it
(a sibling directory of the team's design or research notes). What a reader needs from
such notes belongs in docs/. Fails, naming file and line, when a reference is added.

    check_no_outside_references.py SOURCE_DIR

Scans every text file of the source tree (git's list of tracked and untracked files
when SOURCE_DIR is a git work tree, else a walk that skips build trees), except this
file, which has to spell the patterns.
"""
import os
import re
import subprocess
import sys

PATTERNS = [
    re.compile(r"\.\./shared\b"),
    re.compile(r"\bshared/(research|DESIGN|STYLE)"),
    re.compile(r"\bresearch/"),
    re.compile(r"\bresearch §"),
    re.compile(r"\b(DESIGN|STYLE)\.md\b"),
    re.compile(r"\b(DESIGN|research) §\s*\d"),
]


SELF = os.path.abspath(__file__)


def files(root):
    try:
        out = subprocess.run(
            ["git", "-C", root, "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            check=True, capture_output=True).stdout
        return sorted({os.path.join(root, p) for p in out.decode().split("\0") if p})
    except (OSError, subprocess.CalledProcessError):
        pass
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        # A build tree (CMake's cache marks it) and git's own data are not the repository.
        dirnames[:] = [d for d in dirnames if d != ".git"
                       and not os.path.exists(os.path.join(dirpath, d, "CMakeCache.txt"))]
        found.extend(os.path.join(dirpath, f) for f in filenames)
    return sorted(found)


def text_lines(path):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return []
    if b"\0" in data[:8192]:
        return []  # binary (recordings, corpora)
    return data.decode("utf-8", "replace").splitlines()


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    root = os.path.abspath(sys.argv[1])
    found = []
    for path in files(root):
        if os.path.abspath(path) == SELF or not os.path.isfile(path):
            continue
        rel = os.path.relpath(path, root)
        for number, line in enumerate(text_lines(path), 1):
            if any(p.search(line) for p in PATTERNS):
                found.append((rel, number, line.strip()))
    for rel, number, line in found:
        print("%s:%d: refers to notes outside the repository (move what is needed into "
              "docs/ and point there): %s" % (rel, number, line))
    if found:
        return 1
    print("no references outside the repository in %d files" % len(files(root)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
