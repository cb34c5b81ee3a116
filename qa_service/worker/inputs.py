"""A call's input over its life: a plain file for each run (downloaded or decrypted), then deleted,
or sealed when a setting keeps inputs; a failed call's input kept for a retry for a while.

Everything goes through the input store (storage/objects.py): a local folder or an object store.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from qa_service.errors import ConfigError, InputError
from qa_service.settings import Settings
from qa_service.storage.fetch import fetch_recording
from qa_service.storage.inputs import is_sealed
from qa_service.storage.objects import InputStore, ObjectMissing
from qa_service.storage.repository import Repository, StoredCall

log = logging.getLogger(__name__)


@contextmanager
def call_input(call: StoredCall, repo: Repository, settings: Settings, inputs: InputStore) -> Iterator[Path]:
    """The call's input as a plain local file for the length of one run.

    A sealed input processed again (a retry) is decrypted into a copy for this run only, so a run that
    fails leaves it sealed; an object store's input is downloaded into a private copy the same way.
    """
    with ExitStack() as run:
        path: Path | None = None
        if call.input_path:
            try:
                path = run.enter_context(inputs.local_copy(call.input_path, settings.encryption_key))
            except ObjectMissing:
                path = None
            except ValueError:  # a reference of the other kind of store
                where = "an object store" if call.input_path.startswith("s3://") else "a local folder"
                raise ConfigError(f"the call's input was stored in {where} before QA_STORAGE_URL changed; "
                                  "score it with a worker on the old setting, or submit it again") from None
        if path is None and call.input_url:
            ref = fetch_recording(call.input_url, inputs, call.id, settings)
            repo.set_input_path(call.id, ref)
            path = run.enter_context(inputs.local_copy(ref))
        if path is None:
            raise InputError("the call's input is not in QA_STORAGE_DIR or QA_STORAGE_URL (deleted after "
                             "processing, or stored where this worker cannot see it); submit it again")
        yield path


def discard_input(call: StoredCall, repo: Repository, settings: Settings, inputs: InputStore) -> None:
    """A done call's input (or a failed one's that no retry could use): deleted, or sealed when a
    setting keeps inputs."""
    keep = settings.keep_raw_transcript if call.input_kind == "transcript" else settings.keep_raw_audio
    if keep and settings.encryption_key:  # Settings refuses to keep inputs without a key
        _seal(call, repo, settings.encryption_key, inputs)
        return
    inputs.delete_input(call.id)
    repo.set_input_path(call.id, None)


def keep_failed_input(call: StoredCall, repo: Repository, settings: Settings, inputs: InputStore) -> None:
    """A failed call's input, kept for a retry: sealed when a key is set, plain otherwise (private
    either way); deleted at once when QA_FAILED_INPUT_RETENTION_HOURS is 0. Never raises, so the
    failure it follows is what the caller sees."""
    try:
        if settings.failed_input_retention_hours == 0:
            inputs.delete_input(call.id)
            repo.set_input_path(call.id, None)
        elif settings.encryption_key:
            _seal(call, repo, settings.encryption_key, inputs)
        else:
            inputs.remove_leftovers(call.id)
    except Exception:  # the maintenance pass seals or deletes it later (discard_leftover_inputs)
        log.exception("could not seal or delete the input of failed call %s", call.id)


def _seal(call: StoredCall, repo: Repository, key: str, inputs: InputStore) -> None:
    """Seal the call's input unless it is sealed already, and remove what a killed run left beside it."""
    # Read again: the row passed in may predate the run that downloaded the recording.
    ref = repo.get_call(call.id).input_path
    inputs.remove_leftovers(call.id)
    if ref is not None and not is_sealed(ref):
        try:
            repo.set_input_path(call.id, inputs.seal(ref, key))
        except ObjectMissing:  # sealed and recorded by another run meanwhile, or deleted
            pass


def discard_leftover_inputs(repo: Repository, settings: Settings, inputs: InputStore) -> int:
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
        inputs.delete_input(call.id)
        repo.set_input_path(call.id, None)
        expired += 1
    statuses = ["done", "failed"] if settings.encryption_key else ["done"]
    left = repo.calls_with_plain_input(statuses)
    for call in left:
        if call.status == "done":
            discard_input(call, repo, settings, inputs)
        else:
            keep_failed_input(call, repo, settings, inputs)
    if expired:
        log.info("deleted the inputs of %d call(s) that failed more than %g h ago", expired,
                 settings.failed_input_retention_hours)
    if left:
        log.info("deleted or sealed the plain inputs %d ended call(s) left behind", len(left))
    return expired + len(left)
