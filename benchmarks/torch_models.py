"""PyTorch versions of the project's benchmarked networks, for a same-run peer.

Each mirrors the Flax model layer for layer (shapes, parameter counts,
initialisation scheme, no extra layers), so a training step computes the same
thing in both frameworks; `tests` are not needed for timing, but
`benchmarks/train_step.py --check` compares parameter counts with the JAX side.
"""

import torch
from torch import nn
import torch.nn.functional as F


class LeNet5(nn.Module):
  """research.models.lenet.LeNet5(activation="relu", pooling="max", c3_table=False)."""

  def __init__(self, num_classes=10):
    super().__init__()
    self.c1 = nn.Conv2d(1, 6, 5, padding=2)
    self.c3 = nn.Conv2d(6, 16, 5)
    self.c5 = nn.Conv2d(16, 120, 5)
    self.f6 = nn.Linear(120, 84)
    self.out = nn.Linear(84, num_classes)

  def forward(self, x):
    x = F.max_pool2d(F.relu(self.c1(x)), 2)
    x = F.max_pool2d(F.relu(self.c3(x)), 2)
    x = F.relu(self.c5(x)).flatten(1)
    return self.out(F.relu(self.f6(x)))


class FlaxExampleCNN(nn.Module):
  """research.models.flax_example_cnn.FlaxExampleCNN ('SAME' 3x3 convs)."""

  def __init__(self, num_classes=10):
    super().__init__()
    self.conv1 = nn.Conv2d(1, 32, 3, padding=1)
    self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
    self.fc1 = nn.Linear(7 * 7 * 64, 256)
    self.fc2 = nn.Linear(256, num_classes)

  def forward(self, x):
    x = F.avg_pool2d(F.relu(self.conv1(x)), 2)
    x = F.avg_pool2d(F.relu(self.conv2(x)), 2)
    return self.fc2(F.relu(self.fc1(x.flatten(1))))


def _bn(c):
  return nn.BatchNorm2d(c, eps=1e-5, momentum=0.1)  # = Flax momentum 0.9.


class _BasicBlockA(nn.Module):
  """CIFAR basic block with the parameter-free option-A shortcut."""

  def __init__(self, cin, cout, stride):
    super().__init__()
    self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
    self.bn1 = _bn(cout)
    self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
    self.bn2 = _bn(cout)
    self.stride, self.extra = stride, cout - cin

  def forward(self, x):
    y = F.relu(self.bn1(self.conv1(x)))
    y = self.bn2(self.conv2(y))
    shortcut = x[:, :, ::self.stride, ::self.stride] if self.stride > 1 else x
    if self.extra:
      shortcut = F.pad(shortcut, (0, 0, 0, 0, 0, self.extra))
    return F.relu(y + shortcut)


class CifarResNet(nn.Module):
  """research.models.resnet cifar_resnet(depth): 6n+2 layers, 16/32/64 channels."""

  def __init__(self, depth, num_classes=10, in_channels=1):
    super().__init__()
    n = (depth - 2) // 6
    self.conv = nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False)
    self.bn = _bn(16)
    blocks, cin = [], 16
    for stage, cout in enumerate((16, 32, 64)):
      for i in range(n):
        blocks.append(_BasicBlockA(cin, cout, 2 if stage and i == 0 else 1))
        cin = cout
    self.blocks = nn.Sequential(*blocks)
    self.fc = nn.Linear(64, num_classes)

  def forward(self, x):
    x = self.blocks(F.relu(self.bn(self.conv(x))))
    return self.fc(x.mean((2, 3)))


class _Bottleneck(nn.Module):
  def __init__(self, cin, width, stride):
    super().__init__()
    cout = 4 * width
    self.conv1, self.bn1 = nn.Conv2d(cin, width, 1, bias=False), _bn(width)
    self.conv2, self.bn2 = nn.Conv2d(width, width, 3, stride, 1, bias=False), _bn(width)
    self.conv3, self.bn3 = nn.Conv2d(width, cout, 1, bias=False), _bn(cout)
    self.down = None
    if stride != 1 or cin != cout:
      self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), _bn(cout))

  def forward(self, x):
    y = F.relu(self.bn1(self.conv1(x)))
    y = F.relu(self.bn2(self.conv2(y)))
    y = self.bn3(self.conv3(y))
    return F.relu(y + (self.down(x) if self.down is not None else x))


class ResNet50(nn.Module):
  """research.models.resnet resnet50 (stride on the 3x3, as torchvision)."""

  def __init__(self, num_classes=1000):
    super().__init__()
    self.conv1, self.bn1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False), _bn(64)
    blocks, cin = [], 64
    for stage, (width, count) in enumerate(zip((64, 128, 256, 512), (3, 4, 6, 3))):
      for i in range(count):
        blocks.append(_Bottleneck(cin, width, 2 if stage and i == 0 else 1))
        cin = 4 * width
    self.blocks = nn.Sequential(*blocks)
    self.fc = nn.Linear(2048, num_classes)

  def forward(self, x):
    x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
    return self.fc(self.blocks(x).mean((2, 3)))


def he_init_(model: nn.Module) -> nn.Module:
  """He (fan_out) init for convs, as the Flax ResNets use; defaults elsewhere."""
  for m in model.modules():
    if isinstance(m, nn.Conv2d) and m.bias is None:
      nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
  return model


# name -> (constructor, input shape C, H, W, num_classes)
NETWORKS = {
    "lenet5": (LeNet5, (1, 28, 28), 10),
    "flax_example_cnn": (FlaxExampleCNN, (1, 28, 28), 10),
    "resnet20": (lambda: he_init_(CifarResNet(20)), (1, 28, 28), 10),
    "resnet56": (lambda: he_init_(CifarResNet(56)), (1, 28, 28), 10),
    "resnet50": (lambda: he_init_(ResNet50()), (3, 224, 224), 1000),
}


def make_train_step(model: nn.Module, opt: torch.optim.Optimizer, images: torch.Tensor,
                    labels: torch.Tensor, layout=torch.channels_last, autocast_bf16: bool = False):
  """step() -> None: one SGD step on the fixed uint8 batch `images` [B, C, H, W], doing the
  JAX step's work (scale to [0, 1] and standardise with mean 0.5, std 0.25 inside the step).

  autocast_bf16: the forward pass under bf16 autocast (float32 parameters and optimizer
  state, as `compute_dtype="bfloat16"` on the JAX side); the loss is float32 either way.
  """
  def step():
    inputs = ((images.float() / 255.0 - 0.5) / 0.25).contiguous(memory_format=layout)
    with torch.autocast(images.device.type, dtype=torch.bfloat16, enabled=autocast_bf16):
      logits = model(inputs)
    loss = F.cross_entropy(logits.float(), labels)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
  return step


def parameter_count(model: nn.Module) -> int:
  return sum(p.numel() for p in model.parameters())
