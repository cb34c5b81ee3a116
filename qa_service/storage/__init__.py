"""Storage: a small repository protocol (`repository`), its SQL implementation (`sql`), and migrations."""

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
