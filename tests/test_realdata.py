"""Real-data readers on real files: the synthetic warehouse exported as MTMC scenes and OVPKL pickles, read back."""

import io
import json
import logging
import math
import multiprocessing
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf
from scipy.spatial import Delaunay

from experiments.build import build_components, validate
from sparse4d_lab import geometry
from sparse4d_lab.data import (
    DataError,
    MtmcConfig,
    MtmcSource,
    OvpklConfig,
    OvpklSource,
    WarehouseConfig,
    render_scene,
)
from sparse4d_lab.data.__main__ import main as data_cli
from sparse4d_lab.data.calibration import decompose_camera_matrix
from sparse4d_lab.data.export import export_mtmc, export_ovpkl
from sparse4d_lab.data.mtmc_format import boxes_from_mtmc, boxes_to_mtmc
from sparse4d_lab.data.render import make_camera, render_background, render_frame
from sparse4d_lab.data.safe_pickle import UnreadablePickleError, UnsafePickleError, safe_load
from sparse4d_lab.data.scene import make_scene
from sparse4d_lab.errors import ConfigError

CFG = WarehouseConfig(
    scenes={"train": 1, "val": 1}, frames_per_scene=6, image_size=(96, 64), num_cameras=3, with_depth=True
)


@pytest.fixture(scope="module")
def scenes():
    return {split: render_scene(CFG, split, 0) for split in ("train", "val")}


@pytest.fixture(scope="module")
def mtmc_root(scenes, tmp_path_factory):
    """Near-lossless videos (yuv444p, crf 0), so images compare tightly."""
    root = tmp_path_factory.mktemp("mtmc")
    for split, scene in scenes.items():
        export_mtmc([scene], root, split, pix_fmt="yuv444p", crf=0)
    return root


@pytest.fixture(scope="module")
def ovpkl_root(scenes, tmp_path_factory):
    root = tmp_path_factory.mktemp("ovpkl")
    for split, scene in scenes.items():
        export_ovpkl([scene], root, split, quality=100)
    return root


def mtmc(root, tmp_path, **overrides):
    return MtmcSource(MtmcConfig(root=str(root), image_size=None, cache_dir=str(tmp_path / "cache"), **overrides))


def yaw_error(a, b):
    return np.abs(np.remainder(np.asarray(a) - np.asarray(b) + math.pi, 2 * math.pi) - math.pi)


def assert_same_boxes(got, ref, velocity_rows=None):
    """Centres, sizes and yaw to 1e-5 (yaw modulo 2 pi); velocity on ``velocity_rows`` (default: all)."""
    assert np.array_equal(got.frame_offsets, ref.frame_offsets)
    np.testing.assert_allclose(got.boxes[:, :6], ref.boxes[:, :6], atol=1e-5)
    assert yaw_error(got.boxes[:, 6], ref.boxes[:, 6]).max() < 1e-5
    rows = slice(None) if velocity_rows is None else velocity_rows
    np.testing.assert_allclose(got.boxes[rows, 7:], ref.boxes[rows, 7:], atol=1e-5)
    assert np.array_equal(got.ids, ref.ids) and np.array_equal(got.labels, ref.labels)


def assert_same_cameras(got, ref, cameras=None, scale=1.0):
    cameras = list(range(len(ref.image_wh))) if cameras is None else cameras
    resize = np.diag([scale, scale, 1.0, 1.0])
    np.testing.assert_allclose(got.extrinsics, ref.extrinsics[cameras], atol=1e-5)
    np.testing.assert_allclose(got.intrinsics, resize @ ref.intrinsics[cameras], atol=1e-5)
    np.testing.assert_allclose(got.projection, resize @ ref.projection[cameras], atol=1e-5)
    np.testing.assert_allclose(got.image_wh, ref.image_wh[cameras] * scale)


def rows_with_next(scene):
    """Rows whose object is present in the next frame (where a finite difference gives the walker's velocity)."""
    keep = np.zeros(len(scene.ids), bool)
    for t in range(scene.num_frames - 1):
        rows = scene.frame_slice(t)
        keep[rows] = np.isin(scene.ids[rows], scene.ids[scene.frame_slice(t + 1)])
    return keep


