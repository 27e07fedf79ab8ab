"""Region-based detectors: Fast R-CNN (Girshick 2015) and Faster R-CNN (Ren et al. 2015).

Both share one layout: a backbone split into shared convolutional layers
(the whole image, once) and a head of fully connected layers (once per
region of interest, on RoI-pooled features), ending in two sibling outputs:
K + 1 class logits (0 = background) and class-specific box deltas.
Faster R-CNN adds a region proposal network (RPN) on the shared feature map.

Backbones, by name (`BACKBONES`):
  "vgg16": the papers' VGG-16 (Simonyan & Zisserman, configuration D) without
    its last pool: conv5_3 at stride 16, 512 channels; RoI max pooling to
    7 x 7 (Fast R-CNN §2.1: "H = W = 7 for VGG16"), then fc6 (25088 -> 4096)
    and fc7 (4096 -> 4096) with dropout 0.5: exactly VGG-16's fc6/fc7, so an
    ImageNet VGG-16's parameters fit by name (conv1_1 ... conv5_3, fc6, fc7).
  "small": a CPU-scale VGG-like net for the 128-px detection scenes:
    VGG configuration A's first four stages at vgg_small's widths (16, 32, 64,
    128), pools after the first three: stride 8, 128 channels (a 16 x 16 map
    at 128 px, so the scenes' 14-84 px objects span 2-10 cells); RoI pooling
    to 4 x 4, fc6 and fc7 256 wide.

Parameters: {"convs": {conv1_1, ...}, "head": {fc6, fc7, cls_score,
bbox_pred}, "rpn": {conv, cls_score, bbox_pred}} (py-faster-rcnn's names).
Images are float [B, H, W, 3], already standardised by the caller; boxes are
[ymin, xmin, ymax, xmax] in input pixels (research/ops/boxes.py).
Post-processing (the proposal layer, test-time detections) is in
`detection_postprocess.py`; R-CNN's warped regions in `rcnn.py`.
"""

import dataclasses
import functools
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from research.models import detection_postprocess as post
from research.models import layers, vgg
from research.ops import anchors as anchor_ops
from research.ops import roi as roi_ops
from research.ops import svd


@dataclasses.dataclass(frozen=True)
class BackboneSpec:
  """Shared conv layers (VGG stages) and the RoI head of one backbone."""
  stages: tuple[tuple[int, ...], ...]  # Kernel sizes of each stage's convs (vgg.CONFIGS).
  widths: tuple[int, ...]              # Channels of each stage.
  stride: int                          # Input pixels per feature cell: a 2x2 pool ends every
                                       # stage but the last.
  roi_size: tuple[int, int]            # RoI pooling grid (PH, PW).
  fc_widths: tuple[int, ...]           # The head's fully connected layers (fc6, fc7).
  rpn_width: int                       # The RPN's 3x3 conv (Faster R-CNN §3.1: 512 for VGG).

  @property
  def channels(self) -> int:
    return self.widths[-1]


BACKBONES = {
    "vgg16": BackboneSpec(vgg.CONFIGS["D"], (64, 128, 256, 512, 512), 16, (7, 7), (4096, 4096),
                          512),
    "small": BackboneSpec(vgg.CONFIGS["A"][:4], (16, 32, 64, 128), 8, (4, 4), (256, 256), 128),
}
ROI_POOLS = ("max", "align")


def backbone_spec(name: str) -> BackboneSpec:
  """The BackboneSpec called `name`. Raises ValueError naming the known ones."""
  if name not in BACKBONES:
    raise ValueError(f"Unknown detection backbone {name!r}; choose one of {sorted(BACKBONES)}.")
  return BACKBONES[name]


