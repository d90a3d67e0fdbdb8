"""One trainer for every model: optimiser and schedule from config, an objective chosen by
the model kind, gradient clipping, best checkpoint on validation, resume.

Training runs in *periods*, each ended by a validation, a checkpoint and a history row:

- single-phase models count **epochs**: a period is one pass over the train split; the
  objective is MGDA-UB or a fixed weighted sum of cross-entropies over the tasks, and the
  best checkpoint has the best validation top-1;
- multi-phase models (:data:`MULTI_PHASE_OBJECTIVES`) count optimisation **steps**: a
  period is ``eval_every`` steps drawn from an endless stream of shuffled epochs (the
  last period may be shorter); the learning rate follows the schedule per step
  (``warmup_cosine``: the multi-phase paper's linear warmup, then cosine decay); the
  objective is the BCE presence loss (``presence``) or the assignment loss (``slots``,
  which also logs the slot diversity), and the best checkpoint has the best validation
  micro-F1 (presence: at the best threshold of the sweep; slots: at the best gate).
  Batches feed the model ``x`` and the measurement ``mask``.

Outputs in ``out_dir``: ``last.pt`` (everything needed to resume: model, optimiser,
scheduler, position, RNG states), ``best.pt`` (model weights with the best validation
metric), and ``history.csv``, one row per period. Single-phase: epoch, learning rate,
training loss per task, MGDA weights, validation loss and top-1, the epoch's wall time in
seconds. Multi-phase: step, lr, training loss, val_micro_f1, val_threshold (threshold or
gate), slot_diversity (slot models: the mean absolute cosine similarity between slots over
the period's batches), wall_s. Resuming from ``last.pt`` with the same config gives the
same final weights as an uninterrupted run (on CPU).
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm import tqdm

from xrdbench.atomic import atomic_path, write_csv_atomic
from xrdbench.errors import ConfigError
from xrdbench.evaluate.multi_phase import evaluate_presence, evaluate_slots
from xrdbench.train.data import ChunkShuffleSampler, ZarrBatches
from xrdbench.train.mgda import mgda_backward
from xrdbench.train.set_losses import assignment_loss, presence_loss, slot_diversity

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
                task_weighting="mgda", task_weights=None, beta=1.0, num_workers=0, precision="fp32",
                augment_on_the_fly=None, augment_bank=None)

#: Multi-phase models and the objective each trains with.
MULTI_PHASE_OBJECTIVES = {"multilabel_cnn": "presence", "multilabel_transformer": "presence",
                          "phase_cluster_transformer": "slots"}
#: The multi-phase paper's protocol (Appendix A §1.6–1.7), shared by its three models; the schema's
#: ``multi_phase.train`` defaults are these values.
MULTI_PHASE_DEFAULTS = dict(steps=1_000_000, warmup_steps=4000, eval_every=2000, optimizer="adamw", lr=1e-4,
                            weight_decay=1e-2, batch_rows=256, schedule="warmup_cosine", final_lr_factor=0.0,
                            grad_clip=1.0, seed=0, input_scale=1.0, num_workers=0, precision="fp32",
                            augment_on_the_fly=None, augment_bank=None)


def train_options(model_name: str, overrides: dict) -> dict:
    """The trainer options of ``model_name``: its kind's defaults, its preset, then ``overrides``."""
    if model_name in MULTI_PHASE_OBJECTIVES:
        options = dict(MULTI_PHASE_DEFAULTS, objective=MULTI_PHASE_OBJECTIVES[model_name])
    else:
        options = dict(DEFAULTS, **PRESETS.get(model_name, {}))
    options.update({key: value for key, value in overrides.items() if value is not None})
    if options["precision"] not in ("fp32", "bf16"):
        raise ConfigError(f"train.precision must be fp32 or bf16, got {options['precision']!r}")
    if "objective" in options:
        if options["objective"] not in OBJECTIVES:
            raise ConfigError(f"train.objective must be one of {sorted(OBJECTIVES)}, got {options['objective']!r}")
        for key, least in (("steps", 1), ("eval_every", 1), ("warmup_steps", 0)):
            if not isinstance(options[key], int) or options[key] < least:
                raise ConfigError(f"train.{key} must be an integer ≥ {least}, got {options[key]!r}")
    elif options["task_weighting"] not in ("mgda", "fixed"):
        raise ConfigError(f"train.task_weighting must be mgda or fixed, got {options['task_weighting']!r}")
    return options


