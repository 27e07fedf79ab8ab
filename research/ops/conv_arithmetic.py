"""Convolution arithmetic (cs231n notes): output size (W - F + 2P) / S + 1.

A filter that does not tile its input evenly is a mistake in a network's
definition (the notes' example: AlexNet's 11x11 stride-4 conv on 224x224
inputs gives 54.25), so this raises rather than silently flooring.
"""

from collections.abc import Sequence


def conv_output_size(input_size: int, kernel: int, stride: int = 1,
                     padding: int = 0, *, dilation: int = 1,
                     allow_unused_padding: bool = False, layer: str = "layer") -> int:
  """Spatial output size of a convolution or pooling window along one axis.

  Args:
    input_size: W, the input's size along the axis.
    kernel: F, the window size.
    stride: S.
    padding: P, zero padding on each side.
    dilation: spacing between window taps; the effective window is
      dilation * (F - 1) + 1.
    allow_unused_padding: accept a remainder no larger than P, i.e. windows
      that leave only padding unvisited (ResNet's 7x7/2 conv with P=3 on 224
      gives 112 this way, as every framework floors it); real input pixels
      left unvisited are still an error.
    layer: a name used in the error message.

  Returns:
    (W - F_eff + 2P) / S + 1, floored when allow_unused_padding lets it be.

  Raises:
    ValueError: naming `layer`, when the window does not fit the input or the
      stride does not tile it exactly.
  """
  for arg, value, minimum in (("input_size", input_size, 1), ("kernel", kernel, 1),
                              ("stride", stride, 1), ("padding", padding, 0),
                              ("dilation", dilation, 1)):
    if int(value) != value or value < minimum:
      raise ValueError(f"{layer}: {arg}={value!r} must be an integer >= {minimum}.")
  effective = dilation * (kernel - 1) + 1
  span = input_size - effective + 2 * padding
  if span < 0:
    raise ValueError(f"{layer}: a {effective}-wide window does not fit an input of "
                     f"{input_size} with padding {padding}.")
  if span % stride and not (allow_unused_padding and span % stride <= padding):
    raise ValueError(
        f"{layer}: (W - F + 2P) / S + 1 = ({input_size} - {effective} + 2*{padding}) / "
        f"{stride} + 1 = {span / stride + 1:g} is not an integer; the filter does not "
        f"tile the input. Change the input size, padding or stride.")
  return span // stride + 1


def conv_output_shape(input_hw: Sequence[int], kernel: Sequence[int],
                      stride: Sequence[int], padding: Sequence[int], *,
                      layer: str = "layer") -> tuple[int, ...]:
  """`conv_output_size` along each spatial axis."""
  return tuple(conv_output_size(w, f, s, p, layer=layer)
               for w, f, s, p in zip(input_hw, kernel, stride, padding))


def receptive_field(kernels: Sequence[int], strides: Sequence[int] | None = None) -> int:
  """Receptive field of a stack of layers (one axis), first layer first.

  r = 1 + sum_i (F_i - 1) * prod_{j<i} S_j; e.g. two stacked 3x3 stride-1
  convolutions see 5x5 and three see 7x7 (VGG §2.3).
  """
  strides = strides or [1] * len(kernels)
  field, jump = 1, 1
  for f, s in zip(kernels, strides):
    field += (f - 1) * jump
    jump *= s
  return field
