"""`buf lint` and `buf breaking` over ``protos/`` (rules in ``protos/buf.yaml``), as `make lint` runs them.

``buf breaking`` compares with the protos of the previous landed commit: ``$BUF_AGAINST`` when set (any git ref),
else ``origin/main`` when this clone has it, else the commit of the last landing before this check existed
(:data:`LAST_LANDING`). The ref is resolved to a full commit id here (buf's git input clones by ref and does not
take abbreviated ids), and buf reads the repository's common git directory, so a worktree works too
(https://buf.build/docs/reference/inputs/#git).

Usage: ``python scripts/check_protos.py [--lint-only]``. Exit 0 clean; 1 a lint or breaking-change finding (buf
prints them); 2 no buf binary or no baseline commit in this clone (one line says how to get it).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: The landing before the protos had a buf configuration; the baseline when there is no origin/main.
LAST_LANDING = "433103b"


def buf_binary() -> str | None:
    """The buf CLI: the one the ``buf-bin`` wheel put next to this Python, else ``buf`` on PATH."""
    here = Path(sys.executable).parent / "buf"
    return str(here) if here.exists() else shutil.which("buf")


def _git(*args: str) -> str | None:
    out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
    return out.stdout.strip() if out.returncode == 0 else None


def baseline() -> tuple[str, str] | None:
    """(ref as asked, full commit id) of the protos to compare with, or None when none is in this clone."""
    wanted = [os.environ["BUF_AGAINST"]] if os.environ.get("BUF_AGAINST") else ["origin/main", LAST_LANDING]
    for ref in wanted:
        sha = _git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
        if sha:
            return ref, sha
    return None


def against_input(sha: str) -> str:
    """buf's git input for ``protos/`` at commit ``sha``."""
    git_dir = _git("rev-parse", "--path-format=absolute", "--git-common-dir") or str(ROOT / ".git")
    return f"{git_dir}#ref={sha},subdir=protos"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lint-only", action="store_true", help="skip buf breaking")
    args = parser.parse_args()
    buf = buf_binary()
    if buf is None:
        print("check_protos: no buf CLI (pip install buf-bin, or `make setup`)", file=sys.stderr)
        return 2
    rc = subprocess.run([buf, "lint", "protos"], cwd=ROOT).returncode
    if rc != 0 or args.lint_only:
        return 1 if rc else 0
    base = baseline()
    if base is None:
        print(f"check_protos: no baseline for buf breaking in this clone (origin/main, {LAST_LANDING}): "
              "git fetch origin main (or --unshallow), or set BUF_AGAINST=<ref>", file=sys.stderr)
        return 2
    ref, sha = base
    rc = subprocess.run([buf, "breaking", "protos", "--against", against_input(sha)], cwd=ROOT).returncode
    if rc != 0:
        print(f"check_protos: wire-incompatible change against {ref} ({sha[:12]})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
