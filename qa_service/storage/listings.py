"""The listings the stores read page by page, each named once with its order, so that a SQL store and
its in-memory twin page alike (`storage.paging`).

Each key is the listing's sort columns, then what makes a row unique.
"""

from __future__ import annotations

from datetime import date, datetime

from qa_service.calibration import CalibrationSession
from qa_service.storage.paging import Listing
from qa_service.storage.repository import (
    Certification,
    Dispute,
    Membership,
    StoredKey,
    StoredRescoreRun,
    TrainingRecord,
)
from qa_service.storage.review import AuditEntry

# API keys, newest first: the key just made is on the first page, and agents' keys run to thousands.
KEYS: Listing[StoredKey] = Listing("keys", (datetime, str), lambda k: (k.created_at, k.id))

# Memberships by agent and start date (one row per agent and start date).
MEMBERSHIPS: Listing[Membership] = Listing("memberships", (str, date), lambda m: (m.agent_id, m.since))

# Certifications by agent, name and issue date (one row per agent, name and issue date).
CERTIFICATIONS: Listing[Certification] = Listing(
    "certifications", (str, str, date), lambda c: (c.agent_id, c.name, c.issued_on))

# Unrenewed certifications by expiry: the expiring ones soonest first, the lapsed ones most recent first.
EXPIRING: Listing[Certification] = Listing("certifications-expiring", (date, str, str, date),
                                           lambda c: (c.expires_on, c.agent_id, c.name, c.issued_on))
LAPSED: Listing[Certification] = Listing("certifications-lapsed", EXPIRING.types, EXPIRING.key_of)

# Training records by agent, policy pack and version (one row per agent and pack version).
TRAINING: Listing[TrainingRecord] = Listing(
    "training-records", (str, str, str), lambda r: (r.agent_id, r.pack_id, r.pack_version))

# Agents' disputes, oldest raised first (the open ones wait for QA).
DISPUTES: Listing[Dispute] = Listing("disputes", (datetime, int), lambda d: (d.created_at, d.id))

# The audit log, newest first: rows are only appended, so a later page still starts after the last shown.
AUDIT: Listing[AuditEntry] = Listing("audit", (datetime, int), lambda r: (r.at, r.id))

# Calibration sessions and rescore runs, newest first; their ids are UUIDs.
CALIBRATIONS: Listing[CalibrationSession] = Listing(
    "calibrations", (datetime, str), lambda s: (s.created_at, s.id), uuid_id=True)
RESCORES: Listing[StoredRescoreRun] = Listing("rescores", (datetime, str), lambda r: (r.created_at, r.id),
                                              uuid_id=True)
