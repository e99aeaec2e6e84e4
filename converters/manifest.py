"""The artifact manifest (``manifest.json``) and atomic artifact folders."""
from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import platform
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Literal, Protocol

from converters.agreement import Agreement
from converters.calibration import Quantization
from zoo import atomic
from zoo.entry import ModelEntry, Preprocessing
from zoo.env import library_versions
from zoo.weights import WeightsSource

MANIFEST = "manifest.json"
VERSIONED = ("torch", "torchvision", "onnx", "onnxruntime", "onnx2tf", "tensorflow", "keras",
             "ai-edge-litert", "numpy")
ON_DAMAGED = ("reconvert", "refuse")  # what a command does with a damaged artifact folder
# how artifacts are checked against their manifest before reuse: size+mtime, else sha256
# (fast), or the sha256 of every file (full: also a rewrite that kept size and mtime)
VERIFY = ("fast", "full")


@dataclass(frozen=True)
class ArtifactRecord:
    format: str  # a name in ``converters.formats.FORMATS``
    path: str  # relative to the manifest's folder
    layout: str  # NCHW | NHWC
    precision: str  # fp32 | fp16 | int8
    input_permutation: list[int] | None  # canonical NCHW -> this artifact's layout
    size_bytes: int
    sha256: str
    # st_mtime_ns of the file (of the newest file, for a folder) when it was recorded; None
    # in manifests written before it existed, which then always take the full sha256 check
    mtime_ns: int | None = None
    # what wrote it: "torch.onnx", "onnx2tf", "keras" (the Keras model's own export), ...;
    # "" in manifests written before it was recorded
    converter: str = ""
    # how an int8 artifact was quantized and on which photos (calibration hash, digests)
    quantization: Quantization | None = None
    # a TFLite fp16 file's weights that float16 cannot hold, kept in float32, one line each
    # (``converters.tflite_fp16``); None: written before that check, so converted again
    fp32_kept: list[str] | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "ArtifactRecord":
        q = data.get("quantization")
        return cls(**{**data, "quantization": Quantization.from_json(q) if q else None})


@dataclass(frozen=True)
class FileRecord:
    """A file beside the artifacts that a check needs (parity's tensor maps)."""

    path: str  # relative to the manifest's folder
    size_bytes: int
    sha256: str
    mtime_ns: int | None = None


class _Recorded(Protocol):
    path: str
    size_bytes: int
    sha256: str
    mtime_ns: int | None


@dataclass
class Manifest:
    model: str
    weights: WeightsSource
    input_spec: dict[str, Any]
    artifacts: list[ArtifactRecord] = field(default_factory=list)
    step_seconds: dict[str, float] = field(default_factory=dict)
    agreement: list[Agreement] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=dict)
    created: str = ""
    host: dict[str, str] = field(default_factory=dict)
    side_files: list[FileRecord] = field(default_factory=list)
    # what the conversion chose and why (e.g. SavedModel/TFLite from the Keras model because
    # onnx2tf failed), one line each
    notes: list[str] = field(default_factory=list)
    # the model as built (source, builder, preprocessing, head): parity rebuilds the PyTorch
    # reference from it with no catalog look-up; None in manifests written before it existed
    entry: ModelEntry | None = None

    def artifact(self, fmt: str) -> ArtifactRecord:
        for a in self.artifacts:
            if a.format == fmt:
                return a
        raise KeyError(f"{self.model}: no {fmt} artifact in the manifest")

    def to_json(self) -> dict[str, Any]:
        # the typed fields write their own JSON: the weights' derived spec, NaN as null
        return {**asdict(self), "weights": self.weights.to_json(),
                "agreement": [a.to_json() for a in self.agreement],
                "entry": self.entry.to_json() if self.entry else None}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Manifest":
        data = dict(data)
        data["weights"] = WeightsSource.from_json(data["weights"])
        data["artifacts"] = [ArtifactRecord.from_json(a) for a in data.get("artifacts", [])]
        data["agreement"] = [Agreement.from_json(a) for a in data.get("agreement", [])]
        data["side_files"] = [FileRecord(**f) for f in data.get("side_files", [])]
        data["entry"] = ModelEntry.from_json(data["entry"]) if data.get("entry") else None
        return cls(**data)

    def preprocessing(self) -> Preprocessing:
        """The preprocessing the artifacts expect, as recorded when converting."""
        return Preprocessing.from_json(self.input_spec["preprocessing"])

    def model_entry(self) -> ModelEntry:
        """The converted model's entry: the recorded one, else (older manifests) the catalog's."""
        if self.entry is not None:
            return self.entry
        from zoo.registry import get_entry

        return get_entry(self.model)

    def write(self, folder: Path) -> Path:
        self.versions = library_versions(VERSIONED)
        self.created = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        self.host = {"machine": platform.machine(), "python": platform.python_version()}
        return write_json_atomic(folder / MANIFEST, self.to_json())