def test_box_conventions_map_exactly():
    # MTMC: w along the object's x axis, l along its y axis, facing -y. A 4 m (w) x 1 m (l) box at yaw 0 spans x.
    box = boxes_from_mtmc([[1.0, 2.0, 0.5]], [[4.0, 1.0, 1.0]], [0.0])
    corners = geometry.box_corners(torch.from_numpy(np.r_[box[0], 0, 0, 0])).numpy()
    np.testing.assert_allclose(corners[:, 0].min(), -1.0, atol=1e-12)
    np.testing.assert_allclose(np.ptp(corners[:, 0]), 4.0, atol=1e-12)
    np.testing.assert_allclose(np.ptp(corners[:, 1]), 1.0, atol=1e-12)
    np.testing.assert_allclose(box[0, 3:7], [1.0, 4.0, 1.0, -math.pi / 2])  # l along the heading (-y)
    rng = np.random.default_rng(0)
    boxes = np.c_[rng.normal(size=(50, 3)), rng.uniform(0.2, 3, (50, 3)), rng.uniform(-math.pi, math.pi, 50)]
    back = boxes_from_mtmc(*boxes_to_mtmc(boxes))
    np.testing.assert_allclose(back[:, :6], boxes[:, :6], atol=1e-12)
    assert yaw_error(back[:, 6], boxes[:, 6]).max() < 1e-12


def test_mtmc_round_trip(scenes, mtmc_root, tmp_path):
    source = mtmc(mtmc_root, tmp_path, with_depth=True)
    got, ref = source.scenes("train")[0], scenes["train"]
    assert got.name == ref.name and list(got.cameras) == ["Camera", "Camera_01", "Camera_02"]
    # MTMC has no velocity: it is (next - now) x fps, the walker's own velocity wherever there is a next frame.
    assert_same_boxes(got, ref, velocity_rows=rows_with_next(ref))
    assert_same_cameras(got, ref)
    np.testing.assert_allclose(got.timestamps, ref.timestamps, atol=1e-9)
    np.testing.assert_array_equal(got.frame_ids, np.arange(ref.num_frames))
    np.testing.assert_array_equal(got.boxes_2d, ref.boxes_2d)  # NaN where unseen, on both sides
    images = np.stack([got.images[t] for t in range(got.num_frames)])
    assert images.shape == ref.images.shape
    assert np.abs(images.astype(int) - ref.images).max() <= 3  # consecutive frames differ by ~6 on average
    np.testing.assert_array_equal(np.stack([got.depth[t] for t in range(got.num_frames)]), ref.depth)
    report = source.reports[ref.name]
    assert not report.skipped_cameras and report.frames_without_gt == 0 and report.frames_dropped == 0


def test_mtmc_stride_camera_subset_and_resize(scenes, tmp_path):
    """The real videos' yuv420p, every second frame from frame 1, two cameras in a new order, half-size images."""
    export_mtmc([scenes["train"]], tmp_path / "mtmc", "train")
    source = MtmcSource(
        MtmcConfig(root=str(tmp_path / "mtmc"), cameras=["Camera_02", "Camera"], frame_stride=2, start_frame=1,
                   image_size=(48, 32), stride=16, cache_dir=str(tmp_path / "cache"), splits={"train": "train"})
    )  # fmt: skip
    got, ref = source.scenes("train")[0], scenes["train"]
    frames, cams = [1, 3, 5], [2, 0]
    np.testing.assert_array_equal(got.frame_ids, frames)
    rows = np.concatenate([np.arange(ref.frame_offsets[t], ref.frame_offsets[t + 1]) for t in frames])
    np.testing.assert_allclose(got.boxes[:, :6], ref.boxes[rows, :6], atol=1e-5)
    np.testing.assert_array_equal(got.ids, ref.ids[rows])
    assert_same_cameras(got, ref, cams, scale=0.5)
    np.testing.assert_allclose(got.boxes_2d, ref.boxes_2d[rows][:, cams] * 0.5)
    images = np.stack([got.images[t] for t in range(3)]).astype(float)
    expected = ref.images[frames][:, cams].reshape(3, 2, 32, 2, 48, 2, 3).mean(axis=(3, 5))  # 2x2 area mean
    assert images.shape == expected.shape and np.abs(images - expected).mean() < 6


def fully_visible(scene, ref):
    """(row, camera) pairs where the renderer saw all of the object, away from the image border."""
    x1, y1, x2, y2 = np.moveaxis(scene.boxes_2d, -1, 0)
    w, h = scene.image_wh[0]
    inside = (x1 > 0) & (y1 > 0) & (x2 < w) & (y2 < h)  # NaN (unseen) compares False
    return np.argwhere((ref.visibility >= 1.0) & inside)


