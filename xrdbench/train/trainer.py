"""One trainer for every single-phase model: optimiser and schedule from config, MGDA-UB or a
fixed weighted sum over tasks, gradient clipping, best checkpoint on validation, resume.

Outputs in ``out_dir``: ``last.pt`` (everything needed to resume: model, optimiser,
scheduler, epoch, RNG states), ``best.pt`` (model weights with the best validation
top-1), and ``history.csv`` (one row per epoch: training loss per task, MGDA weights,
validation loss and top-1, learning rate, the epoch's wall time in seconds). Resuming from ``last.pt`` with the same
config gives the same final weights as an uninterrupted run (on CPU).
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm import tqdm

from xrdbench.atomic import atomic_path, write_csv_atomic
from xrdbench.errors import ConfigError
from xrdbench.train.data import ChunkShuffleSampler, ZarrBatches
from xrdbench.train.mgda import mgda_backward

#: Published optimisation settings, by model (REFERENCE.md); config keys override them.
PRESETS = {
    "mlp": dict(optimizer="adam", lr=1e-4, batch_rows=256, schedule="constant"),
    "cnn": dict(optimizer="adam", lr=1e-4, batch_rows=256, schedule="constant"),
    "nopool_cnn": dict(optimizer="adam", lr=1e-4, batch_rows=256, schedule="constant"),
    "rcnet": dict(optimizer="adam", lr=1e-3, batch_rows=256, schedule="constant"),
    "xrdmamba": dict(optimizer="adamw", lr=1e-2, weight_decay=1e-4, batch_rows=256, schedule="cosine_second_half"),
    "xrdecoupler": dict(optimizer="adam", lr=1e-2, batch_rows=64, schedule="linear", final_lr_factor=0.002),
}
DEFAULTS = dict(epochs=200, weight_decay=0.0, final_lr_factor=1.0, grad_clip=5.0, seed=0, input_scale=0.01,
                task_weighting="mgda", task_weights=None, beta=1.0, num_workers=0)


def train_options(model_name: str, overrides: dict) -> dict:
    options = dict(DEFAULTS, **PRESETS.get(model_name, {}))
    options.update({key: value for key, value in overrides.items() if value is not None})
    if options["task_weighting"] not in ("mgda", "fixed"):
        raise ConfigError(f"train.task_weighting must be mgda or fixed, got {options['task_weighting']!r}")
    return options


def make_optimizer(model: torch.nn.Module, options: dict) -> torch.optim.Optimizer:
    kind = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}.get(options["optimizer"])
    if kind is None:
        raise ConfigError(f"train.optimizer must be adam or adamw, got {options['optimizer']!r}")
    return kind(model.parameters(), lr=options["lr"], weight_decay=options["weight_decay"])


def lr_factor(epoch: int, options: dict) -> float:
    """Learning-rate multiplier for ``epoch`` (0-based) under the configured schedule."""
    epochs, final = options["epochs"], options["final_lr_factor"]
    progress = epoch / max(epochs - 1, 1)
    if options["schedule"] == "constant":
        return 1.0
    if options["schedule"] == "linear":  # XRDecoupler: linear decay to final_lr_factor×
        return 1.0 + (final - 1.0) * progress
    if options["schedule"] == "cosine_second_half":  # XRDMamba: flat, then cosine decay in the second half
        half = epochs / 2
        return 1.0 if epoch < half else 0.5 * (1 + math.cos(math.pi * (epoch - half) / max(epochs - half, 1)))
    raise ConfigError(f"train.schedule: unknown schedule {options['schedule']!r}")


def task_losses(logits: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Cross-entropy per task present in both; superclass targets of −1 (K > 1) are ignored."""
    return {task: F.cross_entropy(logits[task], targets[task].to(logits[task].device), ignore_index=-1)
            for task in logits if task in targets and task != "embedding"}