class SharedConvs(nn.Module):
  """The backbone's convolutions: float [B, H, W, 3] -> [B, H / s, W / s, C] (s = stride).

  VGG's 3x3 stride-1 pad-1 convs + ReLU, a 2x2/2 max pool after every stage
  but the last (Fast R-CNN §2.1 replaces VGG-16's pool5 by RoI pooling).
  Features: each conv's output by VGG's names (conv5_3 is the map).
  """
  backbone: str = "vgg16"

  @nn.compact
  def __call__(self, x, features: dict | None = None):
    spec = backbone_spec(self.backbone)
    features = {} if features is None else features
    if x.shape[1] < spec.stride or x.shape[2] < spec.stride:
      raise ValueError(f"Images {x.shape[1]}x{x.shape[2]} are smaller than the {self.backbone} "
                       f"backbone's stride {spec.stride}: give images of at least one cell.")
    init = nn.initializers.xavier_uniform()
    last = len(spec.stages)
    for stage, (kernels, width) in enumerate(zip(spec.stages, spec.widths), start=1):
      for i, k in enumerate(kernels, start=1):
        name = f"conv{stage}_{i}"
        x = features[name] = nn.relu(nn.Conv(width, (k, k), padding=(k - 1) // 2,
                                             kernel_init=init, name=name)(x))
      if stage < last:
        x = layers.MaxPool(2, name=f"pool{stage}")(x)
    return x


class RoIPool(nn.Module):
  """RoI pooling as a layer (so summaries list it): features [B, H, W, C], boxes
  [R, 4] pixels, batch_index int [R] -> [R, PH, PW, C]; or boxes [B, R, 4] and
  batch_index None (R per image) -> [B, R, PH, PW, C].

  "max": Fast R-CNN §2.1's RoI max pooling (`roi_ops.roi_max_pool`);
  "align": Mask R-CNN's RoI align, 2 x 2 samples per bin (`roi_ops.roi_align`).
  """
  output_size: tuple[int, int]
  spatial_scale: float
  kind: str = "max"

  @nn.compact
  def __call__(self, features, boxes, batch_index=None):
    lead = boxes.shape[:-1]
    if batch_index is None:
      if boxes.ndim != 3:
        raise ValueError(f"RoIs of shape {boxes.shape} need their batch_index; give [B, R, 4] "
                         "RoIs without one, or [R, 4] RoIs with one.")
      batch_index = jnp.repeat(jnp.arange(lead[0], dtype=jnp.int32), lead[1])
    pool = roi_ops.roi_max_pool if self.kind == "max" else roi_ops.roi_align
    pooled = pool(features, boxes.reshape(-1, 4), batch_index, tuple(self.output_size),
                  self.spatial_scale)
    return pooled.reshape(*lead, *pooled.shape[1:])


class FactoredDense(nn.Module):
  """A Dense layer as truncated SVD's two (Fast R-CNN §3.1): y = (x K1) K2 + b,
  K1 [in, rank] without bias ("first"), K2 [rank, out] with the bias ("second").
  Parameters come from `truncate_head`."""
  features: int
  rank: int

  @nn.compact
  def __call__(self, x):
    return nn.Dense(self.features, name="second")(
        nn.Dense(self.rank, use_bias=False, name="first")(x))


class RoIHead(nn.Module):
  """RoI pooling, the fc layers and the two sibling outputs (Fast R-CNN §2, Fig. 1).

  __call__(feature_map [B, H, W, C], rois, batch_index=None, *, train) ->
  (class_logits float [..., K + 1], box_deltas float [..., K + 1, 4]
  (class-specific, normalised as boxes.TARGET_STDS), features {"roi_pool",
  "fc6", "fc7"}), with [...] = [R] for rois float [R, 4] pixels and
  batch_index int [R] (each RoI's image), or [B, R] for rois [B, R, 4] and
  batch_index None (R per image: then summaries count the fc layers' MACs
  per image, for all its RoIs). Initialisation as py-faster-rcnn: cls_score
  N(0, 0.01), bbox_pred N(0, 0.001), zero biases.
  """
  num_classes: int
  backbone: str = "vgg16"
  roi_pool: str = "max"
  dropout: float = 0.5
  svd_ranks: tuple[int, ...] = ()

  @nn.compact
  def __call__(self, feature_map, rois, batch_index=None, *, train: bool = False):
    spec = backbone_spec(self.backbone)
    features = {}
    lead = rois.shape[:-1]
    x = features["roi_pool"] = RoIPool(spec.roi_size, 1.0 / spec.stride, self.roi_pool,
                                       name="roi_pool")(feature_map, rois, batch_index)
    x = x.reshape(*lead, -1)
    for i, width in enumerate(spec.fc_widths):
      name = f"fc{6 + i}"
      layer = (FactoredDense(width, self.svd_ranks[i], name=name) if self.svd_ranks
               else nn.Dense(width, name=name))
      x = features[name] = nn.relu(layer(x))
      x = nn.Dropout(self.dropout, deterministic=not train)(x)
    k1 = self.num_classes + 1
    logits = nn.Dense(k1, kernel_init=nn.initializers.normal(0.01), name="cls_score")(x)
    deltas = nn.Dense(4 * k1, kernel_init=nn.initializers.normal(0.001), name="bbox_pred")(x)
    return logits, deltas.reshape(*lead, k1, 4), features


