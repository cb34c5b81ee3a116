"""A call's input over its life: a plain file for each run (downloaded or decrypted), then deleted,
or sealed when a setting keeps inputs; a failed call's input kept for a retry for a while."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from qa_service.errors import ConfigError, InputError
from qa_service.settings import Settings
from qa_service.storage.fetch import fetch_recording
from qa_service.storage.inputs import is_sealed, remove_input, remove_run_copies, seal_input, unsealed
from qa_service.storage.repository import Repository, StoredCall

log = logging.getLogger(__name__)


@contextmanager
def call_input(call: StoredCall, repo: Repository, settings: Settings) -> Iterator[Path]:
    """The call's input as a plain file for the length of one run."""
    if call.input_path and Path(call.input_path).is_file():
        path = Path(call.input_path)
        if not is_sealed(path):
            yield path
            return
        if not settings.encryption_key:
            raise ConfigError("the call's input is sealed: set QA_ENCRYPTION_KEY to the key that sealed it "
                              "and retry")
        # A sealed input processed again (a retry): decrypted into a copy for this run only, so a run
        # that fails leaves it sealed.
        with unsealed(path, settings.encryption_key) as plain:
            yield plain
        return
    if call.input_url:
        path = fetch_recording(call.input_url, settings.storage_dir, call.id, settings)
        repo.set_input_path(call.id, str(path))
        yield path
        return
    raise InputError("the call's input is not in QA_STORAGE_DIR (deleted after processing, or the storage "
                     "folder is not shared with this worker); submit it again")


def discard_input(call: StoredCall, repo: Repository, settings: Settings) -> None:
    """A done call's input (or a failed one's that no retry could use): deleted, or sealed when a
    setting keeps inputs."""
    keep = settings.keep_raw_transcript if call.input_kind == "transcript" else settings.keep_raw_audio
    if keep and settings.encryption_key:  # Settings refuses to keep inputs without a key
        _seal(call, repo, settings.encryption_key, settings)
        return
    remove_input(settings.storage_dir, call.id)
    repo.set_input_path(call.id, None)


def keep_failed_input(call: StoredCall, repo: Repository, settings: Settings) -> None:
    """A failed call's input, kept for a retry: sealed when a key is set, plain otherwise (its file is
    private either way); deleted at once when QA_FAILED_INPUT_RETENTION_HOURS is 0. Never raises, so
    the failure it follows is what the caller sees."""
    try:
        if settings.failed_input_retention_hours == 0:
            remove_input(settings.storage_dir, call.id)
            repo.set_input_path(call.id, None)
        elif settings.encryption_key:
            _seal(call, repo, settings.encryption_key, settings)
        else:
            remove_run_copies(settings.storage_dir, call.id)
    except Exception:  # the maintenance pass seals or deletes it later (discard_leftover_inputs)
        log.exception("could not seal or delete the input of failed call %s", call.id)


def _seal(call: StoredCall, repo: Repository, key: str, settings: Settings) -> None:
    """Seal the call's input unless it is sealed already, and remove what a killed run left beside it."""
    # Read again: the row passed in may predate the run that downloaded the recording.
    path = repo.get_call(call.id).input_path
    remove_run_copies(settings.storage_dir, call.id)
    if path is not None and not is_sealed(path) and Path(path).is_file():
        repo.set_input_path(call.id, str(seal_input(Path(path), key)))


def discard_leftover_inputs(repo: Repository, settings: Settings) -> int:
    """Settle the inputs that ended calls still hold; returns how many calls it changed.

    The inputs of failed calls older than QA_FAILED_INPUT_RETENTION_HOURS are deleted, sealed or not.
    A done call's plain input (its worker was killed between storing the scorecard and deleting the
    input) is deleted or sealed as the run would have done, and with a key set a failed call's plain
    input (its worker was killed before sealing it, or it failed before a key was set) is sealed.
    """
    cutoff = datetime.now(UTC) - timedelta(hours=settings.failed_input_retention_hours)
    expired = 0
    for call in repo.failed_calls_with_input(failed_before=cutoff):
        if repo.get_call(call.id).status != "failed":
            continue  # retried since the query: its run needs the input
        remove_input(settings.storage_dir, call.id)
        repo.set_input_path(call.id, None)
        expired += 1
    statuses = ["done", "failed"] if settings.encryption_key else ["done"]
    left = repo.calls_with_plain_input(statuses)
    for call in left:
        if call.status == "done":
            discard_input(call, repo, settings)
        else:
            keep_failed_input(call, repo, settings)
    if expired:
        log.info("deleted the inputs of %d call(s) that failed more than %g h ago", expired,
                 settings.failed_input_retention_hours)
    if left:
        log.info("deleted or sealed the plain inputs %d ended call(s) left behind", len(left))
    return expired + len(left)