def test_mtmc_box_projects_inside_its_visible_2d_box(scenes, mtmc_root, tmp_path):
    got, ref = mtmc(mtmc_root, tmp_path).scenes("val")[0], scenes["val"]
    pairs = fully_visible(got, ref)
    assert len(pairs) >= 5
    boxes = torch.from_numpy(got.boxes[pairs[:, 0]])
    centre, _, front = geometry.project_points(
        boxes[:, None, :3], torch.from_numpy(got.projection[pairs[:, 1]])[:, None]
    )
    x1, y1, x2, y2 = got.boxes_2d[pairs[:, 0], pairs[:, 1]].T
    u, v = centre[:, 0, 0].numpy().T
    assert front.all() and np.all((x1 <= u) & (u <= x2) & (y1 <= v) & (v <= y2))


def silhouettes(split: str, frames: int):
    """Per camera and frame, the renderer's instance buffer (which pixels show which object of the frame)."""
    scene = make_scene(CFG, split, 0)
    out = []
    for n in range(CFG.num_cameras):
        cam = make_camera(scene.intrinsics[n], scene.extrinsics[n], scene.image_wh)
        background = render_background(scene, cam)
        for t in range(frames):
            alive = np.flatnonzero(scene.present[t])
            canvas, _ = render_frame(scene, cam, background, scene.boxes[t, alive], [scene.objects[i] for i in alive])
            out.append((n, t, canvas.instance))
    return out


def pixels_outside_boxes(scene, masks) -> tuple[int, int]:
    """Object pixels whose ray does not pass through the object's box as read (boxes and calibration)."""
    outside = total = 0
    for n, t, instance in masks:
        rows = scene.frame_slice(t)
        corners = geometry.box_corners(torch.from_numpy(scene.boxes[rows]))
        proj = torch.from_numpy(scene.projection[n])[None, None].expand(len(corners), 1, 4, 4)
        pix, _, front = geometry.project_points(corners, proj)
        for m in range(len(corners)):
            v, u = np.nonzero(instance == m)
            total += len(u)
            if len(u) and not front[m, 0].all():
                outside += len(u)
            elif len(u):
                hull = Delaunay(pix[m, 0].numpy())
                outside += int((hull.find_simplex(np.c_[u + 0.5, v + 0.5], tol=1e-6) < 0).sum())
    return outside, total


def test_ovpkl_round_trip(scenes, ovpkl_root):
    source = OvpklSource(OvpklConfig(path=str(ovpkl_root), image_size=None, with_depth=True))
    got, ref = source.scenes("val")[0], scenes["val"]
    assert got.name == ref.name
    assert_same_boxes(got, ref)  # OVPKL stores the velocity
    assert_same_cameras(got, ref)
    np.testing.assert_allclose(got.visibility, ref.visibility, atol=1e-12)
    np.testing.assert_allclose(got.timestamps, ref.timestamps, atol=1e-12)
    images = np.stack([got.images[t] for t in range(got.num_frames)])
    assert np.abs(images.astype(int) - ref.images).max() <= 5  # JPEG at quality 100, 4:4:4
    np.testing.assert_array_equal(np.stack([got.depth[t] for t in range(got.num_frames)]), ref.depth)


def test_ovpkl_conventions_are_proven_by_the_images(ovpkl_root):
    """Every pixel the renderer drew for an object lies inside that object's box projected through the calibration
    as read with TAO's conventions; reading sensor2world_transform literally, or the heading un-negated, does not."""
    masks = silhouettes("val", frames=3)
    results = {}
    for option in ({}, {"heading": "lidar"}, {"extrinsic": "camera_to_world"}):
        scene = OvpklSource(OvpklConfig(path=str(ovpkl_root), image_size=None, **option)).scenes("val")[0]
        results[tuple(option.values())] = pixels_outside_boxes(scene, masks)
    outside, total = results[()]
    assert total > 200 and outside == 0
    assert results[("lidar",)][0] > 0
    assert results[("camera_to_world",)][0] > 0.9 * total


def test_a_pickle_that_runs_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    path = tmp_path / "evil_infos_train.pkl"
    path.write_bytes(pickle.dumps({"metadata": {}, "infos": [Payload()]}))
    with pytest.raises(UnsafePickleError, match=r"evil_infos_train\.pkl: refusing to load: .*'(posix|os)\.system'"):
        safe_load(path)
    assert not marker.exists()
    (tmp_path / "train").mkdir()
    shutil.move(path, tmp_path / "train" / path.name)
    with pytest.raises(UnsafePickleError, match="not plain data"):
        OvpklSource(OvpklConfig(path=str(tmp_path))).scenes("train")
    assert not marker.exists()