class RPN(nn.Module):
  """Faster R-CNN's region proposal network (§3.1): a 3x3 conv + ReLU, then two
  sibling 1x1 convs: one objectness logit per anchor (the logistic form that
  detection_losses.rpn_loss takes) and 4 deltas per anchor.

  __call__(feature_map [B, H, W, C]) -> (logits float [B, H * W * A], deltas
  float [B, H * W * A, 4]), ordered (row, column, anchor) as
  anchors.grid_anchors. Initialisation N(0, 0.01), zero biases (py-faster-rcnn).
  """
  num_anchors: int
  width: int = 512

  @nn.compact
  def __call__(self, feature_map):
    init = nn.initializers.normal(0.01)
    x = nn.relu(nn.Conv(self.width, (3, 3), padding=1, kernel_init=init, name="conv")(feature_map))
    logits = nn.Conv(self.num_anchors, (1, 1), kernel_init=init, name="cls_score")(x)
    deltas = nn.Conv(4 * self.num_anchors, (1, 1), kernel_init=init, name="bbox_pred")(x)
    b = x.shape[0]
    return logits.reshape(b, -1), deltas.reshape(b, -1, 4)


class FastRCNN(nn.Module):
  """Fast R-CNN (Girshick 2015, §2): shared convs, RoI pooling, fc head, two sibling outputs.

  __call__(images float [B, H, W, 3], rois float [R, 4] pixels, roi_batch_index
  int [R], *, train) -> (outputs, features): outputs {"class_logits" [R, K + 1],
  "box_deltas" [R, K + 1, 4]}; features the convs' outputs and the head's
  roi_pool, fc6, fc7. Also rois [B, R, 4] with roi_batch_index None (R per
  image, as sample_rois makes them): outputs [B, R, ...]. rois=None: one
  full-image RoI per image, [B, 1, ...] (what model summaries trace).
  Summaries count the fc layers per RoI in the first form, per image in the
  others. The multi-task loss is detection_losses.fast_rcnn_loss on
  detection_targets.sample_rois' mini-batch; test-time detections
  detection_postprocess.detect.

  svd_ranks=(t6, t7): fc6 and fc7 as truncated SVD (§3.1, the paper's t = 1024
  and 256 for VGG-16), applied with the parameters `truncate_head` makes from a
  trained model's; same outputs.
  """
  num_classes: int = 20        # K object classes (VOC's 20); K + 1 outputs with background.
  backbone: str = "vgg16"
  roi_pool: str = "max"        # "max" (the paper) or "align".
  dropout: float = 0.5
  svd_ranks: tuple = ()

  def setup(self):
    spec = backbone_spec(self.backbone)
    if self.roi_pool not in ROI_POOLS:
      raise ValueError(f"Unknown roi_pool {self.roi_pool!r}; choose one of {ROI_POOLS}.")
    if self.svd_ranks and len(self.svd_ranks) != len(spec.fc_widths):
      raise ValueError(f"svd_ranks={self.svd_ranks} needs one rank per fc layer of the "
                       f"{self.backbone} head ({len(spec.fc_widths)}), e.g. (1024, 256) for VGG-16.")
    self.convs = SharedConvs(self.backbone)
    self.head = RoIHead(self.num_classes, self.backbone, self.roi_pool, self.dropout,
                        tuple(self.svd_ranks))

  def feature_map(self, images, features: dict | None = None):
    """images [B, H, W, 3] -> the shared conv map [B, H / s, W / s, C]."""
    return self.convs(images, features)

  def roi_outputs(self, feature_map, rois, roi_batch_index=None, *, train: bool = False):
    """The head on a computed map: (outputs dict, head features)."""
    logits, deltas, features = self.head(feature_map, rois, roi_batch_index, train=train)
    return {"class_logits": logits, "box_deltas": deltas}, features

  def __call__(self, images, rois=None, roi_batch_index=None, *, train: bool = False):
    features = {}
    fmap = self.feature_map(images, features)
    if rois is None:
      h, w = images.shape[1:3]
      rois = jnp.broadcast_to(jnp.asarray([0.0, 0.0, h, w], jnp.float32), (images.shape[0], 1, 4))
    outputs, head_features = self.roi_outputs(fmap, rois, roi_batch_index, train=train)
    return outputs, {**features, **head_features}


