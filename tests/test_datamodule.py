"""The data module base every task shares: training shuffled per epoch, each eval image on one rank under DDP."""

from __future__ import annotations

import torch
import torch.distributed as dist
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import SequentialSampler

from monatune.engine.sampler import EpochShuffleSampler
from monatune.tasks.classification.data import ClassificationData

from engine_helpers import separable_data, tiny_config


def test_classification_loaders_shuffle_training_and_keep_eval_unrepeated_under_ddp(tmp_path):
    cfg = tiny_config(tmp_path)  # batch size 8
    data = ClassificationData(cfg, separable_data(20), separable_data(12, seed=1))
    train = data.train_dataloader()
    assert isinstance(train.sampler, EpochShuffleSampler) and train.drop_last
    images, labels = next(iter(train))  # PyTorch's default collate: stacked tensors
    assert images.shape == (8, 3, 32, 32) and labels.shape == (8,)
    assert not data._loader(separable_data(12), train=True).drop_last  # fewer than two batches: keep them all
    assert isinstance(data.val_dataloader().sampler, SequentialSampler)
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'init'}", rank=0, world_size=1)
    try:
        val = data.val_dataloader()
        assert isinstance(val.sampler, UnrepeatedDistributedSampler)
        assert torch.cat([labels for _, labels in val]).tolist() == separable_data(12, seed=1).tensors[1].tolist()
    finally:
        dist.destroy_process_group()