def make_optimizer(model: torch.nn.Module, options: dict) -> torch.optim.Optimizer:
    kind = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}.get(options["optimizer"])
    if kind is None:
        raise ConfigError(f"train.optimizer must be adam or adamw, got {options['optimizer']!r}")
    return kind(model.parameters(), lr=options["lr"], weight_decay=options["weight_decay"])


def lr_factor(t: int, options: dict) -> float:
    """Learning-rate multiplier at ``t`` (0-based): the epoch, or the step for step-counted training."""
    final = options["final_lr_factor"]
    if options["schedule"] == "warmup_cosine":  # multi-phase paper: linear warmup, then cosine to final×
        warmup, steps = options["warmup_steps"], options["steps"]
        if t < warmup:
            return t / warmup
        progress = min((t - warmup) / max(steps - warmup, 1), 1.0)
        return final + (1.0 - final) * 0.5 * (1 + math.cos(math.pi * progress))
    epochs = options["epochs"]
    progress = t / max(epochs - 1, 1)
    if options["schedule"] == "constant":
        return 1.0
    if options["schedule"] == "linear":  # XRDecoupler: linear decay to final_lr_factor×
        return 1.0 + (final - 1.0) * progress
    if options["schedule"] == "cosine_second_half":  # XRDMamba: flat, then cosine decay in the second half
        half = epochs / 2
        return 1.0 if t < half else 0.5 * (1 + math.cos(math.pi * (t - half) / max(epochs - half, 1)))
    raise ConfigError(f"train.schedule: unknown schedule {options['schedule']!r}")


def task_losses(logits: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Cross-entropy per task present in both; superclass targets of −1 (K > 1) are ignored."""
    return {task: F.cross_entropy(logits[task], targets[task].to(logits[task].device), ignore_index=-1)
            for task in logits if task in targets and task != "embedding"}


def batch_loader(path, batch_rows: int, *, shuffle: bool = False, seed: int = 0, tasks=("space_group",),
                 num_workers: int = 0, augment=None, bank=None):
    """A DataLoader of chunk-aligned batches of a dataset split, and its sampler.

    ``augment`` (the option ``augment_on_the_fly``: ``True`` or a mapping of augment options) serves
    the split's samples re-augmented from the bank (``bank``, or found next to the split) per (sample,
    epoch, seed), in the loader's worker processes (:class:`~xrdbench.train.on_the_fly.OnTheFlyBatches`).
    """
    if augment is None or augment is False:
        dataset = ZarrBatches(path, batch_rows=batch_rows, tasks=tuple(tasks))
    else:
        from xrdbench.train.on_the_fly import OnTheFlyBatches

        dataset = OnTheFlyBatches(path, batch_rows=batch_rows, tasks=tuple(tasks), augment=augment, bank=bank,
                                  seed=seed)
    sampler = ChunkShuffleSampler(dataset, seed=seed, shuffle=shuffle)
    return DataLoader(dataset, batch_size=None, sampler=sampler, num_workers=num_workers), sampler


def _loader(path, options, shuffle: bool, seed: int, tasks):
    """The train loader (``shuffle``: re-augmented on the fly when the options ask for it) or a val loader."""
    augment = options.get("augment_on_the_fly") if shuffle else None
    return batch_loader(path, options["batch_rows"], shuffle=shuffle, seed=seed, tasks=tasks,
                        num_workers=options.get("num_workers", 0), augment=augment,
                        bank=options.get("augment_bank"))


# ---------------------------------------------------------------- objectives, by model kind


class SinglePhaseObjective:
    """Cross-entropy on the space group and superclass heads (MGDA-UB or fixed weights); best by top-1."""

    counter, metric = "epoch", "val_top1"

    def __init__(self, tasks=("space_group",)):
        self.tasks = tuple(tasks)

    def backward(self, model, batch, options, device) -> dict[str, float]:
        x = batch["x"].to(device) * options["input_scale"]
        multi_task = options["task_weighting"] == "mgda" and len(self.tasks) > 1
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
        return record

    @torch.no_grad()
    def validate(self, model, loader, options, device) -> dict[str, float]:
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


class PresenceObjective:
    """Multi-phase presence models: BCE on the (B, 230) presence logits; best by micro-F1 at the best threshold."""

    counter, metric, output = "step", "val_micro_f1", "presence"
    #: The metrics of :mod:`xrdbench.evaluate.multi_phase` for this model's scores.
    evaluate = staticmethod(evaluate_presence)

    def loss(self, outputs, y) -> tuple[torch.Tensor, dict[str, float]]:
        loss = presence_loss(outputs["presence"], y)
        return loss, {"loss": float(loss.detach())}

    def scores(self, outputs) -> torch.Tensor:
        """The probabilities the metrics take: sigmoid presences (B, 230)."""
        return torch.sigmoid(outputs["presence"].float())

    @staticmethod
    def chosen(report: dict) -> dict:
        """The report's operating point: the micro-F1 and threshold (or gate) the sweep chose."""
        return report

    def backward(self, model, batch, options, device) -> dict[str, float]:
        outputs = model(batch["x"].to(device) * options["input_scale"], batch["mask"].to(device))
        loss, record = self.loss(outputs, batch["y"].to(device))
        loss.backward()
        return record

    def validate(self, model, loader, options, device) -> dict[str, float]:
        report = evaluate_loader(self, model, loader, options["input_scale"], device)["report"]
        chosen = self.chosen(report)
        return {"val_micro_f1": chosen["micro_f1"], "val_threshold": chosen["threshold"]}