class FasterRCNN(FastRCNN):
  """Faster R-CNN (Ren et al. 2015): FastRCNN's backbone and head plus an RPN on the shared map.

  __call__(images float [B, H, W, 3], *, train, image_hw=None, sample_rois=None)
  -> (outputs, features). Outputs:
    "rpn_logits" [B, N], "rpn_deltas" [B, N, 4] (N = H' W' A, the order of
      "anchors" [N, 4]; rpn_targets/rpn_loss take them);
    "proposals" [B, P, 4], "proposal_scores" [B, P], "proposal_mask" [B, P]:
      the proposal layer (detection_postprocess.propose, P = post_nms_train or
      post_nms_test), computed without gradient: approximate joint training
      (§3.2) passes no gradient through the proposal coordinates;
    "rois" [B, R, 4], "roi_mask" [B, R]: what the head saw;
    "class_logits" [B, R, K + 1], "box_deltas" [B, R, K + 1, 4].
  image_hw: float [B, 2], each image's size before padding (default the
  array's), for clipping proposals. sample_rois: in training, a function
  (proposals [B, P, 4], proposal_mask [B, P]) -> (rois [B, R, 4], roi_mask
  [B, R], extra), e.g. detection_targets.sample_rois vmapped with the ground
  truth and a key; `extra` is returned as outputs["roi_targets"]. None: the
  head runs on the proposals (test time).

  Anchors (§3.1.1): anchor_sizes x anchor_ratios at every cell (the paper's
  128, 256, 512 and 0.5, 1, 2 for VGG-16; the "small" registration 16, 32, 64).
  Proposal layer (py-faster-rcnn): pre_nms top-N 12000 train / 6000 test, NMS
  at 0.7, post_nms top 2000 train / 300 test, boxes under min_size pixels dropped.
  """
  anchor_sizes: tuple = anchor_ops.FASTER_RCNN_SIZES
  anchor_ratios: tuple = anchor_ops.FASTER_RCNN_RATIOS
  pre_nms_train: int = 12000
  pre_nms_test: int = 6000
  post_nms_train: int = 2000
  post_nms_test: int = 300
  rpn_nms_iou: float = 0.7
  min_size: float = 16.0

  def setup(self):
    super().setup()
    num_anchors = len(self.anchor_sizes) * len(self.anchor_ratios)
    self.rpn = RPN(num_anchors, backbone_spec(self.backbone).rpn_width)

  def anchors(self, feature_hw) -> jax.Array:
    """float32 [H' W' A, 4]: the anchors of a feature map of (static) size feature_hw."""
    return anchor_ops.grid_anchors(tuple(feature_hw), backbone_spec(self.backbone).stride,
                                   tuple(self.anchor_sizes), tuple(self.anchor_ratios))

  def propose(self, feature_map, image_hw, *, train: bool = False) -> dict:
    """The RPN and the proposal layer on a computed map [B, H', W', C] (what
    Faster R-CNN Table 5 times as "proposal"), image_hw float [B, 2]: the
    outputs' "rpn_logits", "rpn_deltas", "anchors", "proposals",
    "proposal_scores" and "proposal_mask" (see the class docstring)."""
    logits, deltas = self.rpn(feature_map)
    anchors = self.anchors(feature_map.shape[1:3])
    pre, post_n = ((self.pre_nms_train, self.post_nms_train) if train
                   else (self.pre_nms_test, self.post_nms_test))
    propose = functools.partial(post.propose, pre_nms_top_n=pre, post_nms_top_n=post_n,
                                nms_iou=self.rpn_nms_iou, min_size=self.min_size)
    boxes, scores, mask = jax.vmap(propose, in_axes=(0, 0, None, 0))(
        jax.lax.stop_gradient(logits), jax.lax.stop_gradient(deltas), anchors,
        jnp.asarray(image_hw, jnp.float32))
    return {"rpn_logits": logits, "rpn_deltas": deltas, "anchors": anchors,
            "proposals": boxes, "proposal_scores": scores, "proposal_mask": mask}

  def __call__(self, images, *, train: bool = False, image_hw=None,
               sample_rois: Callable | None = None):
    features = {}
    fmap = self.feature_map(images, features)
    b, h, w = images.shape[:3]
    hw = (jnp.broadcast_to(jnp.asarray([h, w], jnp.float32), (b, 2)) if image_hw is None
          else jnp.asarray(image_hw, jnp.float32))
    outputs = self.propose(fmap, hw, train=train)
    boxes, mask = outputs["proposals"], outputs["proposal_mask"]
    if sample_rois is None:
      rois, roi_mask = boxes, mask
    else:
      rois, roi_mask, outputs["roi_targets"] = sample_rois(boxes, mask)
    rois = jax.lax.stop_gradient(rois)
    head, head_features = self.roi_outputs(fmap, rois, train=train)
    outputs.update(rois=rois, roi_mask=roi_mask, **head)
    return outputs, {**features, **head_features}