def test_refused_and_broken_pickles_say_which_file_and_why(tmp_path, capsys):
    class KeepsSecrets(pickle.Pickler):
        def persistent_id(self, obj):
            return "db-handle" if obj == "x" else None

    (tmp_path / "train").mkdir()
    path = tmp_path / "train" / "hooked_infos_train.pkl"
    buffer = io.BytesIO()
    KeepsSecrets(buffer, protocol=2).dump({"metadata": {}, "infos": ["x"]})
    path.write_bytes(buffer.getvalue())
    with pytest.raises(UnsafePickleError, match=r"hooked_infos_train\.pkl: refusing .*persistent object 'db-handle'"):
        safe_load(path)
    # The preview command says so in one line, as it does for any bad input, instead of a traceback.
    assert data_cli(["preview", "--ovpkl", str(tmp_path), "--split", "train", "--out", str(tmp_path / "p.png")]) == 2
    assert "persistent object 'db-handle'" in capsys.readouterr().err
    for broken in (pickle.dumps({"infos": []})[:-4], b"not a pickle", b"\x80\x02\x82\x01."):
        path.write_bytes(broken)
        with pytest.raises(UnreadablePickleError, match=r"hooked_infos_train\.pkl: not a readable pickle"):
            safe_load(path)


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_plain_pickles_load(tmp_path, protocol):
    data = {"infos": [{"gt_boxes": np.arange(14.0).reshape(2, 7), "gt_names": np.array(["person", "gr1_t2"]),
                       "valid_flag": np.array([True, False]), "n": np.int64(3), "t": (1.5, {2})}]}  # fmt: skip
    (tmp_path / "ok.pkl").write_bytes(pickle.dumps(data, protocol=protocol))
    back = safe_load(tmp_path / "ok.pkl")["infos"][0]
    np.testing.assert_array_equal(back["gt_boxes"], data["infos"][0]["gt_boxes"])
    assert back["gt_names"].tolist() == ["person", "gr1_t2"] and back["t"] == (1.5, {2}) and back["n"] == 3


def copy_scene(mtmc_root, tmp_path, split="train", name="train_0000") -> Path:
    root = tmp_path / "copy"
    shutil.copytree(mtmc_root / split / name, root / split / name)
    return root


def edit_ground_truth(root, edit, split="train", name="train_0000"):
    path = root / split / name / "ground_truth.json"
    path.write_text(json.dumps(edit(json.loads(path.read_text()))))


