"""The frame cache of video sources and the loader whose workers own whole sequences, on real MTMC-layout files."""

import json
import shutil
import threading

import numpy as np
import pytest
import torch
from torch.utils.data import get_worker_info

from sparse4d_lab.data import MtmcConfig, MtmcSource, WarehouseConfig, render_scene
from sparse4d_lab.data import frame_cache as fc
from sparse4d_lab.data.__main__ import main as data_cli
from sparse4d_lab.data.dataset import SequenceDataset
from sparse4d_lab.data.export import export_mtmc
from sparse4d_lab.data.loader import SequenceLoader, merge_parts
from sparse4d_lab.data.sampler import TemporalBatchSampler
from sparse4d_lab.errors import ConfigError

CFG = WarehouseConfig(scenes={"train": 2}, frames_per_scene=12, image_size=(96, 64), num_cameras=2)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """Two 12-frame scenes of 2 cameras, H.264 at x264's default 4:2:0 (lossy: the cache must copy the decoder's
    pixels, not the rendered ones)."""
    root = tmp_path_factory.mktemp("mtmc")
    export_mtmc([render_scene(CFG, "train", i) for i in range(2)], root, "train")
    return root


def source(root, cache, **overrides) -> MtmcSource:
    splits = {"train": ("train",), "val": ("train",), "test": ("train",)}
    return MtmcSource(MtmcConfig(root=str(root), splits=splits, image_size=(64, 32), cache_dir=str(cache), **overrides))


def frames(src: MtmcSource) -> np.ndarray:
    return np.stack([np.stack([scene.images[t] for t in range(scene.num_frames)]) for scene in src.scenes("train")])


def test_raw_cache_serves_the_direct_reads_pixels_and_jpeg_stays_close(root, tmp_path):
    fc._VERIFIED.clear()
    direct = frames(source(root, tmp_path, frame_cache=None, frame_stride=3))
    raw = source(root, tmp_path, frame_cache="raw", frame_stride=3)
    raw.prepare()
    assert len(list((tmp_path / "frames").glob("*/manifest.json"))) == 4  # 2 scenes x 2 cameras
    assert all(isinstance(r, fc.CachedFrames) for r in raw.scenes("train")[0].images.readers)
    np.testing.assert_array_equal(frames(raw), direct)  # lossless: the same bytes
    jpeg = frames(source(root, tmp_path, frame_cache="jpeg", frame_stride=3))
    mse = np.mean((jpeg.astype(float) - direct.astype(float)) ** 2)
    assert mse > 0 and 10 * np.log10(255**2 / mse) > 30


def test_entries_are_keyed_by_selection_and_size(root, tmp_path):
    keys = {
        e.key
        for kwargs in ({"frame_stride": 1}, {"frame_stride": 3}, {"frame_stride": 3, "image_size": (96, 64)})
        for e in MtmcSource(
            MtmcConfig(root=str(root), splits={"train": ("train",)}, cache_dir=str(tmp_path), **kwargs)
        ).frame_entries()
    }
    assert len(keys) == 3 * 4


def _entry(root, tmp_path, **kwargs) -> fc.FrameEntry:
    return source(root, tmp_path, frame_stride=2, **kwargs).frame_entries()[0]


def test_a_changed_video_or_a_damaged_entry_is_rebuilt_never_used(root, tmp_path):
    fc._VERIFIED.clear()
    scene_root = tmp_path / "mtmc"
    shutil.copytree(root, scene_root)
    entry = _entry(scene_root, tmp_path)
    folder = fc.ensure_entry(entry, tmp_path)
    before = np.load(folder / "frames.npy")
    # damaged: a flipped byte in the frames (a new process checks the hashes again)
    data = bytearray((folder / "frames.npy").read_bytes())
    data[-1] ^= 0xFF
    (folder / "frames.npy").write_bytes(bytes(data))
    fc._VERIFIED.clear()
    assert not fc.is_cached(entry, tmp_path)
    np.testing.assert_array_equal(np.load(fc.ensure_entry(entry, tmp_path) / "frames.npy"), before)
    # changed: another scene's video in place of this one
    other = scene_root / "train" / "train_0001" / "videos" / entry.video.name
    shutil.copy(other, entry.video)
    fc._VERIFIED.clear()
    assert not fc.is_cached(entry, tmp_path)
    after = np.load(fc.ensure_entry(entry, tmp_path) / "frames.npy")
    direct = source(scene_root, tmp_path, frame_stride=2, frame_cache=None).scenes("train")[0].images
    np.testing.assert_array_equal(after, np.stack([direct[t, 0] for t in range(len(direct))]))
    assert not np.array_equal(after, before)
    assert json.loads((folder / "manifest.json").read_text())["fingerprint"] == fc.fingerprint(entry.video)


def test_an_interrupted_build_keeps_finished_entries_and_resumes(root, tmp_path):
    fc._VERIFIED.clear()
    entries = source(root, tmp_path, frame_stride=2).frame_entries()
    decoded = []

    def stop_in_the_third(n):
        decoded.append(n)
        if sum(decoded) > 2 * 11 + 5:  # each entry decodes frames 0..10 (stride 2 up to frame 10)
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fc.build(entries, tmp_path, workers=1, progress=stop_in_the_third)
    done = [e for e in entries if e.folder(tmp_path).exists()]
    assert done == entries[:2] and not list((tmp_path / "frames").glob(".tmp-*"))
    stamps = [(e.folder(tmp_path) / "manifest.json").stat().st_mtime_ns for e in done]
    fc._VERIFIED.clear()
    decoded.clear()
    fc.build(entries, tmp_path, workers=2, progress=decoded.append)
    assert sum(decoded) == 2 * 11  # only the two unfinished entries were decoded
    assert [(e.folder(tmp_path) / "manifest.json").stat().st_mtime_ns for e in done] == stamps