def truncate_head(params, ranks: tuple[int, ...]):
  """A trained detector's parameters for the same model with svd_ranks=ranks (Fast R-CNN §3.1).

  Each fc layer of params["head"] (fc6, fc7, ...) becomes its rank-t SVD
  factors (svd.truncated_svd): {"first": {"kernel" [in, t]}, "second":
  {"kernel" [t, out], "bias"}}; everything else is shared unchanged.

  Args:
    params: the "params" collection of a FastRCNN / FasterRCNN without svd_ranks.
    ranks: one rank per fc layer, e.g. (1024, 256) for VGG-16 (the paper's).

  Raises:
    ValueError: a rank count other than the head's fc layers, or a rank out of
      range (svd.truncated_svd's message).
  """
  head = dict(params["head"])
  names = sorted(k for k in head if k.startswith("fc"))
  if len(ranks) != len(names):
    raise ValueError(f"truncate_head: {len(ranks)} ranks {ranks} for the {len(names)} fc layers "
                     f"{names}; give one rank per layer.")
  for name, rank in zip(names, ranks):
    factors = svd.truncated_svd(head[name]["kernel"], rank, head[name]["bias"])
    head[name] = {"first": {"kernel": factors.first_kernel},
                  "second": {"kernel": factors.second_kernel, "bias": factors.bias}}
  return {**params, "head": head}


def from_classifier(params) -> dict:
  """A VGG classifier's parameters under the detectors' names, for transfer.copy_matching.

  conv layers -> "convs/<name>", fc6 and fc7 -> "head/fc6", "head/fc7"; the
  classifier's last layer (fc8) is left out: the detectors' cls_score and
  bbox_pred are new (Fast R-CNN §2.2, "Initializing from pre-trained
  networks": "the network's last fully connected layer and softmax ... are
  replaced with the two sibling layers"). For the "vgg16" backbone every
  shared name has VGG-16's shape; the "small" backbone shares only convs
  (copy with include_regex "^convs/").
  """
  convs = {k: v for k, v in params.items() if k.startswith("conv")}
  head = {k: v for k, v in params.items() if k in ("fc6", "fc7")}
  return {"convs": convs, "head": head}


MODELS = {
    "fast_rcnn_vgg16": functools.partial(FastRCNN, backbone="vgg16"),
    "fast_rcnn_small": functools.partial(FastRCNN, backbone="small"),
    "faster_rcnn_vgg16": functools.partial(FasterRCNN, backbone="vgg16"),
    "faster_rcnn_small": functools.partial(
        FasterRCNN, backbone="small", anchor_sizes=(16.0, 32.0, 64.0), min_size=4.0),
}
