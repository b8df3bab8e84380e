"""splitmix64 (Steele, Lea, Flood 2014): the golden-ratio increment and the finaliser's multipliers, one home for
the held-out split (``split.py``) and the sampler's random streams (``sampler/kernels.py``)."""

import numpy as np

GOLDEN, MIX1, MIX2 = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