def _loader(path, options, shuffle: bool, seed: int, tasks):
    dataset = ZarrBatches(path, batch_rows=options["batch_rows"], tasks=tasks)
    sampler = ChunkShuffleSampler(dataset, seed=seed, shuffle=shuffle)
    return DataLoader(dataset, batch_size=None, sampler=sampler, num_workers=options["num_workers"]), sampler


def _step(model, batch, options, optimizer, device, tasks) -> dict[str, float]:
    x = batch["x"].to(device) * options["input_scale"]
    optimizer.zero_grad(set_to_none=True)
    multi_task = options["task_weighting"] == "mgda" and len(tasks) > 1
    outputs = model(x, return_embedding=True) if multi_task else model(x)
    losses = task_losses(outputs, batch["targets"])
    record = {f"loss_{task}": float(loss.detach()) for task, loss in losses.items()}
    if multi_task:
        alpha = mgda_backward(outputs["embedding"], losses)
        record.update({f"alpha_{task}": value for task, value in alpha.items()})
    else:  # the paper's fixed objective: L_sp + β Σ_t L_t, unless task_weights names each weight
        weights = options["task_weights"] or {}
        sum(weights.get(task, 1.0 if task == "space_group" else options["beta"]) * loss
            for task, loss in losses.items()).backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), options["grad_clip"])
    optimizer.step()
    return record


@torch.no_grad()
def validate(model, loader, options, device) -> dict[str, float]:
    model.eval()
    correct = total = 0
    loss_sum = 0.0
    for batch in loader:
        outputs = model(batch["x"].to(device) * options["input_scale"])
        target = batch["targets"]["space_group"].to(device)
        loss_sum += float(F.cross_entropy(outputs["space_group"], target, reduction="sum"))
        correct += int((outputs["space_group"].argmax(1) == target).sum())
        total += len(target)
    model.train()
    return {"val_loss": loss_sum / max(total, 1), "val_top1": correct / max(total, 1)}


def train(model: torch.nn.Module, train_path, val_path, out_dir, options: dict, *, tasks=("space_group",),
          device: str | None = None, progress: bool = True) -> pd.DataFrame:
    """Train ``model``, whose heads are ``tasks``, and return the history (also in ``history.csv``)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.manual_seed(options["seed"])
    model.to(device).train()
    optimizer = make_optimizer(model, options)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: lr_factor(epoch, options))
    tasks = tuple(tasks)
    train_loader, sampler = _loader(train_path, options, True, options["seed"], tasks)
    val_loader, _ = _loader(val_path, options, False, options["seed"], ("space_group",))
    history, start, best = [], 0, -1.0
    last = out_dir / "last.pt"
    if last.exists():
        state = torch.load(last, map_location=device, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])
        start, best, history = state["epoch"] + 1, state["best"], state["history"]
    for epoch in tqdm(range(start, options["epochs"]), desc="epochs", initial=start, total=options["epochs"],
                      disable=not progress):
        sampler.set_epoch(epoch)
        started = time.perf_counter()
        # A one-row batch (a split of n·b + 1 rows) cannot train BatchNorm layers; it is skipped.
        records = [_step(model, batch, options, optimizer, device, tasks) for batch in train_loader
                   if len(batch["x"]) > 1]
        row = {"epoch": epoch, "lr": optimizer.param_groups[0]["lr"],
               **pd.DataFrame(records).mean().to_dict(), **validate(model, val_loader, options, device)}
        row["wall_s"] = time.perf_counter() - started
        scheduler.step()
        history.append(row)
        if row["val_top1"] > best:
            best = row["val_top1"]
            with atomic_path(out_dir / "best.pt") as tmp:
                torch.save({"model": model.state_dict(), "epoch": epoch, "val_top1": best}, tmp)
        with atomic_path(last) as tmp:
            torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(), "rng": torch.get_rng_state(), "epoch": epoch,
                        "best": best, "history": history}, tmp)
        write_csv_atomic(pd.DataFrame(history), out_dir / "history.csv")
    return pd.DataFrame(history)
