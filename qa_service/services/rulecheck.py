"""Validate an uploaded rubric or policy pack in a short-lived child process.

Checking spaCy token patterns needs spaCy, and the API process must stay free of the NLP
libraries (memory, start-up time, and one place where models live: the worker). Rules uploads
are rare, so a child process per upload costs little. Run as
`python -m qa_service.services.rulecheck rubric|policy_pack` with the YAML on stdin; it prints one
JSON line: {"ok": true, "id", "version", "sha256"} or {"ok": false, "error"}.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from qa_service.errors import RulesError, TransientError

TIMEOUT_S = 60


@dataclass(frozen=True)
class Checked:
    id: str
    version: str
    sha256: str


def check_rules(kind: str, text: str) -> Checked:
    """Validate rules text in a child process; RulesError with the loader's message when it is invalid."""
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "qa_service.services.rulecheck", kind], input=text.encode("utf-8"),
            capture_output=True, timeout=TIMEOUT_S, check=False,
        )
    except subprocess.TimeoutExpired:
        what = kind.replace("_", " ")
        raise TransientError(f"checking the {what} took longer than {TIMEOUT_S} s") from None
    lines = proc.stdout.decode("utf-8", "replace").strip().splitlines()
    try:
        answer = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        raise TransientError(f"the rules checker failed (exit code {proc.returncode})") from None
    if not answer.get("ok"):
        raise RulesError(str(answer.get("error", "invalid rules file")))
    return Checked(id=answer["id"], version=answer["version"], sha256=answer["sha256"])


def upload_name(kind: str) -> str:
    """The name an uploaded rubric or policy pack goes by in error messages (it has no file name)."""
    return "rubric.yaml" if kind == "rubric" else "policy-pack.yaml"


def main(argv: list[str]) -> int:
    """Child-process entry: read YAML on stdin, print the verdict as one JSON line."""
    from qa_service.rules.load import load_policy_pack, load_rubric

    kind = argv[0] if argv else ""
    loaders: dict[str, Callable[..., Any]] = {"rubric": load_rubric, "policy_pack": load_policy_pack}
    if kind not in loaders:
        sys.stdout.write(json.dumps({"ok": False, "error": f"unknown kind {kind!r}"}) + "\n")
        return 2
    text = sys.stdin.buffer.read().decode("utf-8")
    try:
        rules = loaders[kind](text, name=upload_name(kind))
    except RulesError as exc:
        sys.stdout.write(json.dumps({"ok": False, "error": str(exc)}) + "\n")
        return 0
    sys.stdout.write(json.dumps({"ok": True, "id": rules.id, "version": rules.version,
                                 "sha256": rules.sha256}) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
