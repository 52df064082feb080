"""Pretrained bases: the shipped base is what its provenance says, a base loads only into a model that fits it,
and a fine-tune starts from its weights with the classification branches re-initialised where classes differ."""

import dataclasses
import hashlib
import json
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from test_experiments import compose_cfg

from experiments.build import SHIPPED_BASE, build_components, validate
from experiments.pretrain import guard_out
from sparse4d_lab.data import CLASSES
from sparse4d_lab.errors import ConfigError
from sparse4d_lab.model.config import ModelConfig, tiny
from sparse4d_lab.model.pretrained import load_base, save_base
from sparse4d_lab.model.sparse4d import Sparse4D


def model_of(seed: int, classes=CLASSES, num_logits=None) -> Sparse4D:
    torch.manual_seed(seed)
    return Sparse4D(tiny(), len(classes), num_logits, None if num_logits is None else torch.sigmoid)


def random_base(path: Path, seed: int = 1) -> dict[str, torch.Tensor]:
    model = model_of(seed)
    provenance = {"model": tiny().to_dict(), "classes": list(CLASSES), "num_logits": len(CLASSES)}
    save_base(model.state_dict(), path, provenance)
    return model.state_dict()


def test_the_shipped_base_is_what_its_provenance_says_and_loads_whole():
    record = json.loads(SHIPPED_BASE.with_suffix(".json").read_text())
    assert hashlib.sha256(SHIPPED_BASE.read_bytes()).hexdigest() == record["sha256"]
    assert SHIPPED_BASE.stat().st_size == record["bytes"] <= 25 * 2**20
    assert dataclasses.asdict(ModelConfig(**record["model"])) == dataclasses.asdict(tiny(**_rules(record)))
    assert record["classes"] == list(CLASSES) and record["loss"]["arm"] == "focal_onehot"
    assert record["data"]["warehouse"]["seed"] != 0  # the source domain is not the studies' warehouse
    steps = [s for s, _ in record["curves"]["val/mAP"]]
    assert steps == sorted(steps) and steps[-1] <= record["steps"]
    model = model_of(0)
    report = load_base(model, SHIPPED_BASE, ModelConfig(**record["model"]), CLASSES)
    state = torch.load(SHIPPED_BASE, weights_only=True)
    assert not report.reinitialised and not report.new and set(report.loaded) == set(state)
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


def _rules(record: dict) -> dict:
    """The fields a semantics profile sets on the preset (the base was trained under one)."""
    return {k: v for k, v in record["model"].items() if tiny().to_dict()[k] != v}


def test_a_model_config_that_does_not_fit_fails_before_training_naming_the_fields(tmp_path):
    cfg = compose_cfg(["model.embed_dims=64", "model.anchor_embed_dims=[32,8,8,16]", "model.num_decoder=2"], tmp_path)
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    message = str(err.value)
    for field in ("model.embed_dims: base 128, this job 64", "model.num_decoder: base 3, this job 2"):
        assert field in message
    assert "python -m experiments.pretrain model.embed_dims=64 model.anchor_embed_dims=[32,8,8,16]" in message
    # Rules that leave the weights' shapes and meaning alone may differ from the base's.
    validate(compose_cfg(["model.score_threshold=0.3", "model.confidence_decay=0.5", "semantics=upstream"], tmp_path))


@pytest.mark.parametrize(
    ("classes", "num_logits", "reason"),
    [(("person", "forklift", "cart"), None, "classes"), (CLASSES, len(CLASSES) + 1, "logits 4 -> 5")],
)
def test_other_classes_or_logits_reinitialise_the_classification_branches_and_load_the_rest(
    classes, num_logits, reason, tmp_path
):
    base = random_base(tmp_path / "base.pt")
    target = model_of(2, classes, num_logits)
    fresh = {k: v.clone() for k, v in target.state_dict().items()}
    report = load_base(target, tmp_path / "base.pt", tiny(), classes)
    branch = {k for k in fresh if ".cls_layers." in k}
    assert set(report.reinitialised) == branch and len(branch) == 3 * 5 * 2  # 3 heads x 5 layers, weight and bias
    assert reason in report.reason
    for key, value in target.state_dict().items():
        assert torch.equal(value, fresh[key] if key in branch else base[key]), key


def test_a_damaged_base_fails_on_its_hash_before_it_is_unpickled(tmp_path):
    random_base(tmp_path / "base.pt")
    data = bytearray((tmp_path / "base.pt").read_bytes())
    data[-100] ^= 0xFF
    (tmp_path / "base.pt").write_bytes(bytes(data))
    with pytest.raises(ConfigError, match=r"base\.pt has sha256 .* damaged"):
        load_base(model_of(0), tmp_path / "base.pt", tiny(), CLASSES)
    with pytest.raises(ConfigError, match=r"init\.path: .*missing\.pt does not exist.*experiments\.pretrain"):
        validate(compose_cfg([f"init.path={tmp_path / 'missing.pt'}"], tmp_path))


def test_a_fine_tune_starts_from_the_base_with_an_empty_bank_and_moves_the_weights(tmp_path):
    cfg = compose_cfg(["debug=smoke"], tmp_path, tmp_path / "cache")
    datamodule, module = build_components(cfg)
    base = torch.load(SHIPPED_BASE, weights_only=True)
    start = {k: v.clone() for k, v in module.model.state_dict().items()}
    assert all(torch.equal(v, base[k]) for k, v in start.items())  # anchors too: the base's, not the target's
    assert module.init_report is not None and module.model.instance_bank._states == {True: None, False: None}
    trainer = pl.Trainer(
        max_steps=3, limit_val_batches=0, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(module, datamodule=datamodule)
    after = module.model.state_dict()
    assert not torch.equal(after["heads.2.cls_layers.6.weight"], start["heads.2.cls_layers.6.weight"])
    assert not torch.equal(after["backbone.conv1.weight"], start["backbone.conv1.weight"])
    assert module.model.instance_bank._states[True] is not None  # the fine-tune's own memory, from its own frames


def test_pretrain_keeps_a_base_of_another_config(tmp_path):
    random_base(tmp_path / "tiny.pt")
    record = json.loads((tmp_path / "tiny.json").read_text())
    (tmp_path / "tiny.json").write_text(json.dumps({**record, "config_hash": "aaaa"}))
    with pytest.raises(ConfigError, match=r"pretrain\.out: .*tiny\.pt is a base of another config"):
        guard_out(tmp_path / "tiny.pt", "bbbb", overwrite=False)
    guard_out(tmp_path / "tiny.pt", "aaaa", overwrite=False)
    guard_out(tmp_path / "tiny.pt", "bbbb", overwrite=True)
