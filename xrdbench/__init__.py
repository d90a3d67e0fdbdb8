"""xrdbench: the reference pipeline for machine learning on powder X-ray diffraction.

Data flows one way, one subpackage per stage::

    sources -> symmetry -> simulate -> augment -> train -> evaluate -> report
"""

__version__ = "0.1.0"
