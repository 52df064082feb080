"""Lazy frames of real recordings: videos (PyAV), image files, images and depth maps inside HDF5 files.

Nothing is decoded until a frame is asked for, and then only that frame (plus the frames a video decoder must pass
through to reach it), resized to the network's size. Open files never cross a process boundary: readers close them
before any fork (a DataLoader worker would otherwise inherit decoder threads that no longer exist and hang) and
when pickled, and reopen them on the next read. A frame that cannot be read while training (a corrupt stretch of a
video, a truncated image) becomes a black image with a logged warning and a count, so an epoch never dies on one
bad frame; files that cannot be opened at all are refused earlier, when the scene is loaded (``probe_video``).
"""

from __future__ import annotations

import io
import logging
import os
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import h5py
import numpy as np
from PIL import Image

log = logging.getLogger(__name__)

# How videos are decoded and scaled to the network's size, as measured fastest (``benchmarks/bench_realdata.py``, 2
# cores, 1080p H.264 to 704x384): one video decodes fastest with FFmpeg's frame and slice threads (AUTO: 92 fps
# against 65-80), two at once fastest single-threaded (NONE: 108 fps together against 84-104); swscale's area
# filter is faster than its bilinear one (6.4 against 8.3 ms a frame) and closer to the area average (41.9 dB).
THREAD_TYPE = "AUTO"
PARALLEL_THREAD_TYPE = "NONE"  # for a decoder that runs beside others (the frame cache's build)
RESIZE = "AREA"

# A file reference: a path, or (HDF5 file, dataset name) as OVPKL's ``data_path`` holds them.
FileRef = str | tuple[str, str]


_OPEN: weakref.WeakSet = weakref.WeakSet()  # readers that hold open files


def _close_before_fork() -> None:
    for reader in list(_OPEN):
        reader.close()


os.register_at_fork(before=_close_before_fork)


class MediaError(RuntimeError):
    """A frame or file that cannot be decoded; the message names the file (and frame)."""


@dataclass(frozen=True)
class VideoInfo:
    """What a scene needs to know about a video before training: size, rate and length."""

    width: int
    height: int
    fps: float
    num_frames: int