class SlotObjective(PresenceObjective):
    """Phase-cluster models: the assignment loss on the slot logits; logs the slot diversity; best by micro-F1
    of the slot union at the best gate."""

    output = "slot_logits"
    evaluate = staticmethod(evaluate_slots)

    def loss(self, outputs, y) -> tuple[torch.Tensor, dict[str, float]]:
        loss = assignment_loss(outputs["slot_logits"], y)
        return loss, {"loss": float(loss.detach()), "slot_diversity": float(slot_diversity(outputs["slots"].detach()))}

    def scores(self, outputs) -> torch.Tensor:
        """Slot probabilities (B, K, 231), softmax over the 230 groups and NONE."""
        return outputs["slot_logits"].float().softmax(dim=-1)

    @staticmethod
    def chosen(report: dict) -> dict:
        return report["best_gate"]


OBJECTIVES = {"presence": PresenceObjective, "slots": SlotObjective}


def make_objective(options: dict, tasks=("space_group",)):
    """The objective of a run's trainer ``options``: multi-phase when they name one, else single-phase."""
    return OBJECTIVES[options["objective"]]() if "objective" in options else SinglePhaseObjective(tasks)


@torch.no_grad()
def evaluate_loader(objective, model, loader, input_scale: float, device) -> dict:
    """A multi-phase model's scores over ``loader`` (in its order) and the metrics of
    :func:`evaluate_presence` / :func:`evaluate_slots` on them: ``{"scores", "y", "k", "phase_weight",
    "report"}``. The model is left in the mode it was in."""
    was_training = model.training
    model.eval()
    parts = {"scores": [], "y": [], "k": [], "phase_weight": []}
    for batch in loader:
        outputs = model(batch["x"].to(device) * input_scale, batch["mask"].to(device))
        parts["scores"].append(objective.scores(outputs).cpu().numpy())
        for name in ("y", "k", "phase_weight"):
            parts[name].append(batch[name].numpy())
    model.train(was_training)
    arrays = {name: np.concatenate(values) for name, values in parts.items()}
    arrays["report"] = objective.evaluate(arrays["scores"], arrays["y"], arrays["k"], arrays["phase_weight"])
    return arrays


def validate(model, loader, options, device) -> dict[str, float]:
    """Validation metrics of a single-phase model (kept for callers of the epoch trainer)."""
    return SinglePhaseObjective().validate(model, loader, options, device)


# ---------------------------------------------------------------- the loop


def _batches(dataset, sampler, options, epoch: int, offset: int) -> DataLoader:
    """The batches of data epoch ``epoch`` from position ``offset`` on (a resumed run starts mid-epoch)."""
    sampler.set_epoch(epoch)
    return DataLoader(dataset, batch_size=None, sampler=list(sampler)[offset:],
                      num_workers=options.get("num_workers", 0))


