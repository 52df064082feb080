import dataclasses
import hashlib
import itertools
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from sparse4d_lab import geometry
from sparse4d_lab.data import (
    SequenceDataset,
    TemporalBatchSampler,
    WarehouseConfig,
    WarehouseDataModule,
    collate,
    ensure_dataset,
    load_split,
    render_scene,
)
from sparse4d_lab.data.render import make_camera, render_background, render_frame, shade_body
from sparse4d_lab.data.scene import Body, make_scene
from sparse4d_lab.errors import ConfigError

SMALL = dict(scenes={"train": 2, "val": 1, "test": 1}, frames_per_scene=6, image_size=(96, 64), num_cameras=3)


def small(**overrides) -> WarehouseConfig:
    return WarehouseConfig(**{**SMALL, **overrides})


def digest(data) -> str:
    h = hashlib.sha256()
    for key, value in sorted(vars(data).items()):
        if isinstance(value, np.ndarray):
            h.update(key.encode() + value.tobytes())
    return h.hexdigest()


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"num_cameras": 0}, "num_cameras"),
        ({"image_size": (16, 64)}, "image_size"),
        ({"room_size": (-3.0, 12.0)}, "room_size"),
        ({"objects_per_scene": (-1, 3)}, "objects_per_scene"),
        ({"objects_per_scene": (4, 500)}, "objects_per_scene"),
        ({"camera_height": (3.0, 9.0)}, "camera_height"),
        ({"class_weights": (1.0, 1.0)}, "class_weights"),
        ({"scenes": {"training": 3}}, "scenes"),
        ({"frames_per_scene": 0}, "frames_per_scene"),
    ],
)
def test_impossible_configs_name_the_field(overrides, field):
    with pytest.raises(ConfigError, match=rf"data\.warehouse\.{field}"):
        WarehouseConfig(**overrides)


def test_generation_is_deterministic_and_splits_differ():
    cfg = small()
    a, b = render_scene(cfg, "train", 0), render_scene(cfg, "train", 0)
    assert digest(a) == digest(b)
    assert digest(a) != digest(render_scene(cfg, "val", 0))
    assert digest(a) != digest(render_scene(small(seed=1), "train", 0))


