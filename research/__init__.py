"""The research library: ops, models, data, training, launching.

Importing it sets XLA flags that make convolution training faster on the
CPU (measured here: about 1.15-1.6x per step with XNNPACK fusion off; see
../README.md), only when JAX will run on the CPU and the installed jaxlib
knows them (`research/xla_flags.py`). They must be in the environment before
JAX starts a backend, hence here. Set RESEARCH_XLA_DEFAULTS=0 to leave
XLA_FLAGS alone.
"""

from research import xla_flags as _xla_flags

_xla_flags.set_cpu_flags()