def _period(model, objective, batches, options, optimizer, scheduler, device, budget: int | None):
    """Train over ``batches`` (all of them, or ``budget`` steps); returns (records, steps, batches consumed)."""
    records, steps, consumed = [], 0, 0
    for batch in batches:
        consumed += 1
        # A one-row batch (a split of n·b + 1 rows) cannot train BatchNorm layers; it is skipped.
        if len(batch["x"]) <= 1:
            continue
        optimizer.zero_grad(set_to_none=True)
        # bf16 autocast (recent GPUs): the forward in bfloat16, the weights and optimiser in float32.
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=options["precision"] == "bf16"):
            records.append(objective.backward(model, batch, options, device))
        torch.nn.utils.clip_grad_norm_(model.parameters(), options["grad_clip"])
        optimizer.step()
        steps += 1
        if budget is not None:
            scheduler.step()  # per-step schedule
            if steps == budget:
                break
    return records, steps, consumed


def train(model: torch.nn.Module, train_path, val_path, out_dir, options: dict, *, tasks=("space_group",),
          device: str | None = None, progress: bool = True) -> pd.DataFrame:
    """Train ``model``, whose heads are ``tasks``, and return the history (also in ``history.csv``).

    The objective follows ``options`` (:func:`make_objective`): multi-phase options (from
    :func:`train_options` of a multi-phase model) train by steps, the others by epochs.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.manual_seed(options["seed"])
    model.to(device).train()
    objective = make_objective(options, tasks)
    by_steps = objective.counter == "step"
    optimizer = make_optimizer(model, options)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda t: lr_factor(t, options))
    tasks = tuple(tasks)
    train_loader, sampler = _loader(train_path, options, True, options["seed"], tasks)
    val_loader, _ = _loader(val_path, options, False, options["seed"], ("space_group",))
    # where training stands: history rows done, steps done (step mode), data epoch and batch offset within it
    history, best, done, step, epoch, offset = [], -1.0, 0, 0, 0, 0
    last = out_dir / "last.pt"
    if last.exists():
        state = torch.load(last, map_location=device, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])
        best, history = state["best"], state["history"]
        if by_steps:
            step, epoch, offset = state["step"], state["data_epoch"], state["data_offset"]
        else:
            epoch = state["epoch"] + 1
        done = len(history)
    total = -(-options["steps"] // options["eval_every"]) if by_steps else options["epochs"]
    n_batches = len(train_loader.dataset)
    bar = tqdm(total=total, desc="evaluations" if by_steps else "epochs", initial=done, disable=not progress)
    while (step < options["steps"]) if by_steps else (epoch < options["epochs"]):
        started = time.perf_counter()
        if by_steps:
            budget, records = min(options["eval_every"], options["steps"] - step), []
            while budget:
                if offset >= n_batches:
                    epoch, offset = epoch + 1, 0
                batches = _batches(train_loader.dataset, sampler, options, epoch, offset)
                part, steps, consumed = _period(model, objective, batches, options, optimizer, scheduler, device,
                                                budget)
                records += part
                if steps == 0 and consumed == n_batches:
                    raise ConfigError(f"{train_path}: no batch of two or more rows to train on")
                budget, step, offset = budget - steps, step + steps, offset + consumed
            row = {"step": step, "lr": options["lr"] * lr_factor(step - 1, options)}  # the last step's rate
        else:
            sampler.set_epoch(epoch)
            records, _, _ = _period(model, objective, train_loader, options, optimizer, scheduler, device, None)
            row = {"epoch": epoch, "lr": optimizer.param_groups[0]["lr"]}
        row.update(pd.DataFrame(records).mean().to_dict())
        row.update(objective.validate(model, val_loader, options, device))
        row["wall_s"] = time.perf_counter() - started
        if not by_steps:
            scheduler.step()  # per-epoch schedule
        history.append(row)
        if row[objective.metric] > best:
            best = row[objective.metric]
            with atomic_path(out_dir / "best.pt") as tmp:
                torch.save({"model": model.state_dict(), objective.counter: row[objective.counter],
                            **{key: row[key] for key in (objective.metric, "val_threshold") if key in row}}, tmp)
        state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                 "scheduler": scheduler.state_dict(), "rng": torch.get_rng_state(), "best": best,
                 "history": history}
        state.update({"step": step, "data_epoch": epoch, "data_offset": offset} if by_steps else {"epoch": epoch})
        with atomic_path(last) as tmp:
            torch.save(state, tmp)
        write_csv_atomic(pd.DataFrame(history), out_dir / "history.csv")
        if not by_steps:
            epoch += 1
        bar.update(1)
    bar.close()
    return pd.DataFrame(history)
