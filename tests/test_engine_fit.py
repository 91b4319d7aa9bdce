"""End-to-end fits on a tiny Swin: loss falls, resume after a crash matches an unbroken run,
checkpoints hold trainable tensors only, a NaN loss stops cleanly."""

from __future__ import annotations

import lightning as L
import pytest
import torch

import monatune
from monatune.engine.callbacks import History, RNGState
from monatune.engine.checkpoint_io import SafeCheckpointIO
from monatune.engine.module import NonFiniteLossError
from monatune.engine.trainer import build_trainer
from monatune.tasks.classification import ClassificationModule
from monatune.tasks.classification.data import ClassificationData

from engine_helpers import separable_data, tiny_config, tiny_swin


def make(cfg, seed=0):
    torch.manual_seed(seed)
    model = monatune.apply(tiny_swin(), cfg.model.method, train_modules=["head"])
    module = ClassificationModule(model, cfg)
    data = ClassificationData(cfg, separable_data(48), separable_data(16, seed=1))
    return module, data


@pytest.mark.parametrize("method", ["mona", "lora", "full", "adaptformer"])
def test_loss_falls(tmp_path, method):
    cfg = tiny_config(tmp_path, method, trainer__max_epochs=4)
    L.seed_everything(0, verbose=False)
    module, data = make(cfg)
    history = History()
    trainer = build_trainer(cfg, [history], checkpoints=False, logging=False)
    trainer.fit(module, datamodule=data)
    assert len(history.train_loss) == 4
    assert history.train_loss[-1] < 0.8 * history.train_loss[0], history.train_loss
    assert trainer.global_step == 4 * 6


class Crash(L.Callback):
    def __init__(self, at_step: int) -> None:
        self.at_step = at_step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.at_step:
            raise RuntimeError("simulated crash")


def trainable_snapshot(module):
    return {k: v.detach().clone() for k, v in module.model.named_parameters() if v.requires_grad}


def test_resume_after_crash_matches_unbroken_run(tmp_path):
    L.seed_everything(0, verbose=False)
    cfg_a = tiny_config(tmp_path / "a", "mona")
    module_a, data_a = make(cfg_a)
    trainer_a = build_trainer(cfg_a, [History(), RNGState()], logging=False)
    trainer_a.fit(module_a, datamodule=data_a)

    cfg_b = tiny_config(tmp_path / "b", "mona")
    L.seed_everything(0, verbose=False)
    module_b, data_b = make(cfg_b)
    trainer_b = build_trainer(cfg_b, [History(), RNGState(), Crash(at_step=9)], logging=False)
    with pytest.raises(RuntimeError, match="simulated crash"):
        trainer_b.fit(module_b, datamodule=data_b)
    last = tmp_path / "b" / "checkpoints" / "last.ckpt"
    assert last.is_file()

    # A fresh process rebuilds everything from the config (same pretrained = same frozen weights;
    # the adapters start from other random values), then resumes from last.ckpt.
    module_c, data_c = make(cfg_b, seed=0)
    for name, p in module_c.model.named_parameters():
        if p.requires_grad:
            torch.nn.init.normal_(p)
    L.seed_everything(123, verbose=False)  # resumed RNG must come from the checkpoint, not from here
    history_c = History()
    trainer_c = build_trainer(cfg_b, [history_c, RNGState()], logging=False)
    trainer_c.fit(module_c, datamodule=data_c, ckpt_path=str(last))

    assert trainer_c.global_step == trainer_a.global_step == 18
    a, c = trainable_snapshot(module_a), trainable_snapshot(module_c)
    assert a.keys() == c.keys()
    for k in a:
        torch.testing.assert_close(a[k], c[k], rtol=1e-5, atol=1e-6, msg=k)
    assert float(trainer_c.callback_metrics["val/loss"]) == pytest.approx(float(trainer_a.callback_metrics["val/loss"]), rel=1e-5)
    assert len(history_c.train_loss) == 3  # history carried over the resume


def test_checkpoint_holds_trainable_tensors_only(tmp_path):
    cfg = tiny_config(tmp_path, "lora", trainer__max_epochs=1)
    module, data = make(cfg)
    build_trainer(cfg, [RNGState()], logging=False).fit(module, datamodule=data)
    files = list((tmp_path / "checkpoints").iterdir())
    assert not [f for f in files if f.name.endswith(".tmp")]
    ckpt = SafeCheckpointIO().load_checkpoint(tmp_path / "checkpoints" / "last.ckpt")
    trainable = {f"model.{n}" for n, p in module.model.named_parameters() if p.requires_grad}
    params = {k for k in ckpt["state_dict"] if k in dict(module.named_parameters())}
    assert params == trainable
    assert ckpt["monatune"]["tuning"]["method"] == "lora"
    assert "optimizer_states" in ckpt and "lr_schedulers" in ckpt

    # a checkpoint of another method is refused with a message naming the problem
    other_cfg = tiny_config(tmp_path / "other", "mona", trainer__max_epochs=2)
    other, other_data = make(other_cfg)
    with pytest.raises(ValueError, match="lora"):
        build_trainer(other_cfg, logging=False).fit(other, datamodule=other_data, ckpt_path=str(tmp_path / "checkpoints" / "last.ckpt"))


def test_nan_loss_stops_and_keeps_last_checkpoint(tmp_path):
    cfg = tiny_config(tmp_path, "mona", trainer__max_epochs=2)
    module, data = make(cfg)

    class PoisonAfterFirstEpoch(L.Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            if trainer.current_epoch == 1:
                with torch.no_grad():
                    pl_module.model.head.fc.weight.fill_(float("nan"))

    trainer = build_trainer(cfg, [RNGState(), PoisonAfterFirstEpoch()], logging=False)
    with pytest.raises(NonFiniteLossError, match="non-finite training loss at step 6"):
        trainer.fit(module, datamodule=data)
    ckpt = SafeCheckpointIO().load_checkpoint(tmp_path / "checkpoints" / "last.ckpt")
    assert ckpt["global_step"] == 6
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values() if v.is_floating_point())


def test_history_records_each_epochs_validation_metrics(tmp_path):
    cfg = tiny_config(tmp_path, "mona", trainer__max_epochs=2)
    module, data = make(cfg)
    history = History()
    trainer = build_trainer(cfg, [history], checkpoints=False, logging=False)
    trainer.fit(module, datamodule=data)
    assert [v["epoch"] for v in history.val] == [0, 1]
    assert history.val[-1]["val/top1"] == pytest.approx(float(trainer.callback_metrics["val/top1"]))


def _trained(cfg, drop_path: bool = True) -> tuple[dict[str, torch.Tensor], int]:
    """(trainable tensors after fitting ``cfg``'s tiny classifier, optimizer steps taken)."""
    module, data = make(cfg)
    if not drop_path:  # tiny_swin keeps timm's default stochastic depth: its draws depend on the batching
        for m in module.model.modules():
            if hasattr(m, "drop_prob"):
                m.drop_prob = 0.0
    trainer = build_trainer(cfg, checkpoints=False, logging=False)
    trainer.fit(module, datamodule=data)
    return {n: p.detach().clone() for n, p in module.model.named_parameters() if p.requires_grad}, trainer.global_step


def test_gradient_accumulation_matches_the_larger_batch(tmp_path):
    """Batches of 4 accumulated over 2 steps train like batches of 8 (same samples per optimizer step).
    SGD: Adam's first steps are lr * sign(g), which float noise in near-zero gradients would flip."""
    sgd = {"trainer__max_epochs": 1, "optim__optimizer": "sgd", "optim__lr": 0.05}
    big, big_steps = _trained(tiny_config(tmp_path / "a", "lora", data__batch_size=8, **sgd), drop_path=False)
    acc, acc_steps = _trained(tiny_config(tmp_path / "b", "lora", data__batch_size=4, trainer__accumulate_grad_batches=2, **sgd), drop_path=False)
    assert acc_steps == big_steps == 48 // 8
    for name in big:
        torch.testing.assert_close(acc[name], big[name], rtol=1e-4, atol=1e-6, msg=name)


def test_block_checkpointing_from_the_config_trains_identically(tmp_path):
    from monatune.checkpointing import _INNER_ATTR

    plain, _ = _trained(tiny_config(tmp_path / "a", "mona", trainer__max_epochs=1))
    cfg = tiny_config(tmp_path / "b", "mona", trainer__max_epochs=1, model__checkpoint_blocks=True)
    module, _ = make(cfg)
    blocks = [m for m in module.model.modules() if _INNER_ATTR in m.__dict__]
    assert len(blocks) == 4  # every block of the tiny Swin (depths 1, 1, 1, 1)
    checkpointed, _ = _trained(cfg)
    for name in plain:  # dropout and drop-path draws are replayed in the recomputation
        torch.testing.assert_close(checkpointed[name], plain[name], rtol=1e-5, atol=1e-7, msg=name)
    staged, _ = make(tiny_config(tmp_path / "c", "mona", model__checkpoint_blocks=[0]))
    assert sum(_INNER_ATTR in m.__dict__ for m in staged.model.modules()) == 1


def test_checkpoint_blocks_config_values_are_checked(tmp_path):
    from monatune.engine.config import ConfigError

    with pytest.raises(ConfigError, match="model.checkpoint_blocks"):
        tiny_config(tmp_path, model__checkpoint_blocks="yes")


def test_checkpointing_an_absent_stage_and_zero_accumulation_are_refused(tmp_path):
    from monatune.engine.config import ConfigError

    with pytest.raises(ValueError, match=r"no stage\(s\) \[5\] in this model; its stages: \[0, 1, 2, 3\]"):
        make(tiny_config(tmp_path, model__checkpoint_blocks=[0, 5]))
    with pytest.raises(ConfigError, match="trainer.accumulate_grad_batches: must be at least 1"):
        tiny_config(tmp_path, trainer__accumulate_grad_batches=0)
    with pytest.raises(ConfigError, match="model.checkpoint_blocks"):
        tiny_config(tmp_path, model__checkpoint_blocks=[-1])


class LearningRates(L.Callback):
    def __init__(self) -> None:
        self.lrs: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.lrs.append(trainer.optimizers[0].param_groups[0]["lr"])


def test_warmup_epochs_in_an_iteration_based_run_count_passes_over_the_loader(tmp_path):
    """``warmup_epochs: 1`` with ``max_steps`` = 3 epochs' worth: the learning rate peaks after one pass
    over the loader (6 batches), not after the whole run (before: warmup = k times the run's length)."""
    cfg = tiny_config(tmp_path, "mona", trainer__max_epochs=-1, trainer__max_steps=18, optim__warmup_epochs=1.0,
                      optim__warmup_steps=0, optim__schedule="constant")  # fmt: skip
    L.seed_everything(0, verbose=False)
    module, data = make(cfg)  # 48 images, batches of 8: 6 steps an epoch
    lrs = LearningRates()
    build_trainer(cfg, [lrs], checkpoints=False, logging=False).fit(module, datamodule=data)
    assert len(lrs.lrs) == 18
    peak = cfg.optim.lr
    assert all(lr < peak for lr in lrs.lrs[:6]) and lrs.lrs[6:] == pytest.approx([peak] * 12)


class _FakeTrainer:
    def __init__(self, rank: int, world_size: int) -> None:
        self.is_global_zero, self.world_size = rank == 0, world_size


class _FakeModule:
    """all_gather as two ranks would answer: this rank's tensor and the other rank's."""

    device = torch.device("cpu")

    def __init__(self, other: list[float]) -> None:
        self.other = torch.tensor(other)

    def all_gather(self, t: torch.Tensor) -> torch.Tensor:
        return torch.stack([t, self.other])


def test_history_averages_the_ranks_losses_and_only_global_rank_zero_writes(tmp_path):
    """Before: every node's local rank 0 wrote its own, unsynced losses through one fixed temp name."""
    mine, theirs = [1.0, 3.0], [3.0, 5.0]
    paths = {rank: tmp_path / f"rank{rank}" / "history.json" for rank in (0, 1)}
    for rank, path in paths.items():
        history = History(path)
        for value in mine:
            history.on_train_batch_end(None, None, {"loss": torch.tensor(value)}, None, 0)
        history.on_train_epoch_end(_FakeTrainer(rank, 2), _FakeModule(theirs))
        assert history.step_loss == [2.0, 4.0] and history.train_loss == [3.0]
    assert paths[0].is_file() and not paths[1].parent.exists()
    assert [p.name for p in paths[0].parent.iterdir()] == ["history.json"]  # no temp file left


def test_history_keeps_a_partial_epoch_across_a_mid_epoch_checkpoint():
    history = History()
    history.on_train_batch_end(None, None, torch.tensor(2.0), None, 0)
    resumed = History()
    resumed.load_state_dict(history.state_dict())
    resumed.on_train_batch_end(None, None, torch.tensor(4.0), None, 1)
    resumed.on_train_epoch_end(_FakeTrainer(0, 1), _FakeModule([]))
    assert resumed.step_loss == [2.0, 4.0] and resumed.train_loss == [3.0]
