"""The worker context: settings, storage, engines and compiled rules, built once and passed on.

`run_worker` builds one and makes it the context of the jobs this process runs (`activate`); RQ
calls a job with ids only, and the job takes the active context (`current`). There is no fallback:
a job run without an active context is a configuration error, never a silent `Settings()`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from qa_service.errors import ConfigError
from qa_service.settings import Settings

if TYPE_CHECKING:
    from qa_service.pipeline import Engines
    from qa_service.storage.objects import InputStore
    from qa_service.storage.repository import Repository, RulesKind

log = logging.getLogger(__name__)


@dataclass
class WorkerContext:
    """What jobs need: settings, storage, the input store, the engines (loaded on first use) and
    compiled rules."""

    settings: Settings
    store: Repository
    engines_loaded: Engines | None = None
    rules: dict[tuple[str, str, str, str], Any] = field(default_factory=dict)
    # Where call inputs live (storage/objects.py); None: the store the settings name, built here.
    inputs: InputStore = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.inputs is None:
            from qa_service.storage.objects import input_store

            self.inputs = input_store(self.settings)

    @classmethod
    def build(cls, settings: Settings) -> WorkerContext:
        """A context over the database the settings name (migrated to head)."""
        from qa_service.storage import open_repository

        return cls(settings=settings, store=open_repository(settings.database_url))

    def engines(self) -> Engines:
        """The engines of this process, loaded on first use from the settings."""
        if self.engines_loaded is None:
            from qa_service.pipeline import load_engines

            started = time.monotonic()
            self.engines_loaded = load_engines(self.settings)
            log.info("engines loaded in %.1f s (asr model %s)", time.monotonic() - started,
                     self.settings.asr_model)
        return self.engines_loaded

    def compiled_rules(self, kind: RulesKind, rules_id: str, version: str) -> Any:
        """Stored rules, loaded and compiled once per content hash."""
        from qa_service.rules.load import load_policy_pack, load_rubric

        stored = self.store.get_rules(kind, rules_id, version)
        key = (kind, stored.id, stored.version, stored.sha256)
        if key not in self.rules:
            loader = load_rubric if kind == "rubric" else load_policy_pack
            name = f"{kind.replace('_', ' ')} {stored.id} {stored.version}"
            self.rules[key] = loader(stored.text, name=name)
        return self.rules[key]


_active: WorkerContext | None = None


def activate(context: WorkerContext | None) -> WorkerContext | None:
    """Make `context` the one jobs in this process run with (None: none); returns the one it replaces."""
    global _active
    previous, _active = _active, context
    return previous


def current() -> WorkerContext:
    """The context of the jobs in this process; ConfigError when no worker set one up."""
    if _active is None:
        raise ConfigError("no worker context: jobs run in a worker started by `qa-service worker`")
    return _active