def test_mtmc_bad_input_is_refused_or_skipped_with_counts(scenes, mtmc_root, tmp_path):
    root = copy_scene(mtmc_root, tmp_path)
    videos = root / "train" / "train_0000" / "videos"
    # A camera in the calibration without a video: skipped and counted, refused when asked for by name.
    (videos / "Camera_02.mp4").unlink()
    source = mtmc(root, tmp_path, splits={"train": "train"})
    assert list(source.scenes("train")[0].cameras) == ["Camera", "Camera_01"]
    assert "videos/ has no video" in source.reports["train_0000"].skipped_cameras["Camera_02"]
    with pytest.raises(DataError, match=r"data\.cameras asks for 'Camera_02'.*videos/Camera_02\.mp4 does not exist"):
        mtmc(root, tmp_path, cameras=["Camera_02"], splits={"train": "train"}).scenes("train")
    # A corrupt video: refused when the scene loads, naming the file.
    (videos / "Camera_01.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(3000))
    with pytest.raises(DataError, match=r"Camera_01\.mp4: not a readable video"):
        mtmc(root, tmp_path, splits={"train": "train"}).scenes("train")


@pytest.mark.parametrize("scale", [1.0, 3.7, -0.02])
def test_a_camera_matrix_splits_into_its_intrinsics_and_a_proper_rotation(scale):
    """AI City 2026 gives only K [R | t] (at any scale): recovered exactly, and every pixel reprojects."""
    from scipy.spatial.transform import Rotation

    k = np.array([[912.5, 0.8, 641.0], [0.0, 905.0, 362.5], [0.0, 0.0, 1.0]])
    r = Rotation.from_euler("xyz", [-112.0, 8.0, 37.0], degrees=True).as_matrix()
    t = np.array([0.7, 1.9, 6.2])
    got_k, extrinsic = decompose_camera_matrix(scale * k @ np.hstack([r, t[:, None]]))
    np.testing.assert_allclose(got_k, k, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(extrinsic[:3, :3], r, atol=1e-12)
    np.testing.assert_allclose(extrinsic[:3, 3], t, atol=1e-10)
    assert np.linalg.det(extrinsic[:3, :3]) == pytest.approx(1.0, abs=1e-12)
    points = np.random.default_rng(0).uniform(-5, 5, (50, 3))
    expected = (k @ (points @ r.T + t).T).T
    got = (got_k @ (extrinsic[:3] @ np.hstack([points, np.ones((50, 1))]).T)).T
    np.testing.assert_allclose(got[:, :2] / got[:, 2:], expected[:, :2] / expected[:, 2:], atol=1e-9)
    with pytest.raises(DataError, match="singular"):
        decompose_camera_matrix(np.hstack([np.ones((3, 3)), t[:, None]]))


def test_mtmc_2026_scenes_with_only_a_camera_matrix_and_pallet_trucks(scenes, mtmc_root, tmp_path):
    root = copy_scene(mtmc_root, tmp_path)
    calibration = root / "train" / "train_0000" / "calibration.json"
    data = json.loads(calibration.read_text())
    for sensor in data["sensors"]:
        del sensor["intrinsicMatrix"], sensor["extrinsicMatrix"]
    calibration.write_text(json.dumps(data))

    def add_pallet_truck(gt):
        truck = {**gt["0"][0], "object type": "PalletTruck", "object id": 999}
        return {**gt, "0": [*gt["0"], truck]}

    edit_ground_truth(root, add_pallet_truck)
    source = mtmc(root, tmp_path, splits={"train": "train"})
    got, ref = source.scenes("train")[0], scenes["train"]
    assert_same_cameras(got, ref)
    assert_same_boxes(got, ref, velocity_rows=rows_with_next(ref))  # the truck is dropped by the class map
    assert source.reports["train_0000"].dropped_classes["PalletTruck"] == 1
    for sensor in data["sensors"]:
        del sensor["cameraMatrix"]
    calibration.write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"calibration\.json sensor 0 \(Camera\): has neither"):
        mtmc(root, tmp_path, splits={"train": "train"}).scenes("train")


def test_mtmc_scene_files_that_cannot_be_read_are_named(mtmc_root, tmp_path):
    root = copy_scene(mtmc_root, tmp_path)
    shutil.copytree(root / "train" / "train_0000", root / "train" / "train_0001")
    # A scene without its calibration beside an intact one: refused, naming the file, not passed over.
    (root / "train" / "train_0001" / "calibration.json").unlink()
    with pytest.raises(DataError, match=r"train_0001/calibration\.json is missing"):
        mtmc(root, tmp_path, splits={"train": "train"}).scenes("train")
    shutil.rmtree(root / "train" / "train_0001")
    for name in ("ground_truth.json", "calibration.json"):
        path = root / "train" / "train_0000" / name
        path.write_bytes(b'{"0": "caf\xe9"}')  # Latin-1, not UTF-8
        with pytest.raises(DataError, match=rf"{name}: not UTF-8 text"):
            mtmc(root, tmp_path / name, splits={"train": "train"}).scenes("train")
        shutil.copy(mtmc_root / "train" / "train_0000" / name, path)


def test_mtmc_ground_truth_variants(scenes, mtmc_root, tmp_path):
    root = copy_scene(mtmc_root, tmp_path)
    ref = scenes["train"]

    def underscores_and_gaps(gt):
        del gt["2"]  # a frame without ground truth: read as a frame without objects, counted
        gt["0"][0]["object type"] = "Forklift"  # dropped by the default class map, counted
        return {f: [{k.replace(" ", "_"): v for k, v in o.items()} for o in objs] for f, objs in gt.items()}

    edit_ground_truth(root, underscores_and_gaps)
    source = mtmc(root, tmp_path, splits={"train": "train"})
    got = source.scenes("train")[0]
    report = source.reports["train_0000"]
    assert report.frames_without_gt == 1 and dict(report.dropped_classes) == {"Forklift": 1}
    assert got.frame_offsets[3] - got.frame_offsets[2] == 0
    keep = np.ones(len(ref.ids), bool)
    keep[ref.frame_slice(2)] = False
    keep[0] = False
    np.testing.assert_allclose(got.boxes[:, :6], ref.boxes[keep, :6], atol=1e-5)
    edit_ground_truth(root, lambda gt: {**gt, "1": [{**gt["1"][0], "object_type": "Robot"}]})
    with pytest.raises(DataError, match=r"ground_truth\.json: object class 'Robot' is not in data\.class_map"):
        mtmc(root, tmp_path, splits={"train": "train"}).scenes("train")


def test_a_frame_that_fails_mid_epoch_is_served_black_and_counted(scenes, mtmc_root, tmp_path, caplog):
    root = copy_scene(mtmc_root, tmp_path)
    scene = mtmc(root, tmp_path, splits={"train": "train"}, frame_cache=None).scenes("train")[0]
    assert scene.images[0][1].any()
    (root / "train" / "train_0000" / "videos" / "Camera_01.mp4").write_bytes(b"garbage")
    with caplog.at_level(logging.WARNING):
        frame = scene.images[4]
    assert not frame[1].any() and frame[0].any() and frame[2].any()
    assert scene.images.failures == [0, 1, 0] and "served a blank frame" in caplog.text


def _read_in_child(scene, conn):
    conn.send(scene.images[3])


def test_decoding_continues_in_a_forked_worker(mtmc_root, tmp_path):
    """DataLoader workers fork the process after it decoded frames: the child must decode, not hang."""
    scene = mtmc(mtmc_root, tmp_path, frame_cache=None).scenes("train")[0]
    expected = scene.images[3]  # the parent's decoders are open (with their threads) at the fork
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe()
    worker = ctx.Process(target=_read_in_child, args=(scene, child))
    worker.start()
    worker.join(60)
    if worker.is_alive():
        worker.kill()
    assert worker.exitcode == 0 and parent.poll(1)
    np.testing.assert_array_equal(parent.recv(), expected)
    np.testing.assert_array_equal(scene.images[3], expected)  # and the parent reads on


def compose_cfg(overrides, tmp_path):
    with initialize_config_module("experiments.conf", version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    OmegaConf.update(cfg, "paths.root", str(tmp_path), force_add=True)
    OmegaConf.update(cfg, "paths.output_dir", str(tmp_path / "out"), force_add=True)
    return cfg


@pytest.mark.parametrize("source", ["mtmc", "ovpkl"])
def test_real_data_composes_and_builds(source, mtmc_root, ovpkl_root, tmp_path):
    where = (
        [f"data.root={mtmc_root}", f"data.cache_dir={tmp_path}"] if source == "mtmc" else [f"data.path={ovpkl_root}"]
    )
    cfg = compose_cfg([f"data={source}", *where, "data.image_size=[96,64]", "data.with_depth=true"], tmp_path)
    validate(cfg)
    datamodule, module = build_components(cfg)
    assert datamodule.num_classes == 4 == module.model.num_classes
    datamodule.setup("fit")
    batch = next(iter(datamodule.train_dataloader()))
    assert batch["img"].shape == (2, 3, 3, 64, 96) and batch["depth"].shape == (2, 3, 64, 96)
    assert batch["projection_mat"].shape == (2, 3, 4, 4) and batch["is_first"].all()
    assert all(b.shape[1] == 10 for b in batch["gt_boxes"])


def test_real_data_configs_fail_early_naming_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"data\.root: set it"):
        validate(compose_cfg(["data=mtmc"], tmp_path))
    with pytest.raises(ConfigError, match=r"data\.heading: 'yaw' is not one of"):
        validate(compose_cfg(["data=ovpkl", f"data.path={tmp_path}", "data.heading=yaw"], tmp_path))
    with pytest.raises(ConfigError, match=r"data\.class_map: .*not in data\.classes"):
        validate(compose_cfg(["data=mtmc", f"data.root={tmp_path}", "data.class_map.Forklift=forklift"], tmp_path))
    with pytest.raises(ConfigError, match=r"data\.warehouse: synthetic-data settings .* do not apply to data=mtmc"):
        validate(compose_cfg(["data=mtmc", f"data.root={tmp_path}", "debug=smoke"], tmp_path))


def test_preview_draws_real_data(mtmc_root, tmp_path):
    out = tmp_path / "preview.png"
    args = ["preview", "--out", str(out), "--mtmc", str(mtmc_root), "--split", "val", "--scene", "val_0000"]
    cache = f'cache_dir="{tmp_path}"'
    assert data_cli([*args, "--frame", "2", "--set", "image_size=[192,128]", cache]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 20_000
    assert data_cli([*args, "--frame", "9", "--set", cache]) == 2  # beyond the scene: refused
