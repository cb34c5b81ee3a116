"""Storage: a small repository protocol (`repository`), its SQL implementation (`sql`), and migrations."""

from qa_service.storage.repository import (
    AgentSummary,
    NewCall,
    Repository,
    StoredCall,
    StoredKey,
    StoredRules,
    StoredScorecard,
)
from qa_service.storage.sql import SqlRepository, make_engine, open_repository

__all__ = [
    "AgentSummary", "NewCall", "Repository", "SqlRepository", "StoredCall", "StoredKey", "StoredRules",
    "StoredScorecard", "make_engine", "open_repository",
]
