"""Symmetry: space-group detection, superclass tables and the labels stage."""

from xrdbench.symmetry.labels import label_manifest
from xrdbench.symmetry.tables import SUPERCLASSES, space_group_table, superclass_index

__all__ = ["SUPERCLASSES", "label_manifest", "space_group_table", "superclass_index"]
