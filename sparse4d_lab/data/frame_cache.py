"""Decoded video frames, stored once at the network's size and shared by every epoch, job, study and sweep trial.

A video of a long keyframe interval must be decoded from its last keyframe up to every frame read, so a strided
or shuffled read of the videos themselves pays for frames it throws away, and pays again every epoch and job. The
cache decodes each video once, front to back, keeps only the frames a config selects, resized to ``out_wh``, and
stores them in a format that reads in well under a millisecond a frame:

* ``raw``: one ``[T, H, W, 3]`` uint8 ``.npy`` read memory-mapped: lossless (the pixels of the direct read).
* ``jpeg``: one JPEG a frame in a single file with an offset table: lossy (PSNR stated in README), ~10x smaller.

An entry is one (video, selected frames, size, format) in ``<cache_dir>/frames/<key>/``, keyed by the video's
path and the selection; its ``manifest.json``, written last, holds the video's fingerprint (size, modification
time and a digest of its first and last MiB) and every file's SHA-256. An entry whose video changed, or whose files
do not match, is rebuilt, never used. Builds happen in a temporary folder renamed into place under a file lock, so
concurrent jobs build an entry once and never read a half-written one; an interrupted build leaves the entries it
finished, and the next one picks up from there.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..checksum import file_sha256
from ..locks import file_lock
from .config import default_cache_dir
from .media import PARALLEL_THREAD_TYPE, RESIZE, THREAD_TYPE, MediaError, VideoFrames, encode_image

log = logging.getLogger(__name__)

FORMATS = ("raw", "jpeg")
VERSION = 1  # bump when an entry's layout or the decoding that fills it changes
_VERIFIED: set[Path] = set()  # entries this process has checked against their manifest


@dataclass(frozen=True)
class FrameEntry:
    """The cached frames of one video: which source frames, at which size, in which format."""

    video: Path
    fps: float
    frames: tuple[int, ...]  # source frame indices, increasing
    out_wh: tuple[int, int]
    format: str = "raw"
    quality: int = 95  # JPEG quality (``jpeg`` only)

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ValueError(f"data.frame_cache: unknown format {self.format!r}; valid: {', '.join(FORMATS)} or null")

    @property
    def key(self) -> str:
        """The entry's folder name: the video's path and everything that decides the stored pixels."""
        frames = hashlib.sha256(np.asarray(self.frames, np.int64).tobytes()).hexdigest()
        quality = self.quality if self.format == "jpeg" else None
        text = f"{VERSION}|{self.video.resolve()}|{frames}|{self.out_wh}|{self.format}|{quality}|{RESIZE}"
        return hashlib.sha256(text.encode()).hexdigest()[:24]

    def folder(self, cache_dir: str | Path | None) -> Path:
        return (Path(cache_dir) if cache_dir is not None else default_cache_dir()) / "frames" / self.key

    @property
    def frame_bytes(self) -> int:
        return self.out_wh[0] * self.out_wh[1] * 3


def fingerprint(path: Path) -> dict[str, Any]:
    """What tells a changed video apart without reading it all: size, modification time, its first and last MiB."""
    stat = path.stat()
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read(1 << 20))
        if stat.st_size > 2 << 20:
            f.seek(-(1 << 20), os.SEEK_END)
            h.update(f.read(1 << 20))
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "head_tail_sha256": h.hexdigest()}


# ----------------------------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------------------------


def _write(entry: FrameEntry, folder: Path, progress: Callable[[int], None], thread_type: str) -> dict[str, str]:
    """Decode the entry's frames front to back into ``folder``; the files' names -> SHA-256."""
    reader = VideoFrames(entry.video, entry.fps, entry.out_wh, thread_type=thread_type)
    w, h = entry.out_wh
    done = 0
    try:
        if entry.format == "raw":
            out = np.lib.format.open_memmap(folder / "frames.npy", "w+", np.uint8, (len(entry.frames), h, w, 3))
            for i, index in enumerate(entry.frames):
                out[i] = reader.read(index)
                progress(index + 1 - done)
                done = index + 1
            out.flush()
            del out
        else:
            offsets = [0]
            with open(folder / "frames.jpg", "wb") as f:
                for index in entry.frames:
                    jpeg = encode_image(reader.read(index), "JPEG", quality=entry.quality)
                    offsets.append(offsets[-1] + f.write(jpeg))
                    progress(index + 1 - done)
                    done = index + 1
            np.save(folder / "offsets.npy", np.asarray(offsets, np.int64))
    finally:
        reader.close()
    return {p.name: file_sha256(p) for p in sorted(folder.iterdir())}


def _matches(entry: FrameEntry, folder: Path) -> bool:
    """True only if the manifest describes this entry, the video is unchanged and every file matches its hash."""
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
        if manifest.get("version") != VERSION or manifest.get("fingerprint") != fingerprint(entry.video):
            return False
        files = manifest["files"]
        return all(file_sha256(folder / name) == digest for name, digest in files.items())
    except (OSError, ValueError, KeyError, TypeError):
        return False


def ensure_entry(
    entry: FrameEntry,
    cache_dir: str | Path | None = None,
    progress: Callable[[int], None] | None = None,
    thread_type: str = THREAD_TYPE,
) -> Path:
    """The folder of a verified entry, built (or rebuilt) first if needed. ``progress(n)`` counts decoded frames;
    ``thread_type`` is the decoder's (``media``: alone, or beside other decoders)."""
    folder = entry.folder(cache_dir)
    if folder in _VERIFIED:
        return folder
    with file_lock(folder.with_name(folder.name + ".lock")):
        if folder.exists() and _matches(entry, folder):
            _VERIFIED.add(folder)
            return folder
        if folder.exists():
            log.info("frame cache %s is stale or partial (%s): rebuilding it", folder, entry.video)
            shutil.rmtree(folder)
        tmp = folder.with_name(f".tmp-{folder.name}-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            files = _write(entry, tmp, progress or (lambda n: None), thread_type)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        manifest = {
            "version": VERSION,
            "video": str(entry.video.resolve()),
            "fingerprint": fingerprint(entry.video),
            "frames": list(entry.frames),
            "out_wh": list(entry.out_wh),
            "format": entry.format,
            "quality": entry.quality if entry.format == "jpeg" else None,
            "resize": RESIZE,
            "files": files,
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest))
        tmp.rename(folder)
        _VERIFIED.add(folder)
        return folder


