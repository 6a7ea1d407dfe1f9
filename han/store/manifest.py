"""A run directory's manifest.json: han's marker, versions, and every artifact's size and SHA-256.

The marker (`MARKER_KEY`) is how han recognises a run directory as its own: a folder is never
emptied, overwritten or written into by name unless its manifest carries it. Artifacts are checked
against their recorded size and SHA-256 whenever a stage loads them. A manifest key is a relative
POSIX path inside the run directory; a key that is absolute or climbs out of it (`..`) is refused,
never followed. `Manifest` is the base of `han.store.rundir.RunDir`. Each stage's peak memory
(`han.util.memory`) is kept under "stage_peak_memory", one entry a stage, replaced by its latest run.
"""

from __future__ import annotations

import platform
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any

from han.errors import RunDirError
from han.util.atomic import read_json, write_json_atomic
from han.util.distribution import installed_version
from han.util.hashing import file_sha256
from han.util.memory import PeakMemory

MARKER_KEY = "han_run_directory"  # manifest.json field: the run directory format han wrote
RUN_DIRECTORY_FORMAT = 1


def package_versions() -> dict[str, str]:
    """Versions of Python and the libraries that decide a run's results."""
    from importlib.metadata import PackageNotFoundError, version

    versions = {"python": platform.python_version(), "platform": platform.platform()}
    versions["han"] = installed_version() or "not installed"  # the han-classifier distribution
    for name in ("torch", "spacy", "gensim", "datasets", "numpy", "pyarrow", "scikit-learn"):
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def is_han_manifest(data: Any) -> bool:
    """Whether parsed manifest.json content is han's: it carries the marker (or, from han before the marker,
    han's version and an artifact list)."""
    if not isinstance(data, dict):
        return False
    if data.get(MARKER_KEY) == RUN_DIRECTORY_FORMAT:
        return True
    versions = data.get("versions")
    return isinstance(versions, dict) and "han" in versions and isinstance(data.get("artifacts"), dict)


def checked_key(key: str, manifest_path: Path) -> str:
    """A manifest artifact key, refused unless it is a plain relative path inside the run directory."""
    path = PurePosixPath(key)
    if not key or path.is_absolute() or any(part in ("..", "") for part in path.parts) or "\\" in key:
        raise RunDirError(
            f"{manifest_path}: artifact key {key!r} points outside the run directory (the manifest was altered); "
            "refusing to follow it"
        )
    return key


