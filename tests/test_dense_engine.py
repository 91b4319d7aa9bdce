"""Dense tasks through the engine: synthetic files in the real VOC / COCO / ADE20K layouts, read by the
real readers, trained a few steps by the Lightning trainer, scored by the task metric; an oracle that
returns the ground truth scores 100 through the same eval path; the quick demo runs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from monatune.adapter_io import read_adapter, save_adapter
from monatune.engine.config import load_config
from monatune.methods import methods
from monatune.engine.run import task_builders
from monatune.engine.trainer import build_trainer
from monatune.tasks.dense.data import ensure_synthetic
from monatune.tasks.detection.data import voc_image_sets
from monatune.tasks.dense.build import EvalResizeTransform
from monatune.tasks.detection.module import DetectionModule
from monatune.tasks.instance_segmentation.module import InstanceSegmentationModule
from monatune.tasks.semantic_segmentation.module import SemanticSegmentationModule

from engine_helpers import fit_checking_only_mona_and_heads_train, tiny_task_config

SIZE = 64
TASKS = {
    # task: (head, dataset, splits, num_classes, metric keys, head options, data options)
    "detection": ("retinanet", "synthetic_voc", ("trainval", "test"), 5, ("val/map",),
                  {"min_size": SIZE, "max_size": SIZE, "fpn_channels": 32}, {"scale": [SIZE, SIZE]}),
    "instance_segmentation": ("cascade_mask_rcnn", "synthetic_coco", ("train2017", "val2017"), 5, ("val/bbox_map", "val/segm_map"),
                              {"min_size": SIZE, "max_size": SIZE, "fpn_channels": 32, "box_conv_channels": 32, "box_fc_channels": 64,
                               "mask_channels": 32, "box_batch_size_per_image": 32, "rpn_pre_nms_top_n": [200, 100],
                               "rpn_post_nms_top_n": [100, 50]},
                              {"short_sides": [48, 64], "max_size": 80, "crop_short_sides": [64], "crop_size": [40, 64]}),
    "semantic_segmentation": ("upernet", "synthetic_ade20k", ("training", "validation"), 6, ("val/miou",),
                              {"channels": 32, "aux_channels": 16}, {"scale": [2 * SIZE, SIZE], "crop_size": SIZE}),
}  # fmt: skip


def tiny_config(tmp_path: Path, task: str, method: str = "mona", **trainer):
    head, dataset, (train, val), num_classes, _, head_options, options = TASKS[task]
    data = {"dataset": dataset, "root": str(tmp_path / dataset), "train_split": train, "val_split": val, "image_size": SIZE,
            "options": {**options, "num_train_images": 4, "num_val_images": 3, "seed": 0}}  # fmt: skip
    return tiny_task_config(tmp_path, task, head, head_options, num_classes, method, data, **trainer)


@pytest.mark.parametrize("task", list(TASKS))
def test_a_short_fit_trains_the_method_and_heads_and_logs_a_finite_metric(tmp_path, task):
    trainer = fit_checking_only_mona_and_heads_train(tiny_config(tmp_path, task, limit_train_batches=2))
    assert trainer.global_step == 2
    for key in TASKS[task][4]:
        assert math.isfinite(float(trainer.callback_metrics[key])), key


def test_adapter_file_holds_the_method_and_the_trained_heads(tmp_path):
    cfg = tiny_config(tmp_path, "detection", method="lora")
    model = task_builders("detection")[0](cfg).model
    tensors, info = read_adapter(save_adapter(model, tmp_path / "lora.safetensors"))
    assert info["method"] == "lora" and set(info["train_modules"]) == {"head", "neck"}
    assert set(tensors) == {n for n, p in model.named_parameters() if p.requires_grad}
    assert any(k.startswith("head.") for k in tensors) and any("lora" in k for k in tensors)


class Oracle(nn.Module):
    """Stands in for a model at eval: returns the prepared outputs in loader order."""

    def __init__(self, outputs: list) -> None:
        super().__init__()
        self.outputs = outputs
        self.anchor = nn.Parameter(torch.zeros(()))

    def forward(self, images):
        n = len(images)
        out, self.outputs = self.outputs[:n], self.outputs[n:]
        return torch.stack(out) if isinstance(images, torch.Tensor) else out


def _oracle_outputs(task: str, data) -> list:
    outputs = []
    for batch in data.val_dataloader():
        for image, target in zip(*batch):
            if task == "semantic_segmentation":  # one-hot logits at the model input size = label size here
                labels = target.clone()
                labels[labels == 255] = 0
                outputs.append(F.one_hot(labels, 6).permute(2, 0, 1).float())
            else:
                pred = {"boxes": target["boxes"], "labels": target["labels"], "scores": torch.linspace(1.0, 0.5, len(target["labels"]))}
                if task == "instance_segmentation":
                    pred["masks"] = target["masks"][:, None].float()
                outputs.append(pred)
    return outputs


@pytest.mark.parametrize("task", list(TASKS))
def test_ground_truth_predictions_score_100_through_the_eval_path(tmp_path, task):
    cfg = tiny_config(tmp_path, task)
    if task == "semantic_segmentation":  # keep eval images at label size so the oracle's logits line up
        cfg.data.options["test_scale"] = [SIZE, SIZE]
    data = task_builders(task)[1](cfg)
    data.prepare_data()
    data.setup("validate")
    modules = {"detection": DetectionModule, "instance_segmentation": InstanceSegmentationModule,
               "semantic_segmentation": SemanticSegmentationModule}  # fmt: skip
    module = modules[task](Oracle(_oracle_outputs(task, data)), cfg)
    metrics = build_trainer(cfg, checkpoints=False, logging=False).validate(module, datamodule=data, verbose=False)[0]
    for key in TASKS[task][4]:
        assert metrics[key] == pytest.approx(100.0), key


def test_detectors_resize_only_at_eval_and_answer_in_input_coordinates():
    transform = EvalResizeTransform(64, 64, [0.5] * 3, [0.25] * 3)
    image, target = torch.rand(3, 40, 32), {"boxes": torch.tensor([[4.0, 4.0, 20.0, 30.0]]), "labels": torch.tensor([1])}
    batch, targets = transform([image], [target])
    assert batch.image_sizes == [(40, 32)] and torch.equal(targets[0]["boxes"], target["boxes"])
    transform.eval()
    batch, _ = transform([image])
    assert batch.image_sizes == [(64, 51)]  # x1.6: the long side 40 reaches max_size 64 first
    boxes = transform.postprocess([{"boxes": torch.tensor([[0.0, 0.0, 51.0, 64.0]])}], batch.image_sizes, [(40, 32)])[0]["boxes"]
    assert torch.allclose(boxes, torch.tensor([[0.0, 0.0, 32.0, 40.0]]), atol=1e-4)


def test_voc_splits_parse_and_synthetic_data_is_written_once(tmp_path):
    assert voc_image_sets("2007/trainval+VOC2012/trainval") == [("2007", "trainval"), ("2012", "trainval")]
    with pytest.raises(ValueError, match="YEAR/IMAGE_SET"):
        voc_image_sets("trainval")
    calls = []
    ensure_synthetic(tmp_path, {"n": 1}, calls.append)
    ensure_synthetic(tmp_path, {"n": 1}, calls.append)
    assert len(calls) == 1 and json.loads((tmp_path / "synthetic.json").read_text()) == {"n": 1}
    ensure_synthetic(tmp_path, {"n": 2}, calls.append)
    assert len(calls) == 2


def test_segmentation_scene_style_is_checked_and_keys_the_cache(tmp_path):
    cfg = tiny_config(tmp_path, "semantic_segmentation")
    cfg.data.options["style"] = "photo"
    with pytest.raises(ValueError, match="data.options.style"):
        task_builders("semantic_segmentation")[1](cfg).prepare_data()
    cfg.data.options["style"] = "pretext"
    cfg.model.num_classes = 2
    data = task_builders("semantic_segmentation")[1](cfg)
    data.prepare_data()
    assert json.loads((tmp_path / "synthetic_ade20k" / "synthetic.json").read_text())["style"] == "pretext"
    data.setup("fit")
    _, mask = data.train_dataloader().dataset[0]
    assert set(mask.unique().tolist()) <= {0, 1, 255}


def test_quick_segmentation_demo_writes_its_outputs(tmp_path, monkeypatch):
    from monatune.demo import segmentation
    from monatune.demo.runner import run_demo

    # the demo's own recipe, made smaller still so the test stays short
    monkeypatch.setitem(segmentation.QUICK, "num_train_images", 8)
    monkeypatch.setitem(segmentation.QUICK, "num_val_images", 4)
    payload = run_demo(segmentation.DEMO, ["mona"], tmp_path, quick=True)
    row = payload["results"][0]
    assert row["method"] == "mona" and math.isfinite(row["metric"]) and 0 < row["trainable_percent"] < 100
    assert (tmp_path / "loss_curves.png").stat().st_size > 0
    assert json.loads((tmp_path / "results.json").read_text())["task"] == "segmentation"
    assert (tmp_path / "data" / "synthetic_ade20k" / "images" / "training").is_dir()
    assert read_adapter(tmp_path / "mona.safetensors")[1]["method"] == "mona"


def test_dense_paper_configs_load_as_their_task_and_method():
    """(That every paper config is what its generator gives: tests/test_paper_configs_current.py.)"""
    root = Path(__file__).parents[1]
    settings = {"detection": "voc_retinanet_swin_l", "instance_segmentation": "coco_cascade_mask_rcnn_swin_b_3x",
                "semantic_segmentation": "ade20k_upernet_swin_l_160k"}  # fmt: skip
    for task, name in settings.items():
        for method in methods():
            cfg = load_config(root / "configs" / "paper" / task / name / f"{method}.yaml")
            assert (cfg.task, cfg.model.method) == (task, method)
    mona, lora = (load_config(root / "configs/paper/semantic_segmentation/ade20k_upernet_swin_l_160k" / f"{m}.yaml") for m in ("mona", "lora"))
    assert (mona.optim.lr, mona.model.drop_path_rate, lora.optim.lr, lora.model.drop_path_rate) == (3e-4, 0.2, 6e-5, 0.3)


def _gather_worker(rank: int, init_file: str, out_dir: str) -> None:
    import torch.distributed as dist

    from monatune.tasks.dense.module import gather_objects

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        gathered = gather_objects({"rank": rank, "records": [rank] * (rank + 1)})
        Path(out_dir, f"{rank}.json").write_text(json.dumps(gathered))
    finally:
        dist.destroy_process_group()


def test_eval_records_are_gathered_from_every_rank(tmp_path):
    """Under DDP each rank evaluates its own images; VOC mAP is computed on all ranks' records."""
    import torch.multiprocessing as mp

    mp.spawn(_gather_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    expected = [{"rank": 0, "records": [0]}, {"rank": 1, "records": [1, 1]}]
    for rank in (0, 1):
        assert json.loads((tmp_path / f"{rank}.json").read_text()) == expected


def test_upernet_adapter_carries_its_batchnorm_statistics_and_evaluates_like_the_checkpoint(tmp_path):
    from monatune.engine.run import export_adapter, run

    cfg = tiny_config(tmp_path, "semantic_segmentation", limit_train_batches=2)
    run("fit", cfg)
    adapter = tmp_path / "run" / "adapter.safetensors"
    ckpt = str(tmp_path / "run" / "checkpoints" / "last.ckpt")
    tensors, info = read_adapter(adapter)
    stats = [k for k in tensors if k.endswith("running_mean")]
    assert info["format_version"] == "2" and stats and all(not k.startswith("backbone.") for k in stats)
    assert any(not torch.all(tensors[k] == 0) for k in stats)  # moved by training, not the init
    from_ckpt = run("validate", cfg, ckpt=ckpt)["metrics"]
    from_adapter = run("validate", cfg, adapter=str(adapter))["metrics"]
    assert from_adapter == pytest.approx(from_ckpt, rel=1e-6)
    exported, _ = read_adapter(export_adapter(cfg, ckpt, tmp_path / "exported.safetensors"))
    assert exported.keys() == tensors.keys() and all(torch.equal(exported[k], tensors[k]) for k in tensors)