def load_manifest(folder: Path) -> Manifest:
    path = folder / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"no {MANIFEST} in {folder}: run `make convert` for this model first")
    try:
        return Manifest.from_json(json.loads(path.read_text()))
    except (json.JSONDecodeError, TypeError, KeyError, AttributeError) as exc:
        raise ValueError(f"{path} is corrupt ({exc}); convert the model again") from None


def file_digest(path: Path) -> tuple[int, str]:
    """(size, sha256) of a file, or of a folder's files in sorted order."""
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    h, size = hashlib.sha256(), 0
    for f in files:
        if path.is_dir():
            h.update(str(f.relative_to(path)).encode())
        with f.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        size += f.stat().st_size
    return size, h.hexdigest()


def file_stat(path: Path) -> tuple[int, int]:
    """(size, mtime_ns) of a file, or of a folder: its files' total size and the newest mtime."""
    files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
    stats = [f.stat() for f in files]
    return sum(s.st_size for s in stats), max((s.st_mtime_ns for s in stats), default=0)


def file_record(folder: Path, path: Path) -> FileRecord:
    """Size, sha256 and mtime of ``path`` (a file or folder inside ``folder``)."""
    size, digest = file_digest(path)
    _, mtime = file_stat(path)
    return FileRecord(str(path.relative_to(folder)), size, digest, mtime)


def artifact_record(folder: Path, fmt: str, path: Path, converter: str, *,
                    fp32_kept: list[str] | None = None) -> ArtifactRecord:
    """The manifest record of artifact ``path`` (inside ``folder``) of format ``fmt``; its
    layout and precision come from the format registry."""
    from converters.formats import get_format
    from converters.runners.base import NCHW_TO_NHWC

    spec = get_format(fmt)
    f = file_record(folder, path)
    perm = list(NCHW_TO_NHWC) if spec.layout == "NHWC" else None
    return ArtifactRecord(fmt, f.path, spec.layout, spec.precision, perm, f.size_bytes,
                          f.sha256, f.mtime_ns, converter, fp32_kept=fp32_kept)


@dataclass(frozen=True)
class Damage:
    """One artifact (or side file) that does not match what its manifest recorded."""

    format: str  # the artifact's format, "side file", or "manifest"
    path: Path  # folder / recorded path, as the caller named the folder
    kind: Literal["missing", "size differs", "sha256 differs", "unreadable"]
    detail: str = ""

    def __str__(self) -> str:
        if self.kind == "missing":
            return f"{self.path} is missing{f' ({self.detail})' if self.detail else ''}"
        if self.kind == "unreadable":
            return f"{self.path} is damaged (not a readable manifest)"
        detail = f": {self.detail}" if self.detail else ""
        return f"{self.path} is damaged ({self.kind} from manifest{detail})"


class DamagedArtifactsError(ValueError):
    """Artifacts that differ from their manifest, refused (``--on-damaged refuse``): exit 2."""

    def __init__(self, damage: list[Damage], remedy: str) -> None:
        self.damage = damage
        super().__init__("; ".join(map(str, damage)) + f"; refused (--on-damaged refuse): {remedy}")


def verify_artifacts(folder: Path, manifest: Manifest, *, formats: Iterable[str] | None = None,
                     side_files: bool = True, required: Iterable[str] = (), full: bool = False
                     ) -> list[Damage]:
    """What in ``folder`` no longer matches ``manifest`` (empty: everything does).

    Checks the artifacts of ``formats`` (default: all), the recorded side files (unless
    ``side_files=False``), and that each path in ``required`` exists. Fast path: a file
    whose size and mtime both equal the recorded ones is trusted without reading it; any
    other file (touched, copied without its times, or from a manifest that predates
    mtimes) gets its sha256 computed and compared. A rewrite that restores size and mtime
    passes the fast path: ``full=True`` hashes every file.
    """
    wanted = None if formats is None else set(formats)
    damage = [d for a in manifest.artifacts if wanted is None or a.format in wanted
              if (d := _check_one(folder, a.format, a, full))]
    damage += [d for f in (manifest.side_files if side_files else [])
               if (d := _check_one(folder, "side file", f, full))]
    recorded = {f.path for f in manifest.side_files} if side_files else set()
    damage += [Damage("side file", folder / p, "missing", "parity needs it")
               for p in required if p not in recorded and not (folder / p).exists()]
    return damage


def missing_manifest(folder: Path) -> Damage | None:
    """The damage record of a folder that holds files but no ``manifest.json`` (it was
    deleted, or the folder is someone else's); None for a folder never converted."""
    if (folder / MANIFEST).exists() or not folder.is_dir():
        return None
    held = sum(1 for _ in folder.iterdir())
    return (Damage("manifest", folder / MANIFEST, "missing",
                   f"the folder holds {held} entries but no manifest: nothing in it can be "
                   "trusted") if held else None)


