"""Pure JAX functions (no parameters, no state), with shapes in docstrings."""

from research.ops.conv_arithmetic import conv_output_shape, conv_output_size, receptive_field
from research.ops.normalization import local_response_norm
