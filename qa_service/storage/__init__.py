"""Storage: the protocols by aggregate and the one storage object (`repository`), its SQL
implementation (`sql`, with a module per aggregate: `calls`, `scorecards`, `rules`, `rescore_runs`,
`keys`, `review` for reviews and the audit log, `sessions`, `certification`, `views`), an in-memory
twin (`memory`), migrations, and call inputs on disk (`inputs`, `fetch`). The SQL engine never leaves
this package."""

from qa_service.storage.repository import (
    AgentSummary,
    NewCall,
    NewRescoreRun,
    Repository,
    StoredCall,
    StoredKey,
    StoredRescoreRun,
    StoredRules,
    StoredScorecard,
)
from qa_service.storage.sql import SqlRepository, make_engine, open_repository

__all__ = [
    "AgentSummary", "NewCall", "NewRescoreRun", "Repository", "SqlRepository", "StoredCall", "StoredKey",
    "StoredRescoreRun", "StoredRules", "StoredScorecard", "make_engine", "open_repository",
]