def probe_video(path: str | Path) -> VideoInfo:
    """Open a video and decode its first frame: a file that fails here is refused before training starts."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise MediaError(f"{path}: holds no video stream")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate
            if not rate:
                raise MediaError(f"{path}: the video stream has no frame rate")
            first = next(container.decode(stream), None)
            if first is None:
                raise MediaError(f"{path}: no frame could be decoded")
            count = stream.frames
            if not count and stream.duration is not None:  # some containers do not store the frame count
                count = round(float(stream.duration * stream.time_base) * float(rate))
            return VideoInfo(first.width, first.height, float(rate), int(count))
    except (av.error.FFmpegError, OSError) as err:
        raise MediaError(f"{path}: not a readable video ({err}); re-download or re-encode it") from err


class VideoFrames:
    """Frames of one video by index, each decoded on demand and resized to ``out_wh``.

    Reading forward (what the temporal sampler does) decodes straight on; a jump backwards, or further ahead than
    the longest keyframe interval seen so far, seeks to the nearest keyframe first.
    """

    def __init__(
        self,
        path: str | Path,
        fps: float,
        out_wh: tuple[int, int],
        gop_guess: int = 250,
        thread_type: str = THREAD_TYPE,
    ):
        self.path, self.fps, self.out_wh = str(path), float(fps), (int(out_wh[0]), int(out_wh[1]))
        self.gop_guess = gop_guess  # x264's default keyframe interval, until the file shows its own
        self.thread_type = thread_type
        self._reset()

    def _reset(self) -> None:
        self._container: Any = None
        self._stream: Any = None
        self._frames: Any = None
        self._pending: av.VideoFrame | None = None  # decoded but not yet consumed
        self._next = 0  # index of the frame the decoder yields next; -1 right after a seek
        self._origin = 0  # pts of frame 0
        self._last_key: int | None = None
        self._gop_seen = 0
        self._served: tuple[int, np.ndarray] | None = None  # the last frame read: two slots may ask for it in turn

    def __getstate__(self) -> dict[str, Any]:
        keys = ("path", "fps", "out_wh", "gop_guess", "thread_type")
        return {k: getattr(self, k) for k in keys}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._reset()

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
        _OPEN.discard(self)
        self._reset()

    def _open(self) -> None:
        self._container = av.open(self.path)
        _OPEN.add(self)
        self._stream = self._container.streams.video[0]
        self._stream.thread_type = self.thread_type
        self._frames = self._container.decode(self._stream)
        self._pending = next(self._frames, None)
        if self._pending is None:
            raise MediaError(f"{self.path}: no frame could be decoded")
        self._origin = self._pending.pts or 0

    def _index(self, frame: av.VideoFrame) -> int:
        if frame.pts is not None:
            return round(float((frame.pts - self._origin) * self._stream.time_base) * self.fps)
        if self._next < 0:
            raise MediaError(f"{self.path}: frames without timestamps cannot be sought; re-encode the video")
        return self._next

    def _seek(self, index: int) -> None:
        target = self._origin + int(index / self.fps / float(self._stream.time_base))
        self._container.seek(target, stream=self._stream, backward=True, any_frame=False)
        self._frames = self._container.decode(self._stream)
        self._pending, self._next, self._last_key = None, -1, None

    def read(self, index: int) -> np.ndarray:
        """Frame ``index`` as ``[H, W, 3]`` uint8 at ``out_wh``; MediaError if it cannot be decoded."""
        if self._served is not None and self._served[0] == index:
            return self._served[1]
        try:
            if self._container is None:
                self._open()
            if index < self._next or index - self._next > (self._gop_seen or self.gop_guess):
                self._seek(index)
            while True:
                frame = self._pending if self._pending is not None else next(self._frames, None)
                self._pending = None
                if frame is None:
                    raise MediaError(f"{self.path}: the video ends before frame {index}")
                current = self._index(frame)
                if frame.key_frame:
                    if self._last_key is not None and current > self._last_key:
                        self._gop_seen = max(self._gop_seen, current - self._last_key)
                    self._last_key = current
                if self._next == -1 and current > index:  # the seek landed past the frame: decode from the start
                    self._seek(0)
                    continue
                self._next = current + 1
                if current == index:
                    w, h = self.out_wh
                    image = frame.to_ndarray(format="rgb24", width=w, height=h, interpolation=RESIZE)
                    self._served = (index, image)
                    return image
                if current > index:
                    raise MediaError(f"{self.path}: frame {index} is missing (the stream jumps to {current})")
        except (av.error.FFmpegError, OSError) as err:
            self.close()  # the decoder state is unknown: reopen on the next read
            raise MediaError(f"{self.path}: frame {index} cannot be decoded ({err})") from err
        except MediaError:
            self.close()
            raise


def read_bytes_or_array(ref: FileRef, h5: h5py.File | None = None) -> bytes | np.ndarray:
    """The stored object of a reference: file bytes, or an HDF5 dataset as encoded bytes or a raw array.

    ``h5`` is the reference's HDF5 file, already open (readers keep theirs open between frames).
    """
    if isinstance(ref, str):
        return Path(ref).read_bytes()
    if h5 is None:
        with h5py.File(ref[0], "r") as f:
            return read_bytes_or_array(ref, f)
    data = h5[ref[1]][()]
    if isinstance(data, bytes):
        return data
    data = np.asarray(data)
    if data.dtype.kind == "V" or (data.dtype == np.uint8 and data.ndim == 1):
        return data.tobytes()  # an encoded image (PNG / JPEG) stored as a byte string
    return data


def encode_image(array: np.ndarray, fmt: str, **options: Any) -> bytes:
    """An array as the bytes of an image file (Pillow's ``fmt``, e.g. PNG or JPEG with ``quality=95``)."""
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def decode_image(ref: FileRef, out_wh: tuple[int, int], depth: bool = False, h5: h5py.File | None = None) -> np.ndarray:
    """One image (``[H, W, 3]`` uint8) or depth map (``[H, W]`` uint16, resized by nearest neighbour)."""
    try:
        data = read_bytes_or_array(ref, h5)
        image = Image.open(io.BytesIO(data)) if isinstance(data, bytes) else Image.fromarray(data)
        if not depth:
            image = image.convert("RGB")
        if image.size != tuple(out_wh):
            resample = Image.Resampling.NEAREST if depth else Image.Resampling.BOX
            image = image.resize(tuple(out_wh), resample)
        array = np.asarray(image)
        return array.astype(np.uint16) if depth else np.ascontiguousarray(array, dtype=np.uint8)
    except (OSError, KeyError, ValueError, TypeError) as err:
        raise MediaError(f"{describe(ref)}: cannot be decoded as an image ({err})") from err


def image_size(ref: FileRef) -> tuple[int, int]:
    """(W, H) of a stored image."""
    try:
        data = read_bytes_or_array(ref)
        if isinstance(data, bytes):
            with Image.open(io.BytesIO(data)) as image:
                return image.size
        return int(data.shape[1]), int(data.shape[0])
    except (OSError, KeyError, ValueError) as err:
        raise MediaError(f"{describe(ref)}: cannot be read as an image ({err})") from err


def describe(ref: FileRef) -> str:
    return ref if isinstance(ref, str) else f"{ref[0]}[{ref[1]}]"


def missing_refs(refs: Sequence[FileRef]) -> set[FileRef]:
    """The references whose file (or HDF5 dataset) does not exist; each HDF5 file is opened once."""
    missing: set[FileRef] = set()
    by_file: dict[str, list[str]] = {}
    for ref in refs:
        if isinstance(ref, str):
            if not os.path.isfile(ref):
                missing.add(ref)
        else:
            by_file.setdefault(ref[0], []).append(ref[1])
    for path, keys in by_file.items():
        try:
            with h5py.File(path, "r") as f:
                missing |= {(path, key) for key in keys if key not in f}
        except OSError:
            missing |= {(path, key) for key in keys}
    return missing


class ImageFrames:
    """Frames of one camera stored as images (files or HDF5 datasets), one reference per frame.

    HDF5 files stay open between frames.
    """

    def __init__(self, refs: Sequence[FileRef], out_wh: tuple[int, int], depth: bool = False):
        self.refs, self.out_wh, self.depth = list(refs), (int(out_wh[0]), int(out_wh[1])), depth
        self._files: dict[str, h5py.File] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {"refs": self.refs, "out_wh": self.out_wh, "depth": self.depth}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._files = {}

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files = {}
        _OPEN.discard(self)

    def read(self, index: int) -> np.ndarray:
        ref = self.refs[index]
        h5 = None
        if not isinstance(ref, str):
            if ref[0] not in self._files:
                try:
                    self._files[ref[0]] = h5py.File(ref[0], "r")
                except OSError as err:
                    raise MediaError(f"{ref[0]}: cannot be opened ({err})") from err
                _OPEN.add(self)
            h5 = self._files[ref[0]]
        return decode_image(ref, self.out_wh, self.depth, h5)


class CameraFrames:
    """``[T, N, H, W, 3]`` images (or ``[T, N, H, W]`` depth) of a camera rig, decoded when indexed.

    ``frames[t]`` is the source frame that scene frame ``t`` shows; ``readers[n]`` reads camera ``n``. Indexing
    with ``t`` or ``(t, n)`` mirrors the in-memory arrays of the synthetic scenes, so the dataset and the preview
    treat both alike. An unreadable frame is served black (zero depth), logged and counted in ``failures``.
    """

    def __init__(self, readers: Sequence[Any], frames: Sequence[int], frame_shape: tuple[int, ...], dtype: Any):
        self.readers, self.frames = list(readers), np.asarray(frames, dtype=np.int64)
        self.frame_shape, self.dtype = tuple(frame_shape), np.dtype(dtype)
        self.failures = [0] * len(self.readers)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.frames), len(self.readers), *self.frame_shape)

    def __len__(self) -> int:
        return len(self.frames)

    def _read(self, t: int, n: int) -> np.ndarray:
        try:
            return self.readers[n].read(int(self.frames[t]))
        except MediaError as err:
            self.failures[n] += 1
            if self.failures[n] <= 3 or self.failures[n] % 100 == 0:  # a broken file must not flood the log
                log.warning("%s; served a blank frame instead (%d so far from this camera)", err, self.failures[n])
            return np.zeros(self.frame_shape, self.dtype)

    def __getitem__(self, index: int | tuple[int, int]) -> np.ndarray:
        if isinstance(index, tuple):
            t, n = index
            return self._read(int(t), int(n))
        t = int(index)
        if not -len(self) <= t < len(self):
            raise IndexError(f"frame {t} out of range [0, {len(self)})")
        return np.stack([self._read(t % len(self), n) for n in range(len(self.readers))])