def test_cache_is_keyed_verified_and_rebuilt(tmp_path, caplog):
    cfg = small()
    root = ensure_dataset(cfg, tmp_path / "a", workers=1)
    manifest = json.loads((root / "manifest.json").read_text())
    # An independent build elsewhere writes byte-identical files (what "the same on every machine" rests on).
    other = json.loads((ensure_dataset(cfg, tmp_path / "b", workers=2) / "manifest.json").read_text())
    assert manifest["files"] == other["files"]
    assert set(manifest["files"]) == {"train_0000.npz", "train_0001.npz", "val_0000.npz", "test_0000.npz"}

    # Corrupt one byte: detected and rebuilt, never used.
    victim = root / "val_0000.npz"
    raw = bytearray(victim.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    victim.write_bytes(bytes(raw))
    with caplog.at_level("WARNING"):
        assert ensure_dataset(cfg, tmp_path / "a", workers=1) == root
    assert "corrupt or partial" in caplog.text
    assert json.loads((root / "manifest.json").read_text())["files"] == manifest["files"]

    # A partial cache (no manifest: the build died) is rebuilt too.
    (root / "manifest.json").unlink()
    ensure_dataset(cfg, tmp_path / "a", workers=1)
    assert len(load_split(cfg, "train", tmp_path / "a")) == 2


def test_ground_truth_sits_on_the_rendered_objects():
    cfg = small(image_size=(176, 96), frames_per_scene=3)
    scene = make_scene(cfg, "val", 0)
    checked = 0
    for n in range(cfg.num_cameras):
        cam = make_camera(scene.intrinsics[n], scene.extrinsics[n], scene.image_wh)
        background = render_background(scene, cam)
        alive = np.flatnonzero(scene.present[0])
        boxes = scene.boxes[0, alive]
        bodies = [scene.objects[i] for i in alive]
        canvas, visibility = render_frame(scene, cam, background, boxes, bodies)
        for i, (box, body) in enumerate(zip(boxes, bodies, strict=True)):
            if visibility[i] < 1.0:
                continue
            part = body.parts[np.argmax(body.parts[:, 3:].prod(1))]  # the biggest part is solid at its centre
            centre = geometry.box_points(torch.from_numpy(box), torch.from_numpy(part[None, :3]))
            pix, _, front = geometry.project_points(centre, torch.from_numpy(cam.projection[None]))
            u, v = pix[0, 0].floor().long().tolist()
            if front[0, 0] and 0 <= u < cfg.image_size[0] and 0 <= v < cfg.image_size[1]:
                assert canvas.instance[v, u] == i
                checked += 1
    assert checked >= 3


def test_background_cast_per_rectangle_equals_casting_every_ray_at_every_distractor():
    # Racks' shelves overhang their boxes: a rectangle from the box alone would cut them off.
    cfg = small(image_size=(176, 96))
    scene = make_scene(cfg, "train", 0)
    assert any((np.abs(d.parts[:, :3]) + d.parts[:, 3:6] / 2).max() > 0.5 for d in scene.distractors)
    for n in range(cfg.num_cameras):
        cam = make_camera(scene.intrinsics[n], scene.extrinsics[n], scene.image_wh)
        canvas = render_background(scene, cam)
        empty = render_background(dataclasses.replace(scene, distractors=[]), cam)
        nearest = empty.distance.reshape(-1)
        for d in scene.distractors:
            nearest = np.minimum(nearest, shade_body(cam.origin, cam.rays.reshape(-1, 3), d.box, d, scene.light)[0])
        np.testing.assert_array_equal(canvas.distance.reshape(-1), nearest)


def test_object_behind_a_crate_has_low_visibility():
    cfg = small(image_size=(176, 96), racks=(0, 0), pallets=(0, 0), crates=(0, 0), bins=(0, 0))
    scene = make_scene(cfg, "train", 0)
    cam = make_camera(scene.intrinsics[0], scene.extrinsics[0], scene.image_wh)
    # Put a person 7 m along the camera's view on the floor, and a 2 m crate halfway between.
    forward = cam.rays[cfg.image_size[1] // 2, cfg.image_size[0] // 2]
    ground = cam.origin + forward * (-cam.origin[2] / forward[2])
    person = scene.objects[int(np.argmax(scene.labels == 0))] if (scene.labels == 0).any() else scene.objects[0]
    box = np.array([*ground[:2], person.box[5] / 2, *person.box[3:6], 0.0, 0, 0, 0])
    open_view = render_frame(scene, cam, render_background(scene, cam), box[None], [person])[1][0]
    mid = (cam.origin[:2] + ground[:2]) / 2
    crate = Body(
        np.array([*mid, 1.0, 1.5, 1.5, 2.0, 0.0, 0, 0, 0]),
        np.array([[0, 0, 0, 1, 1, 1.0]]),
        np.array([[0.6, 0.45, 0.3]]),
        np.array([0]),
    )
    scene.distractors = [crate]
    hidden = render_frame(scene, cam, render_background(scene, cam), box[None], [person])[1][0]
    assert open_view == pytest.approx(1.0)
    assert hidden < 0.2


def test_sampler_walks_every_sequence_in_order():
    lengths = [5, 7, 3, 6]
    sampler = TemporalBatchSampler(lengths, batch_size=2, shuffle=True, seed=0, pad=True)
    starts = np.concatenate([[0], np.cumsum(lengths)])
    batches = list(sampler)
    assert len(batches) == len(sampler)
    assert all(len(b) == 2 for b in batches)  # padded: always full
    seen = set()
    for slot in range(2):
        walk = [b[slot] for b in batches]
        assert walk[0][1]  # a slot starts on a first frame
        for (prev, _), (cur, first) in itertools.pairwise(walk):
            if not first:
                assert cur == prev + 1  # consecutive frames of one sequence
            else:
                assert cur in starts  # whole sequences start at their first frame
        seen |= {i for i, _ in walk}
    assert seen == set(range(sum(lengths)))
    # Epochs reshuffle; the same epoch replays exactly.
    sampler.set_epoch(1)
    assert list(sampler) != batches
    sampler.set_epoch(0)
    assert list(sampler) == batches


def test_a_pass_cut_into_epochs_sees_every_clip_once():
    lengths = [5] * 7
    sampler = TemporalBatchSampler(lengths, batch_size=2, seed=1, pad=False, epochs_per_pass=3)
    shares = []
    for epoch in range(6):
        sampler.set_epoch(epoch)
        shares.append({i for b in sampler for i, first in b if first})
    for first_epoch in (0, 3):  # epochs 0-2 and 3-5 are two passes over the same 7 sequences
        this_pass = shares[first_epoch : first_epoch + 3]
        assert sorted(len(s) for s in this_pass) == [2, 2, 3] and set().union(*this_pass) == {0, 5, 10, 15, 20, 25, 30}
    assert shares[:3] != shares[3:]  # each pass reshuffles
    with pytest.raises(ValueError, match="epochs_per_pass=8 exceeds the 7 training clips"):
        sampler = TemporalBatchSampler(lengths, batch_size=2, epochs_per_pass=8)
        list(sampler)


def test_eval_sampler_covers_each_frame_once_and_keeps_slots():
    lengths = [4, 9, 2]
    batches = list(TemporalBatchSampler(lengths, batch_size=2, shuffle=False, pad=False))
    flat = [i for b in batches for i, _ in b]
    assert sorted(flat) == list(range(sum(lengths)))
    sizes = [len(b) for b in batches]
    assert sizes == sorted(sizes, reverse=True)  # slots only ever leave from the end
    firsts = [i for b in batches for i, f in b if f]
    assert sorted(firsts) == [0, 4, 13]


def test_sampler_clips_and_ranks():
    lengths = [10, 10, 10]
    per_rank = [list(TemporalBatchSampler(lengths, 2, seed=3, clip_len=4, num_replicas=2, rank=r)) for r in (0, 1)]
    assert len(per_rank[0]) == len(per_rank[1])  # equal steps: DDP never waits on a rank
    covered = {i for batches in per_rank for b in batches for i, _ in b}
    assert covered == set(range(30))
    clip_starts = {i for batches in per_rank for b in batches for i, f in b if f}
    assert {0, 4, 8, 10, 14, 18, 20, 24, 28} <= clip_starts


def test_evaluation_spreads_sequences_over_ranks_and_never_leaves_one_empty():
    def frames(lengths: list[int], rank: int) -> list[int]:
        sampler = TemporalBatchSampler(lengths, 4, shuffle=False, pad=False, num_replicas=2, rank=rank)
        return sorted(i for batch in sampler for i, _ in batch)

    assert (frames([5, 4, 3], 0), frames([5, 4, 3], 1)) == ([0, 1, 2, 3, 4, 9, 10, 11], [5, 6, 7, 8])
    assert frames([5], 0) == frames([5], 1) == [0, 1, 2, 3, 4]  # the idle rank evaluates a copy


def test_dataset_follows_the_batch_contract(tmp_path):
    cfg = small(objects_per_scene=(0, 2), with_depth=True)
    data = SequenceDataset(load_split(cfg, "train", tmp_path))
    sampler = TemporalBatchSampler(data.lengths, batch_size=2, shuffle=False, pad=False)
    batch = collate([data[item] for item in next(iter(sampler))])
    b, n, (w, h) = 2, cfg.num_cameras, cfg.image_size
    assert batch["img"].shape == (b, n, 3, h, w) and batch["img"].dtype == torch.float32
    assert batch["img"].min() >= 0.0 and batch["img"].max() <= 1.0
    assert batch["projection_mat"].shape == (b, n, 4, 4)
    assert torch.equal(batch["image_wh"][0, 0], torch.tensor([float(w), float(h)]))
    assert batch["timestamp"].shape == (b,) and batch["ego_pose"].shape == (b, 4, 4)
    assert batch["is_first"].tolist() == [True, True]
    assert batch["depth"].shape == (b, n, h, w)
    for boxes, labels, ids, vis in zip(
        batch["gt_boxes"], batch["gt_labels"], batch["gt_ids"], batch["gt_visibility"], strict=True
    ):
        m = len(labels)
        assert boxes.shape == (m, 10) and ids.shape == (m,) and vis.shape == (m, n)
        assert labels.dtype == torch.long and ids.dtype == torch.long


def test_frames_without_objects_flow_through_the_loader(tmp_path):
    cfg = small(objects_per_scene=(0, 0), scenes={"train": 1, "val": 1, "test": 1})
    dm = WarehouseDataModule(cfg, batch_size=1, cache_dir=tmp_path)
    dm.prepare_data()
    dm.setup("fit")
    batches = list(dm.train_dataloader())
    assert len(batches) == cfg.frames_per_scene
    assert all(b["gt_boxes"][0].shape == (0, 10) for b in batches)


def test_preview_cli_writes_a_png(tmp_path):
    out = tmp_path / "preview.png"
    cmd = [
        sys.executable,
        "-m",
        "sparse4d_lab.data",
        "preview",
        "--out",
        str(out),
        "--cache-dir",
        str(tmp_path),
        "--frame",
        "2",
        "--set",
        'scenes={"val": 1}',
        "frames_per_scene=3",
        "num_cameras=2",
    ]
    subprocess.run(cmd, check=True, capture_output=True)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 20_000
    bad = subprocess.run([*cmd[:-3], "num_cameras=0"], capture_output=True, text=True)
    assert bad.returncode == 2 and "data.warehouse.num_cameras" in bad.stderr
