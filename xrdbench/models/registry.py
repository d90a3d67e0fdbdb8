"""Models built by name from config, one file per model (as timm does).

Every model takes ``x`` (B, L) float32 intensities on its grid and returns a dict of
logits, one entry per task: ``"space_group"`` (B, 230) always, plus one per
superclass for multi-head models. ``tasks`` maps task name → number of classes.
``two_theta_deg`` (L,) is the grid, for models that use the angle as an input channel.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn as nn

from xrdbench.errors import ConfigError

MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str):
    """Class decorator: make ``name`` buildable with :func:`build_model`."""

    def decorate(cls):
        if name in MODELS:
            raise ValueError(f"model {name!r} registered twice")
        MODELS[name] = cls
        return cls

    return decorate


def build_model(name: str, *, preset: str = "demo", two_theta_deg: np.ndarray, tasks: dict[str, int],
                **overrides) -> nn.Module:
    """The model ``name`` at size ``preset`` (``paper`` or ``demo``), with per-key ``overrides``."""
    import xrdbench.models  # noqa: F401 - importing the package registers every model

    if name not in MODELS:
        raise ValueError(f"models: unknown model {name!r}; expected one of {sorted(MODELS)}")
    return MODELS[name](preset=preset, two_theta_deg=np.asarray(two_theta_deg, dtype=np.float32), tasks=tasks,
                        **overrides)


# ---------------------------------------------------------------- shared by the model files


def resolve_config(model: str, presets: dict[str, dict], preset: str, *layers: dict) -> dict:
    """``presets[preset]`` updated by each of ``layers`` in turn; unknown keys raise naming ``models.<model>``."""
    if preset not in presets:
        raise ConfigError(f"models.{model}: unknown preset {preset!r}; expected one of {sorted(presets)}")
    config = dict(presets[preset])
    for layer in layers:
        unknown = sorted(set(layer) - set(config))
        if unknown:
            raise ConfigError(f"models.{model}: unknown option(s) {unknown}; expected some of {sorted(config)}")
        config.update(layer)
    return config


def space_group_classes(model: str, tasks: dict[str, int]) -> int:
    """The class count of the ``space_group`` task, which every single-head model predicts."""
    if "space_group" not in tasks:
        raise ConfigError(f"models.{model}: tasks must include 'space_group', got {sorted(tasks)}")
    return int(tasks["space_group"])


def check_length(model: str, x: torch.Tensor, n_bins: int) -> None:
    """Fail clearly when ``x`` (B, L) is not on the grid the model was built for."""
    if x.ndim != 2 or x.shape[-1] != n_bins:
        raise ValueError(f"models.{model}: expected input (B, {n_bins}), got {tuple(x.shape)}")