def folder_damage(folder: Path, formats: Iterable[str] | None = None, *, full: bool = False
                  ) -> list[Damage]:
    """What of an artifact folder differs from its manifest: the artifacts of ``formats``
    that it lists (default: all), or the manifest itself (unreadable, or gone from a folder
    that holds files). Empty for a folder never converted."""
    try:
        manifest = load_manifest(folder)
    except FileNotFoundError:
        return [d] if (d := missing_manifest(folder)) else []
    except ValueError:
        return [unreadable_manifest(folder)]
    listed = {a.format for a in manifest.artifacts}
    return verify_artifacts(folder, manifest, side_files=False, full=full,
                            formats=[f for f in (formats or listed) if f in listed])


def add_verify_arguments(p: Any, *, verify: str = "fast", on_damaged: str = "reconvert",
                         what: str = "convert again") -> None:
    """``--on-damaged`` and ``--verify``, in one form for every command that reuses
    artifacts."""
    p.add_argument("--on-damaged", choices=ON_DAMAGED, default=on_damaged,
                   help="artifacts that differ from their manifest (sha256, size, missing, "
                        f"no manifest): {what} (reconvert), or exit 2 naming them (refuse); "
                        f"default {on_damaged}")
    p.add_argument("--verify", choices=VERIFY, default=verify,
                   help="fast: a file whose size and mtime match its manifest is trusted, any "
                        "other is hashed; full: the sha256 of every file (a rewrite that kept "
                        f"size and mtime is caught); default {verify}")


def unreadable_manifest(folder: Path) -> Damage:
    """The damage record of a ``manifest.json`` that ``load_manifest`` rejects as corrupt."""
    return Damage("manifest", folder / MANIFEST, "unreadable")


def _check_one(folder: Path, fmt: str, rec: _Recorded, full: bool) -> Damage | None:
    path = folder / rec.path
    if not path.exists():
        return Damage(fmt, path, "missing", f"listed in {MANIFEST}")
    size, mtime = file_stat(path)
    if size != rec.size_bytes:
        return Damage(fmt, path, "size differs", f"{size} bytes, manifest says {rec.size_bytes}")
    if not full and rec.mtime_ns is not None and mtime == rec.mtime_ns:
        return None
    if file_digest(path)[1] != rec.sha256:
        return Damage(fmt, path, "sha256 differs")
    return None


def act_on_damage(damage: list[Damage], on_damaged: str, *, remedy: str,
                  log: Callable[[str], None]) -> None:
    """``refuse``: raise DamagedArtifactsError; ``reconvert``: log one line per damaged file
    (the caller then converts again)."""
    if not damage:
        return
    if on_damaged == "refuse":
        raise DamagedArtifactsError(damage, remedy)
    if on_damaged != "reconvert":
        raise ValueError(f"on_damaged must be one of {', '.join(ON_DAMAGED)}, not {on_damaged!r}")
    for d in damage:
        log(f"{d}: reconverting")


def write_json_atomic(path: Path, data: Any) -> Path:
    return atomic.write_json(path, data, indent=2, default=str)


@contextlib.contextmanager
def staged_folder(final: Path) -> Iterator[Path]:
    """Yield a hidden staging folder that replaces ``final`` only if the block succeeds.

    A failed or interrupted run leaves no folder that looks finished: the
    staging folder is hidden (``.name.partial-PID``) and removed on error.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_stages(final)
    stage = final.parent / f".{final.name}.partial-{os.getpid()}"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir()
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    old = final.parent / f".{final.name}.old-{os.getpid()}"
    if final.exists():
        os.replace(final, old)
    os.replace(stage, final)
    shutil.rmtree(old, ignore_errors=True)


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` may still write: a zombie (killed, not yet reaped by its new parent,
    as a lost Ray worker's conversion is until the raylet reaps it) no longer can."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):  # no /proc (not Linux), or it just went
        return True
    return state not in ("Z", "X")


def remove_stale_stages(final: Path) -> list[Path]:
    """Remove ``.<name>.partial-PID`` / ``.<name>.old-PID`` folders whose process is gone.

    A run killed with SIGKILL (or a machine that lost power) cannot clean up after
    itself; the next run for the same folder does. A live PID's stage is left alone:
    another conversion may be writing it right now.
    """
    stages = (stage for kind in ("partial", "old")
              for stage in final.parent.glob(f".{final.name}.{kind}-*"))
    return remove_orphans(stages, lambda stage: stage.name.rpartition("-")[2])


def remove_orphans(folders: Iterable[Path], pid_of: Callable[[Path], str]) -> list[Path]:
    """Remove each of ``folders`` whose owning process (``pid_of`` its path: digits, or
    anything else for a folder no process owns) is gone; those removed. A live process's
    folder, this one's included, is left alone."""
    removed = []
    for folder in folders:
        pid = pid_of(folder)
        if pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed
