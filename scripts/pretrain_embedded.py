"""Pretrain an embedded backbone on procedural images and ship its weights.

    python scripts/pretrain_embedded.py --name swin_mini_synthetic --seed 0 --out src/monatune/weights/
    python scripts/pretrain_embedded.py --name swin_nano_synthetic --seed 0 --out src/monatune/weights/

Renders a fixed pool of shape/texture images (``monatune.data.synthetic_images``, fixed by the
seed), trains the Swin on the 24-class pretext task with AdamW + warmup/cosine on the CPU, then
writes ``<name>.safetensors`` (fp16, without the pretext head) and a JSON model card. Each backbone's
recipe (pool size, epochs, batch, lr, drop path, precision) is its ``pretraining`` entry in
``monatune.backbones.embedded.EMBEDDED_BACKBONES``; flags override it.
The card also records a check that pretraining helps: a linear probe (frozen pooled features +
logistic regression) on scikit-learn's digits, pretrained weights vs the same network at random init.
Same seed, machine and thread count give identical tensors (the safetensors header may list the
metadata in another order, so compare tensors, not file hashes); elsewhere they agree up to rounding.
On 2 free cores: swin_nano_synthetic ~26 minutes (fp32), swin_mini_synthetic ~45 minutes (bf16
autocast, which the AVX512-BF16 cores of this machine run 1.7x faster than fp32); 2-3 GB of memory.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from monatune.backbones.embedded import EMBEDDED_BACKBONES, create_embedded
from monatune.backbones.weights import load_timm_swin_weights
from monatune.data import synthetic_images as synth
from monatune.data.digits import Digits

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    p.add_argument("--name", default="swin_mini_synthetic", choices=sorted(EMBEDDED_BACKBONES))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("src/monatune/weights"))
    p.add_argument("--train-size", type=int, help="images in the fixed training pool (default: the backbone's recipe)")
    p.add_argument("--val-size", type=int, default=2048)
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--warmup-fraction", type=float, default=0.05)
    p.add_argument("--drop-path-rate", type=float)
    p.add_argument("--precision", choices=("fp32", "bf16"), help="bf16 = bf16 autocast, fp32 master weights")
    p.add_argument("--augment", choices=("dihedral", "none"), help="dihedral: a random flip/transpose per image")
    p.add_argument("--label-smoothing", type=float, default=0.1)
    p.add_argument("--teacher", help="an embedded Swin with shipped weights whose stage-3 map the student's last block also learns to predict")
    p.add_argument("--distill-weight", type=float, default=1.0, help="weight of the feature-distillation loss (with --teacher)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--probe-only", action="store_true", help="only rerun the digits probe of the weights in --out, into their card")
    args = p.parse_args(argv)
    for key, value in EMBEDDED_BACKBONES[args.name]["pretraining"].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def render_pool(size: int, seed: int, split: str, chunk: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """(uint8 (N, 64, 64, 3), int64 (N,)): images 0..size-1 of ``split``."""
    images, labels = [], []
    for start in range(0, size, chunk):
        im, lab = synth.render_synthetic(range(start, min(start + chunk, size)), seed, split)
        images.append(torch.from_numpy(im))
        labels.append(torch.from_numpy(lab))
    return torch.cat(images), torch.cat(labels)


def dihedral(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each (B, H, W, C) image under a random one of the 8 flips/rotations (labels are invariant)."""
    flips = torch.randint(0, 2, (3, len(images), 1, 1, 1), generator=generator).bool()
    images = torch.where(flips[0], images.flip(1), images)
    images = torch.where(flips[1], images.flip(2), images)
    return torch.where(flips[2], images.transpose(1, 2), images)


def lr_at(step: int, total: int, warmup: int, peak: float) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    return 0.5 * peak * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


@torch.no_grad()
def accuracy(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, batch: int = 512) -> float:
    model.eval()
    correct = sum(
        int((model(synth.normalize(images[i : i + batch])).argmax(1) == labels[i : i + batch]).sum())
        for i in range(0, len(images), batch)
    )
    return correct / len(images)


@torch.no_grad()
def pooled_features(model: torch.nn.Module, images: torch.Tensor, batch: int = 256) -> dict[str, np.ndarray]:
    """Frozen features per image: each stage's (a ViT's: each block's) output averaged over positions ("stage1".."stage4", (N, C_i))
    and "final" (after the last norm, globally pooled: what a linear head on the classifier sees)."""
    model.eval()
    chunks: dict[str, list[torch.Tensor]] = {}
    vit = hasattr(model, "blocks")  # a ViT: its blocks stand for the stages (patch tokens averaged)
    for i in range(0, len(images), batch):
        h = model.patch_embed(images[i : i + batch])
        if vit:
            h = model.norm_pre(model._pos_embed(h))
        for index, stage in enumerate(model.blocks if vit else model.layers):
            h = stage(h)  # NHWC (Swin) or (B, N, C) tokens (ViT)
            chunks.setdefault(f"stage{index + 1}", []).append(h[:, model.num_prefix_tokens :].mean(1) if vit else h.mean((1, 2)))
        chunks.setdefault("final", []).append(model.forward_head(model.norm(h), pre_logits=True))
    return {k: torch.cat(v).numpy() for k, v in chunks.items()}


def _probe_accuracy(x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray, seed: int) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000, random_state=seed))
    clf.fit(x_train, y_train)
    return float(clf.score(x_val, y_val))


def linear_probe(model: torch.nn.Module | None, seed: int) -> dict[str, float] | float:
    """Digits val accuracy of logistic regression on frozen features, per feature of ``pooled_features``
    (None: one figure, on the raw 8x8 pixels)."""
    train, val = Digits("train", seed=seed), Digits("val", seed=seed)
    y_train, y_val = train.labels.numpy(), val.labels.numpy()
    if model is None:  # context: the same classifier on the original pixels
        pixels = [d.images[:, 0, 4::8, 4::8].flatten(1).numpy() for d in (train, val)]
        return _probe_accuracy(pixels[0], y_train, pixels[1], y_val, seed)
    f_train, f_val = pooled_features(model, train.tensors()[0]), pooled_features(model, val.tensors()[0])
    return {k: _probe_accuracy(f_train[k], y_train, f_val[k], y_val, seed) for k in f_train}


def probe_weights(name: str, weights_path: Path, seed: int) -> dict:
    """The digits probe of the shipped file (read back: fp16 as shipped) vs the same network at random
    init (seeded), and raw pixels."""
    pretrained = create_embedded(name, load_weights=False)
    load_timm_swin_weights(pretrained, weights_path)
    torch.manual_seed(seed)
    random_init = create_embedded(name, load_weights=False)
    return {"pretrained": linear_probe(pretrained, seed), "random_init": linear_probe(random_init, seed), "raw_pixels": linear_probe(None, seed)}


def _rounded(value):
    return {k: _rounded(v) for k, v in value.items()} if isinstance(value, dict) else round(value, 4)


PROBE_PROTOCOL = (
    "sklearn digits, stratified 80/20 split (seed), 64x64 upsampled; StandardScaler + LogisticRegression on "
    "frozen features: each stage's output averaged over positions (stage1..stage4) and the final normed, "
    "pooled features (final); raw_pixels = the same classifier on the original 8x8 pixels"
)


TEACHER_STAGE = 3  # the teacher's stage whose map the student regresses (4x4 at 64 px: the Swin mini's best probe)


class FeatureDistillation(torch.nn.Module):
    """Feature distillation from a frozen embedded Swin: the student ViT's last-block patch tokens,
    average-pooled to the teacher's stage-3 grid and projected to its width, regress the teacher's
    stage-3 map, each position layer-normalised (smooth L1). The projector is trained with the student
    and not shipped. Its point: a ViT learns slowly from 24 labels on a small pool, and a convolutional-ish
    teacher's dense map gives it a target at every position."""

    def __init__(self, teacher_name: str, student_width: int, stage: int = TEACHER_STAGE) -> None:
        super().__init__()
        self.teacher = create_embedded(teacher_name).eval().requires_grad_(False)  # its shipped weights
        self.stage = stage
        width = self.teacher.layers[stage - 1].blocks[-1].mlp.fc2.out_features
        self.projector = torch.nn.Linear(student_width, width)

    @torch.no_grad()
    def target(self, x: torch.Tensor) -> torch.Tensor:
        h = self.teacher.patch_embed(x)
        for layer in self.teacher.layers[: self.stage]:
            h = layer(h)
        h = h.float()  # NHWC
        return F.layer_norm(h, h.shape[-1:])

    def forward(self, student_tokens: torch.Tensor, num_prefix: int, x: torch.Tensor) -> torch.Tensor:
        target = self.target(x)
        patches = student_tokens[:, num_prefix:]
        side = math.isqrt(patches.shape[1])
        grid = patches.reshape(len(patches), side, side, -1).permute(0, 3, 1, 2)
        pooled = F.adaptive_avg_pool2d(grid, target.shape[1:3]).permute(0, 2, 3, 1)
        return F.smooth_l1_loss(self.projector(pooled).float(), target)


def pretrain(args: argparse.Namespace) -> tuple[torch.nn.Module, dict]:
    t0 = time.time()
    train_images, train_labels = render_pool(args.train_size, args.seed, "train")
    val_images, val_labels = render_pool(args.val_size, args.seed, "val")
    print(f"rendered {len(train_images)} train + {len(val_images)} val images in {time.time() - t0:.0f}s", flush=True)

    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    # Pretraining sees 64x64 only: a static attention mask (strict size) is ~2x faster on a CPU.
    # The parameters are the same as those of the shipped any-size config.
    model = create_embedded(
        args.name, num_classes=synth.NUM_CLASSES, load_weights=False, drop_path_rate=args.drop_path_rate, strict_img_size=True
    )
    if args.teacher and not hasattr(model, "blocks"):
        raise SystemExit(f"--teacher distils into a ViT's last block; {args.name} is not a ViT")
    distill = FeatureDistillation(args.teacher, model.embed_dim) if args.teacher else None
    no_decay = model.no_weight_decay()
    decay = [p for n, p in model.named_parameters() if p.ndim > 1 and n not in no_decay]
    other = [p for n, p in model.named_parameters() if not (p.ndim > 1 and n not in no_decay)]
    if distill is not None:
        decay.append(distill.projector.weight)
        other.append(distill.projector.bias)
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": args.weight_decay}, {"params": other, "weight_decay": 0.0}], lr=args.lr
    )
    steps_per_epoch = len(train_images) // args.batch_size
    total = steps_per_epoch * args.epochs
    warmup = max(1, int(args.warmup_fraction * total))
    step, history = 0, []
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(len(train_images), generator=generator)
        correct = seen = 0
        loss_sum = 0.0
        for b in range(steps_per_epoch):
            idx = order[b * args.batch_size : (b + 1) * args.batch_size]
            x = synth.normalize(dihedral(train_images[idx], generator) if args.augment == "dihedral" else train_images[idx])
            y = train_labels[idx]
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, total, warmup, args.lr)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.precision == "bf16"):
                tokens = model.forward_features(x)
                logits = model.forward_head(tokens)
                distill_loss = distill(tokens, model.num_prefix_tokens, x) if distill is not None else None
            loss = F.cross_entropy(logits.float(), y, label_smoothing=args.label_smoothing)
            if distill_loss is not None:
                loss = loss + args.distill_weight * distill_loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            optimizer.step()
            step += 1
            loss_sum += float(loss.detach()) * len(y)
            correct += int((logits.argmax(1) == y).sum())
            seen += len(y)
        val_acc = accuracy(model, val_images, val_labels)
        history.append({"epoch": epoch + 1, "train_loss": loss_sum / seen, "train_acc": correct / seen, "val_acc": val_acc})
        print(
            f"epoch {epoch + 1}/{args.epochs}  loss {loss_sum / seen:.3f}  train acc {correct / seen:.3f}  "
            f"val acc {val_acc:.3f}  ({time.time() - t0:.0f}s)",
            flush=True,
        )
    return model, {"steps": step, "history": history, "train_seconds": time.time() - t0}


def save_weights(model: torch.nn.Module, path: Path, metadata: dict[str, str]) -> None:
    """The backbone without its pretext head, stored in fp16 (loaders cast back to fp32)."""
    state = {k: v.detach().half().contiguous() for k, v in model.state_dict().items() if not k.startswith("head.")}
    save_file(state, str(path), metadata=metadata)


def reprobe(args: argparse.Namespace) -> None:
    """--probe-only: the digits probe of the weights already in ``--out``, written into their card."""
    config = EMBEDDED_BACKBONES[args.name]
    card_path = args.out / config["card_file"]
    card = json.loads(card_path.read_text())
    probe = probe_weights(args.name, args.out / config["weights_file"], card["pretraining_data"]["seed"])
    print(f"digits linear probe (val acc): {probe}", flush=True)
    card["results"]["digits_linear_probe_val_accuracy"] = _rounded(probe)
    card["results"]["digits_linear_probe_protocol"] = PROBE_PROTOCOL
    card_path.write_text(json.dumps(card, indent=2) + "\n")
    print(f"updated {card_path}")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.probe_only:
        return reprobe(args)
    args.out.mkdir(parents=True, exist_ok=True)
    name = args.name
    config = EMBEDDED_BACKBONES[name]
    model, run = pretrain(args)
    final = run["history"][-1]
    weights_path = args.out / config["weights_file"]
    save_weights(
        model,
        weights_path,
        {"name": name, "seed": str(args.seed), "steps": str(run["steps"]), "pretext_val_accuracy": f"{final['val_acc']:.4f}"},
    )

    # The probe reads the saved fp16 file back, so it checks the shipped weights themselves.
    probe = probe_weights(name, weights_path, args.seed)
    print(f"digits linear probe (val acc): {probe}", flush=True)

    blob = weights_path.read_bytes()
    card = {
        "name": name,
        "description": config["description"],
        "architecture": f"{type(model).__module__}.{type(model).__name__}",
        "timm_kwargs": config["timm_kwargs"],
        "parameters_without_head": sum(p.numel() for n, p in model.named_parameters() if not n.startswith("head.")),
        "input": {"size": config["input_size"], "mean": config["mean"], "std": config["std"], "range": "RGB in [0, 1] before standardising"},
        "weights": {"file": weights_path.name, "dtype": "float16", "bytes": len(blob), "sha256": hashlib.sha256(blob).hexdigest(), "head": "none (pretext head dropped)"},
        "pretraining_data": {
            "generator": "monatune.data.synthetic_images.render_synthetic",
            "classes": list(synth.CLASS_NAMES),
            "train_images": args.train_size,
            "val_images": args.val_size,
            "augmentation": "random flips and transposes (8 dihedral transforms)" if args.augment == "dihedral" else "none",
            "seed": args.seed,
        },
        "training": {
            "optimizer": "AdamW (no decay on norms, biases, relative-position tables)",
            "lr": args.lr,
            "schedule": f"linear warmup {args.warmup_fraction:.0%} then cosine to 0",
            "weight_decay": args.weight_decay,
            "batch_size": args.batch_size,
            "epochs": args.epochs,
            "steps": run["steps"],
            "drop_path_rate": args.drop_path_rate,
            "precision": "bf16 autocast, fp32 weights" if args.precision == "bf16" else "fp32",
            "label_smoothing": args.label_smoothing,
            **({"feature_distillation": {"teacher": args.teacher, "teacher_stage": TEACHER_STAGE, "weight": args.distill_weight,
                                         "loss": "smooth L1, student last-block patch tokens pooled to the teacher's grid, linear projector (not shipped), layer-normed targets"}}
               if args.teacher else {}),
            "threads": args.threads,
            "wall_seconds": round(run["train_seconds"]),
        },
        "results": {
            "pretext_train_accuracy": round(final["train_acc"], 4),
            "pretext_val_accuracy": round(final["val_acc"], 4),
            "history": [{k: round(v, 4) if isinstance(v, float) else v for k, v in h.items()} for h in run["history"]],
            "digits_linear_probe_val_accuracy": _rounded(probe),
            "digits_linear_probe_protocol": PROBE_PROTOCOL,
        },
        "command": "python scripts/pretrain_embedded.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "software": {"python": platform.python_version(), "torch": torch.__version__, "timm": __import__("timm").__version__},
    }
    card_path = args.out / config["card_file"]
    card_path.write_text(json.dumps(card, indent=2) + "\n")
    print(f"wrote {weights_path} ({len(blob) / 1e6:.2f} MB) and {card_path}")


if __name__ == "__main__":
    main()
