"""Table definitions used by the SQL repository; the Alembic migrations create the same tables.

Portable types only: `Uuid` is native on PostgreSQL and CHAR(32) on SQLite; JSON becomes JSONB
on PostgreSQL. Timestamps are stored in UTC.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

metadata = sa.MetaData()

JSONType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
Timestamp = sa.DateTime(timezone=True)

calls = sa.Table(
    "calls", metadata,
    sa.Column("id", sa.Uuid(as_uuid=False), primary_key=True),
    sa.Column("external_id", sa.String(200), nullable=True),
    sa.Column("agent_id", sa.String(100), nullable=False),
    sa.Column("call_date", sa.Date, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("failure_reason", sa.Text, nullable=True),
    sa.Column("rubric_id", sa.String(100), nullable=False),
    sa.Column("rubric_version", sa.String(50), nullable=False),
    sa.Column("policy_pack_id", sa.String(100), nullable=False),
    sa.Column("policy_pack_version", sa.String(50), nullable=False),
    sa.Column("channels", sa.String(32), nullable=False),
    sa.Column("source", sa.String(16), nullable=False),
    sa.Column("input_kind", sa.String(16), nullable=False),
    sa.Column("input_path", sa.Text, nullable=True),
    sa.Column("input_url", sa.Text, nullable=True),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
    # The API key that uploaded the call (None: the webhook or the command line). A key without a role
    # that reads every call reads only its own calls, and learns no other call's id. No foreign key:
    # like the audit log, the call names its submitter even after the key is gone.
    sa.Column("submitted_by_key_id", sa.String(36), nullable=True),
    # How the conversation was held (call, chat, email, im) when the sender said so; None: the input
    # says, else audio is a call and a transcript a chat. (`channels` is the recording's layout.)
    sa.Column("channel", sa.String(16), nullable=True),
    sa.UniqueConstraint("external_id", name="uq_calls_external_id"),
    sa.CheckConstraint("status IN ('queued', 'processing', 'done', 'failed')", name="ck_calls_status"),
    sa.CheckConstraint("source IN ('upload', 'webhook', 'cli')", name="ck_calls_source"),
    sa.CheckConstraint("input_kind IN ('audio', 'transcript')", name="ck_calls_input_kind"),
    sa.Index("ix_calls_status", "status"),
    # The listings' order (newest call date first) and their cursors, over all calls and per agent.
    sa.Index("ix_calls_listing", "call_date", "created_at", "id"),
    sa.Index("ix_calls_agent_listing", "agent_id", "call_date", "created_at", "id"),
)

scorecards = sa.Table(
    "scorecards", metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("call_id", sa.Uuid(as_uuid=False), sa.ForeignKey("calls.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("agent_id", sa.String(100), nullable=False),
    sa.Column("call_date", sa.Date, nullable=False),
    sa.Column("score", sa.Float, nullable=False),
    sa.Column("passed", sa.Boolean, nullable=False),
    sa.Column("auto_fail", sa.Boolean, nullable=False),
    sa.Column("rubric_id", sa.String(100), nullable=False),
    sa.Column("rubric_version", sa.String(50), nullable=False),
    sa.Column("rubric_sha256", sa.String(64), nullable=False),
    sa.Column("data", JSONType, nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    # True on exactly one version per call, the newest: every view reads only the latest version,
    # and a flag answers that from an index instead of a GROUP BY over all versions. Kept in the
    # transaction that adds a version; rows inserted without it are first versions, hence the default.
    sa.Column("latest", sa.Boolean, nullable=False, server_default=sa.true()),
    # How many items the scorecard lists for a person to check (its `to_check`): the review queue takes them.
    sa.Column("to_check", sa.Integer, nullable=False, server_default="0"),
    # How many outdated-policy violations it lists: each sends the call to review, whatever it costs.
    sa.Column("outdated", sa.Integer, nullable=False, server_default="0"),
    # True while a FAIL resting on weak evidence waits for a reviewer (the scorecard's `provisional`,
    # cleared when a reviewer rules on it).
    sa.Column("provisional", sa.Boolean, nullable=False, server_default=sa.false()),
    # How many findings the scorecard lists (its `findings`, e.g. `certification_lapsed`): they change
    # no score, but the review queue takes the call.
    sa.Column("findings", sa.Integer, nullable=False, server_default="0"),
    # The verdict after reviews, when a reviewer changed something: aggregates read these first.
    sa.Column("reviewed_score", sa.Float, nullable=True),
    sa.Column("reviewed_passed", sa.Boolean, nullable=True),
    sa.Column("reviewed_auto_fail", sa.Boolean, nullable=True),
    sa.Column("reviewed_violations", JSONType, nullable=True),
    # True while a call under dual review has a reviewer's verdict that a second reviewer has not yet
    # agreed with (QA_DUAL_REVIEW): the call stays in the review queue, and the columns above keep
    # only what two reviewers agreed on.
    sa.Column("second_review", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.UniqueConstraint("call_id", "version", name="uq_scorecards_call_version"),
    sa.Index("ix_scorecards_agent_date", "agent_id", "call_date"),
    sa.Index("ix_scorecards_call_date", "call_date"),
    # Covers an agent's aggregate over a date range without reading the table.
    sa.Index("ix_scorecards_agent_latest", "agent_id", "latest", "call_date", "score", "passed", "auto_fail",
             "created_at"),
)


def _rules_table(name: str) -> sa.Table:
    return sa.Table(
        name, metadata,
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(100), nullable=False),
        sa.Column("version", sa.String(50), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("yaml_text", sa.Text, nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.UniqueConstraint("id", "version", name=f"uq_{name}_id_version"),
    )


rubrics = _rules_table("rubrics")
policy_packs = _rules_table("policy_packs")

api_keys = sa.Table(
    "api_keys", metadata,
    sa.Column("id", sa.Uuid(as_uuid=False), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("key_hash", sa.String(64), nullable=False),
    # The key's first characters ("qak_" and eight more): enough to recognise it, far too few to use it.
    sa.Column("prefix", sa.String(16), nullable=True),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("revoked", sa.Boolean, nullable=False, server_default=sa.false()),
    # The teams and vendors whose calls the key reads (JSON lists; both null: every call its role reads).
    sa.Column("scope_teams", JSONType, nullable=True),
    sa.Column("scope_vendors", JSONType, nullable=True),
    # An agent's key: the agent whose own calls it reads (required for role agent, none for the others).
    sa.Column("scope_agent", sa.String(100), nullable=True),
    sa.UniqueConstraint("key_hash", name="uq_api_keys_key_hash"),
    sa.CheckConstraint("role IN ('admin', 'qa', 'telephony', 'supervisor', 'agent')",
                       name="ck_api_keys_role"),
    sa.CheckConstraint("(role = 'agent') = (scope_agent IS NOT NULL)", name="ck_api_keys_agent"),
)

# A reviewer's verdict on one criterion or violation of a call's scorecard. Rows are only ever added:
# the newest row per target is the reviewed verdict, the earlier ones are its history.
reviews = sa.Table(
    "reviews", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("call_id", sa.Uuid(as_uuid=False), sa.ForeignKey("calls.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("scorecard_version", sa.Integer, nullable=False),
    sa.Column("target_kind", sa.String(16), nullable=False),
    sa.Column("target_id", sa.String(100), nullable=False),
    sa.Column("action", sa.String(16), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("reviewer_key_id", sa.Uuid(as_uuid=False), nullable=False),
    sa.Column("reviewer_name", sa.String(200), nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.CheckConstraint("target_kind IN ('criterion', 'violation', 'to_check', 'verdict')",
                       name="ck_reviews_target_kind"),
    sa.CheckConstraint("action IN ('override_pass', 'override_fail', 'dismiss', 'restore', 'confirm')",
                       name="ck_reviews_action"),
    sa.CheckConstraint("length(trim(reason)) > 0", name="ck_reviews_reason"),
    sa.Index("ix_reviews_call", "call_id", "id"),
)

# Who read or changed what, and when. No foreign keys: the trail outlives the calls and keys it names.
# `details` is short and never holds personal data (no transcript text, no reasons).
audit_log = sa.Table(
    "audit_log", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", Timestamp, nullable=False),
    sa.Column("key_id", sa.String(36), nullable=True),
    sa.Column("key_name", sa.String(200), nullable=True),
    sa.Column("role", sa.String(16), nullable=True),
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("target_kind", sa.String(16), nullable=True),
    sa.Column("target_id", sa.String(200), nullable=True),
    sa.Column("details", sa.String(200), nullable=True),
    sa.Index("ix_audit_log_at", "at"),
    sa.Index("ix_audit_log_target", "target_id", "at"),
    sa.Index("ix_audit_log_key", "key_id", "at"),
)

# A request to rescore stored calls with a stored rubric (and optionally a policy pack), worked by a
# worker; `summary` is the impact report's summary once it is done. No foreign key to the API key:
# like the audit log, the run names who asked even after the key is gone.
STORING_RUN = "status IN ('queued', 'running') AND NOT dry_run"

rescore_runs = sa.Table(
    "rescore_runs", metadata,
    sa.Column("id", sa.Uuid(as_uuid=False), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("rubric_id", sa.String(100), nullable=False),
    sa.Column("rubric_version", sa.String(50), nullable=False),
    sa.Column("policy_pack_id", sa.String(100), nullable=True),
    sa.Column("policy_pack_version", sa.String(50), nullable=True),
    sa.Column("since", sa.Date, nullable=True),
    sa.Column("until", sa.Date, nullable=True),
    sa.Column("dry_run", sa.Boolean, nullable=False),
    sa.Column("requested_by_key_id", sa.String(36), nullable=True),
    sa.Column("requested_by_name", sa.String(200), nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("started_at", Timestamp, nullable=True),
    sa.Column("finished_at", Timestamp, nullable=True),
    sa.Column("summary", JSONType, nullable=True),
    sa.Column("failure_reason", sa.Text, nullable=True),
    sa.CheckConstraint("status IN ('queued', 'running', 'done', 'failed')", name="ck_rescore_runs_status"),
    # A policy pack is named with its version, or not at all (each call keeps its own).
    sa.CheckConstraint("(policy_pack_id IS NULL) = (policy_pack_version IS NULL)",
                       name="ck_rescore_runs_policy_pack"),
    sa.Index("ix_rescore_runs_created", "created_at"),
    sa.Index("ix_rescore_runs_status", "status"),
    # One storing run per rubric at a time (dry runs store nothing): two requests that ask at the
    # same moment cannot both pass a check made before the insert, so the database decides.
    sa.Index("uq_rescore_runs_one_storing", "rubric_id", unique=True,
             sqlite_where=sa.text(STORING_RUN), postgresql_where=sa.text(STORING_RUN)),
)

# A signed-in web session, kept until it expires or its holder signs out (the row is deleted, so a
# cookie copied before signing out stops working in every API process). `id` is the SHA-256 of the
# session id the cookie carries: the table alone lets nobody in.
web_sessions = sa.Table(
    "web_sessions", metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("key_id", sa.Uuid(as_uuid=False), sa.ForeignKey("api_keys.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("expires_at", Timestamp, nullable=False),
    sa.Index("ix_web_sessions_expires", "expires_at"),
)

# An agent's certification: a name, the rubric and policy pack ids it covers (a JSON list), the days it
# is valid. One row per agent, name and issue date (a renewal is a new row). `notified_expiry` is the
# expiry date a `certification.expiring` notice was sent for: a corrected expiry is noticed again.
certifications = sa.Table(
    "certifications", metadata,
    sa.Column("id", sa.Uuid(as_uuid=False), primary_key=True),
    sa.Column("agent_id", sa.String(100), nullable=False),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("covers", JSONType, nullable=False),
    sa.Column("issued_on", sa.Date, nullable=False),
    sa.Column("expires_on", sa.Date, nullable=False),
    sa.Column("notified_expiry", sa.Date, nullable=True),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
    sa.UniqueConstraint("agent_id", "name", "issued_on", name="uq_certifications_agent_name_issued"),
    sa.CheckConstraint("issued_on <= expires_on", name="ck_certifications_dates"),
    sa.Index("ix_certifications_expires", "expires_on"),
)

# An agent completed the refresher for a policy pack version on a day; one row per agent and version.
training_records = sa.Table(
    "training_records", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("agent_id", sa.String(100), nullable=False),
    sa.Column("pack_id", sa.String(100), nullable=False),
    sa.Column("pack_version", sa.String(50), nullable=False),
    sa.Column("completed_on", sa.Date, nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.UniqueConstraint("agent_id", "pack_id", "pack_version", name="uq_training_records_agent_version"),
    sa.Index("ix_training_records_pack", "pack_id", "pack_version"),
)

# An agent's team and vendor from `since` to `until` (inclusive; null: still there). One row per agent and
# start date; an agent's periods do not overlap (the service checks), so a call's date finds at most one.
team_memberships = sa.Table(
    "team_memberships", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("agent_id", sa.String(100), nullable=False),
    sa.Column("team", sa.String(100), nullable=False),
    sa.Column("vendor", sa.String(100), nullable=False),
    sa.Column("since", sa.Date, nullable=False),
    sa.Column("until", sa.Date, nullable=True),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
    sa.UniqueConstraint("agent_id", "since", name="uq_team_memberships_agent_since"),
    sa.CheckConstraint("until IS NULL OR since <= until", name="ck_team_memberships_dates"),
    sa.Index("ix_team_memberships_team", "team"),
    sa.Index("ix_team_memberships_vendor", "vendor"),
)

# An agent saw a scorecard version (once per version: acknowledging again changes nothing).
acknowledgements = sa.Table(
    "acknowledgements", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("call_id", sa.Uuid(as_uuid=False), sa.ForeignKey("calls.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("scorecard_version", sa.Integer, nullable=False),
    sa.Column("agent_id", sa.String(100), nullable=False),
    sa.Column("key_id", sa.String(36), nullable=False),
    sa.Column("key_name", sa.String(200), nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.UniqueConstraint("call_id", "scorecard_version", name="uq_acknowledgements_call_version"),
)

# An agent's dispute of a criterion or violation of a scorecard version, and QA's resolution: upheld
# (the verdict stands) or overturned (a review of the target, `review_id`, changed it). Rows are kept.
OPEN_DISPUTE = "status = 'open'"

disputes = sa.Table(
    "disputes", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("call_id", sa.Uuid(as_uuid=False), sa.ForeignKey("calls.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("scorecard_version", sa.Integer, nullable=False),
    sa.Column("rubric_id", sa.String(100), nullable=False),
    sa.Column("agent_id", sa.String(100), nullable=False),
    sa.Column("call_date", sa.Date, nullable=False),
    sa.Column("target_kind", sa.String(16), nullable=False),
    sa.Column("target_id", sa.String(100), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("raised_by_key_id", sa.String(36), nullable=False),
    sa.Column("raised_by_name", sa.String(200), nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("resolution_reason", sa.Text, nullable=True),
    sa.Column("resolved_by_key_id", sa.String(36), nullable=True),
    sa.Column("resolved_by_name", sa.String(200), nullable=True),
    sa.Column("resolved_at", Timestamp, nullable=True),
    sa.Column("review_id", sa.Integer, nullable=True),
    sa.CheckConstraint("target_kind IN ('criterion', 'violation')", name="ck_disputes_target_kind"),
    sa.CheckConstraint("status IN ('open', 'upheld', 'overturned')", name="ck_disputes_status"),
    sa.CheckConstraint("length(trim(reason)) > 0", name="ck_disputes_reason"),
    sa.CheckConstraint("(status = 'open') = (resolved_at IS NULL)", name="ck_disputes_resolved"),
    sa.Index("ix_disputes_call", "call_id", "id"),
    sa.Index("ix_disputes_status", "status", "id"),
    # One open dispute per target of a call: two agents' tabs posting at once cannot both open one.
    sa.Index("uq_disputes_one_open", "call_id", "target_kind", "target_id", unique=True,
             sqlite_where=sa.text(OPEN_DISPUTE), postgresql_where=sa.text(OPEN_DISPUTE)),
)

# A calibration session: a set of calls scored by several reviewers independently, to see how far they
# agree with each other and with the machine. Its answers never change a scorecard. No foreign key to
# the key that opened it: like rescore runs, the session names who asked even after the key is gone.
calibration_sessions = sa.Table(
    "calibration_sessions", metadata,
    sa.Column("id", sa.Uuid(as_uuid=False), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("created_by_key_id", sa.String(36), nullable=True),
    sa.Column("created_by_name", sa.String(200), nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("closed_at", Timestamp, nullable=True),
    sa.Column("closed_by_name", sa.String(200), nullable=True),
    sa.CheckConstraint("status IN ('open', 'closed')", name="ck_calibration_sessions_status"),
    sa.Index("ix_calibration_sessions_created", "created_at"),
)

# The calls of a session, each pinned to the scorecard version the session was opened with (a rescore
# during the session changes nothing a reviewer is asked). Erasing a call takes it out of its sessions.
calibration_calls = sa.Table(
    "calibration_calls", metadata,
    sa.Column("session_id", sa.Uuid(as_uuid=False),
              sa.ForeignKey("calibration_sessions.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("call_id", sa.Uuid(as_uuid=False), sa.ForeignKey("calls.id", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("scorecard_version", sa.Integer, nullable=False),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Index("ix_calibration_calls_call", "call_id"),
)

# The keys asked to score a session's calls, named as they were when it opened.
calibration_reviewers = sa.Table(
    "calibration_reviewers", metadata,
    sa.Column("session_id", sa.Uuid(as_uuid=False),
              sa.ForeignKey("calibration_sessions.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("key_id", sa.String(36), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("position", sa.Integer, nullable=False),
)

# One reviewer's answers for one call of a session (JSON: criteria and violations by id); sent again
# while the session is open, it replaces the earlier sheet.
calibration_sheets = sa.Table(
    "calibration_sheets", metadata,
    sa.Column("session_id", sa.Uuid(as_uuid=False),
              sa.ForeignKey("calibration_sessions.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("call_id", sa.Uuid(as_uuid=False), sa.ForeignKey("calls.id", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("reviewer_key_id", sa.String(36), primary_key=True),
    sa.Column("answers", JSONType, nullable=False),
    sa.Column("submitted_at", Timestamp, nullable=False),
)

# The aggregates' summary of the latest scorecards, one row per agent, call date and rubric: what the
# agent, team and vendor views add up instead of reading every scorecard. The storage layer keeps it in
# the transaction of every write that changes what it sums (`storage.rollups`). `team` and `vendor` are
# the agent's membership on that date (null: none), set on write and when memberships change.
scorecard_rollups = sa.Table(
    "scorecard_rollups", metadata,
    sa.Column("agent_id", sa.String(100), primary_key=True),
    sa.Column("call_date", sa.Date, primary_key=True),
    sa.Column("rubric_id", sa.String(100), primary_key=True),
    sa.Column("team", sa.String(100), nullable=True),
    sa.Column("vendor", sa.String(100), nullable=True),
    sa.Column("calls", sa.Integer, nullable=False, server_default="0"),
    # Sums and counts over the verdicts after review (where a reviewer changed them), like the views'.
    sa.Column("score_sum", sa.Float, nullable=False, server_default="0"),
    sa.Column("passed", sa.Integer, nullable=False, server_default="0"),
    sa.Column("auto_fail", sa.Integer, nullable=False, server_default="0"),
    sa.Column("provisional", sa.Integer, nullable=False, server_default="0"),
    sa.Column("prohibited", sa.Integer, nullable=False, server_default="0"),
    sa.Column("outdated_policy", sa.Integer, nullable=False, server_default="0"),
    # The newest scorecard counted here (its seq): the criterion views list criteria in its order.
    sa.Column("newest_seq", sa.Integer, nullable=True),
    sa.Index("ix_scorecard_rollups_date", "call_date"),
    sa.Index("ix_scorecard_rollups_team", "team", "call_date"),
    sa.Index("ix_scorecard_rollups_vendor", "vendor", "call_date"),
)

# Per criterion of each `scorecard_rollups` row: how many of its latest scorecards the criterion applied
# to and how many passed it (the automatic verdicts, as the criterion view reads them), with the title
# and section those scorecards give it; `newest_seq` and `position` are the newest scorecard there
# listing it and its place in that scorecard's list. Kept with its row, under the row's lock.
criterion_rollups = sa.Table(
    "criterion_rollups", metadata,
    sa.Column("agent_id", sa.String(100), primary_key=True),
    sa.Column("call_date", sa.Date, primary_key=True),
    sa.Column("rubric_id", sa.String(100), primary_key=True),
    sa.Column("criterion_id", sa.String(200), primary_key=True),
    sa.Column("team", sa.String(100), nullable=True),
    sa.Column("vendor", sa.String(100), nullable=True),
    sa.Column("applied", sa.Integer, nullable=False),
    sa.Column("passed", sa.Integer, nullable=False),
    sa.Column("title", sa.Text, nullable=True),
    sa.Column("section", sa.Text, nullable=True),
    sa.Column("newest_seq", sa.Integer, nullable=False),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Index("ix_criterion_rollups_date", "call_date"),
    sa.Index("ix_criterion_rollups_team", "team", "call_date"),
    sa.Index("ix_criterion_rollups_vendor", "vendor", "call_date"),
    sa.Index("ix_criterion_rollups_seq", "newest_seq"),
)

# The criterion rollup summed per team, vendor, call date, rubric and criterion: what the team and vendor
# comparisons read (a team's agents share its rows).
group_criterion_rollups = sa.Table(
    "group_criterion_rollups", metadata,
    sa.Column("team", sa.String(100), primary_key=True),
    sa.Column("vendor", sa.String(100), primary_key=True),
    sa.Column("call_date", sa.Date, primary_key=True),
    sa.Column("rubric_id", sa.String(100), primary_key=True),
    sa.Column("criterion_id", sa.String(200), primary_key=True),
    sa.Column("applied", sa.Integer, nullable=False),
    sa.Column("passed", sa.Integer, nullable=False),
    sa.Column("title", sa.Text, nullable=True),
    sa.Column("section", sa.Text, nullable=True),
    sa.Index("ix_group_criterion_rollups_date", "call_date"),
)