class Manifest:
    """The manifest of the run directory `root`: reading, updating, recording and verifying artifacts."""

    root: Path

    @property
    def manifest_path(self) -> Path:
        return self.root / "manifest.json"

    def read_manifest(self) -> dict[str, Any]:
        """The contents of manifest.json, or {} when there is none yet."""
        return read_json(self.manifest_path) if self.manifest_path.exists() else {}

    def is_han_run(self) -> bool:
        """Whether `root` holds a manifest.json that han wrote (its marker), whatever else it holds."""
        if not self.manifest_path.is_file():
            return False
        try:
            return is_han_manifest(read_json(self.manifest_path))
        except RunDirError:
            return False

    def update_manifest(self, **fields: Any) -> dict[str, Any]:
        """Merge top-level fields into manifest.json (stage sections are replaced whole); it carries the marker."""
        manifest = self.read_manifest()
        manifest[MARKER_KEY] = RUN_DIRECTORY_FORMAT
        manifest.setdefault("created", datetime.now(timezone.utc).isoformat(timespec="seconds"))
        manifest["versions"] = package_versions()
        manifest.update(fields)
        write_json_atomic(self.manifest_path, manifest)
        return manifest

    def record_stage_peaks(self, **peaks: dict[str, Any]) -> None:
        """Merge each stage's peak memory (`PeakMemory.as_dict()`) into the manifest's "stage_peak_memory",
        keeping the other stages' entries."""
        recorded = self.read_manifest().get("stage_peak_memory")
        self.update_manifest(stage_peak_memory={**(recorded if isinstance(recorded, dict) else {}), **peaks})

    @contextmanager
    def measuring_stage(self, stage: str, record: bool = True) -> Iterator[PeakMemory]:
        """Measure the block's peak memory; when the block ends without an error (and `record`), merge it into
        the manifest's "stage_peak_memory" under `stage`."""
        with PeakMemory() as peak:
            yield peak
        if record:
            self.record_stage_peaks(**{stage: peak.as_dict()})

    def _relative(self, path: Path) -> str:
        try:
            return Path(path).relative_to(self.root).as_posix()
        except ValueError:
            raise RunDirError(f"{path}: not inside the run directory {self.root}") from None

    @staticmethod
    def _files_of(path: Path) -> list[Path]:
        if path.is_dir():
            return sorted(p for p in path.rglob("*") if p.is_file() or p.is_symlink())
        return [path]

    def listed_artifacts(self, manifest: dict[str, Any] | None = None) -> dict[str, Any]:
        """The manifest's artifact entries, every key checked (`checked_key`)."""
        manifest = manifest if manifest is not None else self.read_manifest()
        artifacts = manifest.get("artifacts")
        if not isinstance(artifacts, dict):
            return {}
        for key in artifacts:
            checked_key(key, self.manifest_path)
        return artifacts

    def forget_artifacts(self, *paths: Path, manifest: dict[str, Any] | None = None) -> None:
        """Drop `paths` (files, or everything under folders) from the manifest's artifact list."""
        manifest = manifest if manifest is not None else self.read_manifest()
        artifacts = dict(self.listed_artifacts(manifest))
        for path in paths:
            rel = self._relative(path)
            for key in [k for k in artifacts if k == rel or k.startswith(rel + "/")]:
                del artifacts[key]
        manifest["artifacts"] = artifacts
        write_json_atomic(self.manifest_path, manifest)

    def record_artifacts(self, *paths: Path) -> None:
        """List `paths` (files, or every file under folders) in the manifest with size and SHA-256."""
        artifacts = dict(self.listed_artifacts())
        for path in paths:
            rel = self._relative(path)
            for key in [k for k in artifacts if k == rel or k.startswith(rel + "/")]:
                del artifacts[key]
            for file in self._files_of(Path(path)):
                artifacts[self._relative(file)] = {"bytes": file.stat().st_size, "sha256": file_sha256(file)}
        self.update_manifest(artifacts=dict(sorted(artifacts.items())))

    def refuse_links(self, path: Path) -> None:
        """Refuse `path` when it, or a folder between the run directory and it, is a symbolic link: a run
        directory's files are its own, never read (or removed) elsewhere through a link."""
        rel = Path(self._relative(path))
        for part in [*reversed(rel.parents[:-1]), rel] if rel.parts else []:
            if (self.root / part).is_symlink():
                raise RunDirError(
                    f"{self.root / part}: is a symbolic link; han uses only the run directory's own files "
                    "(replace the link with what it points to, or copy the run)"
                )

    def _hint_for(self, rel: str) -> str:
        if rel.startswith(("model/", "train_log")):
            return "rerun `han train --overwrite` or restore the file"
        if rel == "metrics.json":
            return "delete it and rerun `han evaluate`"
        return "rerun `han preprocess --overwrite` (or `han run --overwrite`) or restore the file"

    def verify_artifacts(self, *paths: Path) -> None:
        """Check `paths` against the manifest's sizes and SHA-256 sums; the first problem is a one-line error.

        A folder must hold exactly the files listed for it: a planted extra file is refused too.
        """
        if not self.manifest_path.exists():
            raise RunDirError(
                f"{self.manifest_path}: missing, so the run's files cannot be verified; rerun `han preprocess --overwrite`"
            )
        manifest = self.read_manifest()
        if not isinstance(manifest.get("artifacts"), dict):
            raise RunDirError(
                f"{self.manifest_path}: lists no artifact checksums (damaged, or written by an older han); "
                f"rerun `han run --overwrite`"
            )
        artifacts = self.listed_artifacts(manifest)
        for path in map(Path, paths):
            rel = self._relative(path)
            self.refuse_links(path)
            if path.is_dir():
                listed = {k: v for k, v in artifacts.items() if k.startswith(rel + "/")}
                if not listed:
                    raise RunDirError(f"{path}: not listed in manifest.json; refusing to load files han did not write")
                for file in self._files_of(path):
                    if self._relative(file) not in listed:
                        raise RunDirError(
                            f"{file}: unexpected file, not listed in manifest.json; refusing to load it (remove it)"
                        )
                items = list(listed.items())
            else:
                if rel not in artifacts:
                    if not path.exists():
                        raise RunDirError(f"{path}: missing from the run directory; {self._hint_for(rel)}")
                    raise RunDirError(f"{path}: not listed in manifest.json; refusing to load a file han did not write")
                items = [(rel, artifacts[rel])]
            for key, entry in items:
                self._verify_file(self.root / key, entry, key)

    def _verify_file(self, path: Path, entry: Any, rel: str) -> None:
        if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str):
            raise RunDirError(f"{self.manifest_path}: damaged entry for {rel}; {self._hint_for(rel)}")
        self.refuse_links(path.parent)
        if path.is_symlink() or not path.is_file():
            raise RunDirError(f"{path}: missing or not a regular file; {self._hint_for(rel)}")
        size = path.stat().st_size
        if size != entry.get("bytes"):
            raise RunDirError(
                f"{path}: {size} bytes but manifest.json records {entry.get('bytes')} (truncated or altered); "
                f"{self._hint_for(rel)}"
            )
        if file_sha256(path) != entry["sha256"]:
            raise RunDirError(
                f"{path}: SHA-256 does not match manifest.json (the file was altered); {self._hint_for(rel)}"
            )