def is_cached(entry: FrameEntry, cache_dir: str | Path | None = None) -> bool:
    """Whether the entry exists and matches its video (hashes its files: not free on a large cache)."""
    folder = entry.folder(cache_dir)
    if folder not in _VERIFIED and folder.exists() and _matches(entry, folder):
        _VERIFIED.add(folder)
    return folder in _VERIFIED


def decode_cost(entry: FrameEntry) -> int:
    """Source frames the build decodes: the video is read front to back up to the last selected frame."""
    return entry.frames[-1] + 1 if entry.frames else 0


@dataclass(frozen=True)
class Estimate:
    """What building entries will cost, from decoding (and storing) the first frames of the first video."""

    decode_frames: int  # source frames to decode
    stored_frames: int
    seconds: float  # with ``workers`` videos at a time
    bytes: int

    def __str__(self) -> str:
        return (
            f"{self.stored_frames} frames to store ({self.bytes / 1e9:.2f} GB), {self.decode_frames} source frames "
            f"to decode: about {self.seconds / 60:.1f} min"
        )


def estimate(entries: Sequence[FrameEntry], workers: int | None = None, sample: int = 30) -> Estimate:
    """Time and disk of building ``entries``, measured on ``sample`` frames of the first one."""
    decode = sum(decode_cost(e) for e in entries)
    stored = sum(len(e.frames) for e in entries)
    if not entries:
        return Estimate(0, 0, 0.0, 0)
    first = entries[0]
    reader = VideoFrames(first.video, first.fps, first.out_wh)
    try:
        start = time.perf_counter()
        frames = [reader.read(i) for i in range(min(sample, decode_cost(first)))]
        per_frame = (time.perf_counter() - start) / len(frames)
    finally:
        reader.close()
    jpeg = first.format == "jpeg"
    per_stored = len(encode_image(frames[-1], "JPEG", quality=first.quality)) if jpeg else first.frame_bytes
    return Estimate(decode, stored, decode * per_frame / _workers(workers, len(entries)), stored * per_stored)


def _workers(asked: int | None, entries: int) -> int:
    """Videos decoded at a time: as asked (default one per core), at most one per entry."""
    return max(1, min(asked or os.cpu_count() or 1, entries or 1))


def build(
    entries: Sequence[FrameEntry],
    cache_dir: str | Path | None = None,
    workers: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[Path]:
    """Ensure every entry, ``workers`` videos at a time (default: one per core; the decoder's own threads idle)."""
    workers = _workers(workers, len(entries))
    if workers == 1:
        return [ensure_entry(e, cache_dir, progress) for e in entries]
    with ThreadPoolExecutor(workers) as pool:  # PyAV and Pillow release the GIL while they decode and encode
        return list(pool.map(lambda e: ensure_entry(e, cache_dir, progress, PARALLEL_THREAD_TYPE), entries))


# ----------------------------------------------------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------------------------------------------------


class CachedFrames:
    """Frames of one cache entry by source frame index, as ``media.VideoFrames`` serves them.

    Files open on the first read (in the process that reads: a DataLoader worker maps its own view).
    """

    def __init__(self, entry: FrameEntry, folder: Path):
        self.entry, self.folder = entry, folder
        self.position = {int(f): i for i, f in enumerate(entry.frames)}
        self._data: Any = None
        self._offsets: np.ndarray | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"entry": self.entry, "folder": self.folder, "position": self.position}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._data, self._offsets = None, None

    def close(self) -> None:
        self._data, self._offsets = None, None

    def _open(self) -> None:
        if self.entry.format == "raw":
            self._data = np.load(self.folder / "frames.npy", mmap_mode="r")
        else:
            self._data = np.memmap(self.folder / "frames.jpg", np.uint8, "r")
            self._offsets = np.load(self.folder / "offsets.npy")

    def read(self, index: int) -> np.ndarray:
        """Frame ``index`` as ``[H, W, 3]`` uint8; MediaError if the entry does not hold it or cannot be read."""
        if index not in self.position:
            raise MediaError(f"{self.entry.video}: frame {index} is not in the frame cache {self.folder}")
        try:
            if self._data is None:
                self._open()
            i = self.position[index]
            if self.entry.format == "raw":
                return np.array(self._data[i])
            start, stop = self._offsets[i], self._offsets[i + 1]
            with Image.open(io.BytesIO(self._data[start:stop].tobytes())) as image:
                return np.asarray(image.convert("RGB"))
        except (OSError, ValueError) as err:
            self.close()
            raise MediaError(f"{self.folder}: frame {index} cannot be read from the frame cache ({err})") from err


def cached_readers(entries: Iterable[FrameEntry], cache_dir: str | Path | None = None) -> list[CachedFrames]:
    """Readers of verified entries, each built first if it is missing or stale."""
    return [CachedFrames(e, ensure_entry(e, cache_dir)) for e in entries]
