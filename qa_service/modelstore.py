"""Find the models on disk: the speech model (a packaged name or a local CTranslate2 Whisper folder)
and the voice model that tells speakers apart on mono calls (a packaged name or a local file).

Packaged models are listed in `models/manifest.json` (name, source packages, files, sha256).
A model whose files sit whole in one package ("in-place") is used where it is installed; a
model split across packages ("join") is joined once into the cache folder, checked against
its sha256 and renamed into place atomically, so concurrent workers never see half a model.
Nothing here downloads: a missing file is a ConfigError that names it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

from qa_service.errors import ConfigError

log = logging.getLogger(__name__)

MANIFEST_PATH = Path(__file__).resolve().parents[1] / "models" / "manifest.json"
# faster-whisper fetches a tokenizer from the hub when tokenizer.json is missing, so all three are required.
REQUIRED_FILES = ("model.bin", "config.json", "tokenizer.json")
WHISPER_FORMAT = "ctranslate2-whisper"
VOICE_FORMAT = "resemblyzer-ge2e"
_CHUNK = 1 << 20


def resolve_model(name: str, cache_dir: Path, manifest_path: Path = MANIFEST_PATH) -> Path:
    """Return the folder of a complete CTranslate2 Whisper model for a packaged name or a local path."""
    packaged = _packaged_models(manifest_path, WHISPER_FORMAT)
    if name in packaged:
        entry = packaged[name]
        if entry["materialise"] == "in-place":
            folder = _in_place_folder(entry)
            _verify_once(folder, list(entry["files"]))
        else:
            folder = _materialise(entry, Path(cache_dir))
    else:
        folder = Path(name).expanduser()
        if not folder.is_dir():
            known = ", ".join(sorted(packaged))
            raise ConfigError(
                f"speech model {name!r} is neither a packaged model ({known}) nor an existing folder"
            )
    check_model_folder(folder)
    return folder


def resolve_voice_model(name: str, manifest_path: Path = MANIFEST_PATH) -> Path:
    """Return the checkpoint file of the speaker encoder for a packaged name or a local file."""
    packaged = _packaged_models(manifest_path, VOICE_FORMAT)
    if name in packaged:
        entry = packaged[name]
        try:
            folder = _in_place_folder(entry)
        except ConfigError as exc:
            hints = "; ".join(p["install"] for p in entry.get("packages", []) if p.get("install"))
            raise ConfigError(f"{exc} (install it with: {hints}; or set QA_SPEAKER_MODEL=none)") from None
        _verify_once(folder, list(entry["files"]))
        return folder / entry["files"][0]["name"]
    path = Path(name).expanduser()
    if not path.is_file():
        known = ", ".join(sorted(packaged))
        raise ConfigError(f"voice model {name!r} is neither a packaged model ({known}) nor an existing file")
    return path


def check_model_folder(folder: Path) -> None:
    """Raise ConfigError naming the first file a CTranslate2 Whisper folder lacks."""
    for file in REQUIRED_FILES:
        if not (folder / file).is_file():
            raise ConfigError(f"speech model folder {folder} has no {file}")


def packaged_names(manifest_path: Path = MANIFEST_PATH) -> list[str]:
    """Names of the speech models the manifest knows how to materialise."""
    return sorted(_packaged_models(manifest_path, WHISPER_FORMAT))


def _packaged_models(manifest_path: Path, model_format: str) -> dict[str, dict[str, Any]]:
    models = _manifest(manifest_path)
    return {name: m for name, m in models.items() if m.get("format", WHISPER_FORMAT) == model_format}


@cache
def _manifest(manifest_path: Path) -> dict[str, dict[str, Any]]:
    try:
        data = json.loads(manifest_path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"model manifest {manifest_path} is missing") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"model manifest {manifest_path} is not valid JSON (line {exc.lineno})") from None
    try:
        return {m["name"]: m for m in data["models"]}
    except (KeyError, TypeError):
        raise ConfigError(f"model manifest {manifest_path} has no list of models with names") from None


def _package_dir(module: str) -> Path:
    # find_spec locates the package without running its code.
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"model package {module!r} is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


def _part_path(part: dict[str, str]) -> Path:
    path = _package_dir(part["module"]) / part["path"]
    if not path.is_file():
        raise ConfigError(f"model package {part['module']!r} has no {part['path']}")
    return path


def _in_place_folder(entry: dict[str, Any]) -> Path:
    folders = {_part_path(f["parts"][0]).parent for f in entry["files"]}
    if len(folders) != 1 or any(len(f["parts"]) != 1 for f in entry["files"]):
        raise ConfigError(f"model manifest entry {entry['name']!r} is not a single in-place folder")
    return folders.pop()


def _sha256(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        with path.open("rb") as fh:
            while chunk := fh.read(_CHUNK):
                digest.update(chunk)
    return digest.hexdigest()


_verified: set[tuple[str, int, int]] = set()


def _verify_once(folder: Path, specs: list[dict[str, Any]]) -> None:
    """Check sizes every time (cheap) and hashes once per process per file version."""
    for spec in specs:
        path = folder / spec["name"]
        if not path.is_file():
            raise ConfigError(f"speech model folder {folder} has no {spec['name']}")
        st = path.stat()
        if st.st_size != spec["size"]:
            raise ConfigError(f"{path} has {st.st_size} bytes, the manifest says {spec['size']}")
        key = (str(path), st.st_size, st.st_mtime_ns)
        if key in _verified:
            continue
        if _sha256([path]) != spec["sha256"]:
            raise ConfigError(f"{path} does not match its sha256 in the model manifest")
        _verified.add(key)


def _materialise(entry: dict[str, Any], cache_dir: Path) -> Path:
    """Join a split model into cache_dir once; later calls only check sizes."""
    final = cache_dir / entry.get("cache_folder", entry["name"])
    specs = list(entry["files"])
    if final.is_dir() and all(
        (final / s["name"]).is_file() and (final / s["name"]).stat().st_size == s["size"] for s in specs
    ):
        return final
    if final.exists():
        # A folder with wrong sizes was damaged after it was written: rebuild it rather than guess.
        log.warning("rebuilding damaged model cache folder %s", final)
        shutil.rmtree(final)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=cache_dir))
    try:
        for spec in specs:
            parts = [_part_path(p) for p in spec["parts"]]
            target = tmp / spec["name"]
            digest = hashlib.sha256()
            with target.open("wb") as out:
                for part in parts:
                    with part.open("rb") as fh:
                        while chunk := fh.read(_CHUNK):
                            digest.update(chunk)
                            out.write(chunk)
            if digest.hexdigest() != spec["sha256"]:
                raise ConfigError(
                    f"joined {spec['name']} for model {entry['name']!r} does not match its sha256"
                )
        os.chmod(tmp, 0o755)
        try:
            tmp.rename(final)
        except OSError:
            # Another process finished first; its folder is as good as ours.
            if not final.is_dir():
                raise
        else:
            log.info("materialised speech model %s into %s", entry["name"], final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final