def test_concurrent_builders_build_an_entry_once(root, tmp_path):
    fc._VERIFIED.clear()
    entry = _entry(root, tmp_path)
    decoded = []
    threads = [threading.Thread(target=fc.ensure_entry, args=(entry, tmp_path, decoded.append)) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(decoded) == fc.decode_cost(entry) == 11


def test_the_cache_command_estimates_builds_and_then_has_nothing_left(root, tmp_path, capsys):
    fc._VERIFIED.clear()
    args = ["cache", "--mtmc", str(root), "--split", "train", "--set", f"cache_dir={tmp_path}", "frame_stride=4"]
    assert data_cli(args) == 0
    out = capsys.readouterr().out
    assert "4 videos, 4 to build" in out and "12 frames to store" in out and "36 source frames to decode" in out
    fc._VERIFIED.clear()
    assert data_cli(args) == 0
    assert "4 videos, 0 to build" in capsys.readouterr().out
    assert data_cli([*args, "frame_cache=null"]) == 2
    assert "data.frame_cache is null" in capsys.readouterr().err


def test_bad_frame_cache_settings_name_the_key(root):
    with pytest.raises(ConfigError, match=r"data\.frame_cache: unknown format 'png'"):
        MtmcConfig(root=str(root), frame_cache="png")
    with pytest.raises(ConfigError, match=r"data\.frame_cache_quality"):
        MtmcConfig(root=str(root), frame_cache="jpeg", frame_cache_quality=0)


# ----------------------------------------------------------------------------------------------------------------
# Workers owning sequences
# ----------------------------------------------------------------------------------------------------------------


class _Frames:
    """[T, N, H, W, 3] images that only say which scene and frame they are (cheap to load)."""

    def __init__(self, scene: int, length: int):
        self.scene, self.length = scene, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, t: int) -> np.ndarray:
        return np.full((1, 2, 2, 3), self.scene * 10 + t, np.uint8)


class _WhoReads(SequenceDataset):
    def __getitem__(self, item):
        sample = super().__getitem__(item)
        info = get_worker_info()
        sample["worker"] = -1 if info is None else info.id
        return sample


def toy_dataset(lengths) -> _WhoReads:
    scenes = [render_scene(WarehouseConfig(scenes={"train": 1}, frames_per_scene=2), "train", 0) for _ in lengths]
    for i, (scene, n) in enumerate(zip(scenes, lengths, strict=True)):
        scene.images = _Frames(i, n)
        scene.timestamps = np.arange(n) / 10.0
        scene.frame_offsets = np.zeros(n + 1, np.int64)  # no objects
    return _WhoReads(scenes)


@pytest.mark.parametrize("train", [True, False])
def test_workers_own_whole_sequences_and_batches_equal_the_single_process_ones(train):
    data = toy_dataset([7, 5, 4, 3, 2])

    def batches(workers):
        sampler = TemporalBatchSampler(data.lengths, 3, shuffle=train, pad=train, clip_len=4 if train else None)
        return list(SequenceLoader(data, sampler, workers))

    single, parallel = batches(0), batches(2)
    assert len(single) == len(parallel) == (8 if train else 7)
    for a, b in zip(single, parallel, strict=True):
        assert set(a) == set(b)
        for key in set(a) - {"worker"}:
            if isinstance(a[key], torch.Tensor):
                torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
            else:
                assert len(a[key]) == len(b[key])
                for x, y in zip(a[key], b[key], strict=True):
                    assert torch.equal(x, y) if isinstance(x, torch.Tensor) else x == y
    slot_readers = [set() for _ in range(3)]
    sequence_readers: dict[int, set[int]] = {}
    for batch in parallel:
        for s, (scene, worker) in enumerate(zip(batch["sequence_id"].tolist(), batch["worker"], strict=True)):
            slot_readers[s].add(worker)
            sequence_readers.setdefault(scene, set()).add(worker)
    assert slot_readers == [{0}, {1}, {0}]  # slot s in worker s % 2, for the whole epoch
    if not train:  # whole sequences, each read by one worker (in training a clip is the unit)
        assert all(len(ws) == 1 for ws in sequence_readers.values()) and len(sequence_readers) == 5


def test_merging_parts_restores_slot_order_and_skips_empty_parts():
    def part(slots):
        return {"img": torch.tensor(slots), "scene": [f"s{s}" for s in slots]}

    merged = merge_parts([part([0, 3]), part([1, 4]), part([2])])  # 5 slots over 3 workers
    assert merged["img"].tolist() == [0, 1, 2, 3, 4] and merged["scene"] == ["s0", "s1", "s2", "s3", "s4"]
    merged = merge_parts([part([0]), part([1]), {}])  # 2 slots left: the last worker's part is empty
    assert merged["img"].tolist() == [0, 1] and merged["scene"] == ["s0", "s1"]
