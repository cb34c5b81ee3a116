"""Rubrics and policy packs: find the stored version a call names, store an upload, keep loaded files."""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from qa_service.errors import Conflict, InputError, NotFound
from qa_service.rules.load import parse_yaml
from qa_service.services.rulecheck import check_rules, upload_name
from qa_service.storage.repository import Repository, RulesKind, StoredRules

log = logging.getLogger(__name__)


class UnknownRules(InputError):
    """The call names a rubric or policy pack that is not stored (HTTP 422)."""


def rules_path(kind: RulesKind) -> str:
    """The API path of a kind of rules."""
    return "rubrics" if kind == "rubric" else "policy-packs"


def stored_rules(store: Repository, kind: RulesKind, rules_id: str, version: str | None) -> StoredRules:
    """The stored rules of this id and version (None: newest), or UnknownRules (422) naming the upload."""
    try:
        return store.get_rules(kind, rules_id, version)
    except NotFound as exc:
        raise UnknownRules(f"{exc}; upload it first (POST /v1/{rules_path(kind)})") from None


def known_rules(*, store: Repository, kind: RulesKind, text: str) -> StoredRules | None:
    """The stored rules with exactly this text, if any; Conflict (409) for stored rules of the same id
    and version with other text; None for rules to check and store (without starting the checker)."""
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    for stored in store.list_rules(kind):
        if stored.sha256 == digest:
            return stored
    # YAML that cannot be read (too deeply nested, an impossible date, ...) is refused here with its line.
    doc, _ = parse_yaml(text, upload_name(kind))
    if isinstance(doc, dict) and isinstance(doc.get("id"), str) and isinstance(doc.get("version"), str):
        try:
            store.get_rules(kind, doc["id"], doc["version"])
        except NotFound:
            return None
        # Stored under this id and version with another sha256: put_rules says so with a 409.
        store.put_rules(kind, doc["id"], doc["version"], digest, text)
    return None


def add_rules(*, store: Repository, kind: RulesKind, text: str) -> tuple[StoredRules, bool]:
    """Check uploaded rules text (in a child process) and store it; the stored rules and whether they
    are new (identical text already stored is answered without checking it again)."""
    known = known_rules(store=store, kind=kind, text=text)
    if known is not None:
        return known, False
    checked = check_rules(kind, text)
    return store.put_rules(kind, checked.id, checked.version, checked.sha256, text)


def keep_loaded_rules(*, store: Repository, kind: RulesKind, rules: Any) -> None:
    """Store rules loaded from a file (the command line, the demo) so calls scored with them can name
    them; an edited file that kept its version is logged, and its scorecards keep their own sha256."""
    try:
        store.put_rules(kind, rules.id, rules.version, rules.sha256, rules.text)
    except Conflict:
        log.warning("%s %s version %s differs from the stored one; bump its version", kind, rules.id,
                    rules.version)
