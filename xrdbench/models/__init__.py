"""Stage ``models``: every baseline of the two papers, one file per model, built by name.

``build_model("xrdecoupler", preset="demo", two_theta_deg=grid, tasks={"space_group": 230, ...})``
"""

from xrdbench.models import cnn, mlp, rcnet, xrdecoupler, xrdmamba  # noqa: F401 - registers the models
from xrdbench.models import multilabel_cnn, multilabel_transformer, phase_cluster_transformer  # noqa: F401
from xrdbench.models.registry import MODELS, build_model, register_model

__all__ = ["MODELS", "build_model", "register_model"]
