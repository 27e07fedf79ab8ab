"""Karpathy & Fei-Fei's alignment model (2015, "Deep Visual-Semantic Alignments for
Generating Image Descriptions", CVPR, §3.1): images and sentences in one space.

Image side (§3.1.1): each region I_b (the detector's top 19 boxes plus the whole
image) is embedded as v = W_m [CNN_θc(I_b)] + b_m, CNN_θc(I_b) being an R-CNN's
fc7 on the region: the region (dilated by R-CNN's context) is warped to a fixed
crop and run through a detection backbone's convolutions (`detection.SharedConvs`),
max-pooled to the backbone's RoI grid (`pooled_grid`) and its fc6, fc7 (ReLU). The parameter
names are the detectors' ("convs", "fc6", "fc7"), so a trained Fast/Faster
R-CNN's backbone and head can be copied in, as the paper takes its CNN from an
ImageNet-detection R-CNN.

Sentence side (§3.1.2), a bidirectional RNN over the words, f = ReLU:

    x_t = W_w I_t,  e_t = f(W_e x_t + b_e),
    h_t^f = f(e_t + W_f h_{t-1}^f + b_f),  h_t^b = f(e_t + W_b h_{t+1}^b + b_b),
    s_t = f(W_d (h_t^f + h_t^b) + b_d).

Tokens come as research/data/vocab.py's `encode` writes them: <start> words
<end> then padding (ids PAD, START, END below; every id >= UNK is a word). Only
the words are the sentence: both RNNs skip the other positions, keeping their
state, so the forward RNN starts at the first word and the backward RNN at each
sentence's own last word, and padding changes nothing.

The score of an image and a sentence is eq. 8 (research/ops/captioning.py).
`whole_image_only=True` is the baseline that embeds the whole image alone (R = 1).
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from research.models import layers, rcnn
from research.models.detection import SharedConvs, backbone_spec
from research.ops import captioning as caption_ops

# research/data/vocab.py's fixed ids (the agreed layout); ids >= UNK are words.
PAD, START, END, UNK = 0, 1, 2, 3


def word_mask(tokens: jax.Array) -> jax.Array:
  """float32 [B, T]: 1 at the words of tokens int [B, T] (ids >= UNK), 0 at
  <pad>, <start> and <end>."""
  return (tokens >= UNK).astype(jnp.float32)


def whole_image_boxes(batch: int, height: int, width: int) -> jax.Array:
  """float32 [batch, 1, 4]: the whole image as one pixel box [0, 0, H, W]."""
  box = jnp.asarray([0.0, 0.0, height, width], jnp.float32)
  return jnp.broadcast_to(box, (batch, 1, 4))


def crop_regions(images: jax.Array, boxes: jax.Array, size: int, context: float) -> jax.Array:
  """Each image's boxes warped to size x size (R-CNN §2.1, `rcnn.warp_regions`).

  Args:
    images: float [B, H, W, C], standardised (outside the image reads 0).
    boxes: float [B, R, 4] pixels [ymin, xmin, ymax, xmax].
    size: static crop side in pixels.
    context: pixels of context around each box at the crop size (R-CNN: 16 of 227).

  Returns:
    float32 [B, R, size, size, C].
  """
  return jax.vmap(lambda im, b: rcnn.warp_regions(im, b, size, context))(images, boxes)


class ReLURNN(nn.Module):
  """One direction of §3.1.2's BRNN: h_t = ReLU(e_t + W h_prev + b), run over the
  positions where mask is 1 only (elsewhere the state is kept and the output is 0).

  __call__(e float [B, T, H], mask float [B, T]) -> float [B, T, H], e.dtype.
  reverse=True runs from the last position to the first (h_prev = h_{t+1}).
  """
  hidden: int
  reverse: bool = False

  @nn.compact
  def __call__(self, e: jax.Array, mask: jax.Array) -> jax.Array:
    # An orthogonal recurrence, scaled down so that the ReLU state does not grow
    # along a sentence; the paper does not give its initialisation.
    w = self.param("kernel", nn.initializers.orthogonal(scale=0.5), (self.hidden, self.hidden))
    b = self.param("bias", nn.initializers.zeros, (self.hidden,))
    w, b = w.astype(e.dtype), b.astype(e.dtype)

    def step(state, inputs):
      e_t, m_t = inputs
      new = nn.relu(e_t + state @ w + b)
      real = m_t[:, None] > 0
      return jnp.where(real, new, state), jnp.where(real, new, jnp.zeros_like(new))

    h0 = jnp.zeros((e.shape[0], self.hidden), e.dtype)
    _, out = jax.lax.scan(step, h0, (jnp.swapaxes(e, 0, 1), jnp.swapaxes(mask, 0, 1)),
                          reverse=self.reverse)
    return jnp.swapaxes(out, 0, 1)


class SentenceEncoder(nn.Module):
  """§3.1.2's BRNN: tokens int [B, T] -> (s float [B, T, D] (0 at non-words),
  word_mask float32 [B, T]). Ids must be in [0, vocab_size)."""
  vocab_size: int
  word_dim: int
  hidden: int
  embed_dim: int

  @nn.compact
  def __call__(self, tokens: jax.Array):
    mask = word_mask(tokens)
    x = nn.Embed(self.vocab_size, self.word_dim, name="word_embed")(tokens)  # W_w I_t
    e = nn.relu(nn.Dense(self.hidden, name="word_in")(x))                    # W_e, b_e
    h = (ReLURNN(self.hidden, name="forward")(e, mask)
         + ReLURNN(self.hidden, reverse=True, name="backward")(e, mask))
    s = nn.relu(nn.Dense(self.embed_dim, name="word_out")(h))                # W_d, b_d
    return s * mask[..., None].astype(s.dtype), mask


def pooled_grid(backbone: str, crop_size: int) -> int:
  """The max-pool window that takes the backbone's map of a crop_size crop to
  its RoI grid (1: none; VGG-16 at 224: 14 x 14 -> 7 x 7 with 2, its pool5).

  Raises:
    ValueError: a crop_size whose map is not a whole multiple of the grid.
  """
  spec = backbone_spec(backbone)
  cells = crop_size // spec.stride
  if (crop_size % spec.stride or cells < max(spec.roi_size) or cells % spec.roi_size[0]
      or cells % spec.roi_size[1]):
    good = spec.stride * spec.roi_size[0]
    raise ValueError(f"crop_size={crop_size}: the {backbone!r} backbone (stride {spec.stride}) "
                     f"pools each crop to {spec.roi_size[0]} x {spec.roi_size[1]} cells; give a "
                     f"multiple of {good} (e.g. {good}).")
  return cells // spec.roi_size[0]


class RegionEncoder(nn.Module):
  """§3.1.1's region embeddings: images float [B, H, W, 3] (standardised), boxes
  float [B, R, 4] pixels -> v float [B, R, D] = W_m fc7(warped region) + b_m."""
  backbone: str
  crop_size: int
  context: bool
  embed_dim: int

  @nn.compact
  def __call__(self, images: jax.Array, boxes: jax.Array) -> jax.Array:
    spec = backbone_spec(self.backbone)
    window = pooled_grid(self.backbone, self.crop_size)
    b, r = boxes.shape[:2]
    context = rcnn.scaled_context(self.crop_size) if self.context else 0.0
    crops = crop_regions(images, boxes, self.crop_size, context).astype(images.dtype)
    x = SharedConvs(self.backbone, name="convs")(crops.reshape(b * r, *crops.shape[2:]))
    if window > 1:  # To the detector's RoI grid, so that fc6 has its input size.
      x = layers.MaxPool(window, name="pool")(x)
    x = x.reshape(b * r, -1)
    for i, width in enumerate(spec.fc_widths):
      x = nn.relu(nn.Dense(width, name=f"fc{6 + i}")(x))
    return nn.Dense(self.embed_dim, name="region_embed")(x).reshape(b, r, self.embed_dim)  # W_m


class AlignmentModel(nn.Module):
  """The alignment model (§3.1): region and word embeddings and their eq. 8 scores.

  __call__(image, tokens=None, regions=None, region_mask=None, *, train=False)
  -> (scores float32 [B, B], features):
    image: float [B, H, W, 3] standardised as the objective does it (the
      detectors' convention); uint8 images are mapped to [-1, 1].
    tokens: int [B, T], sentence b describing image b (<start> words <end> pad);
      None: "<start> <unk> <end>" for each image (what model summaries trace).
    regions: float [B, R, 4] pixel boxes [ymin, xmin, ymax, xmax], the
      detections and the whole image; region_mask float [B, R] (1 real, 0
      padding; at least one real region per image). None: the whole image only.
    scores[k, l]: image k with sentence l (ops.captioning.alignment_scores).
    features: {"regions": v [B, R, D], "region_mask" [B, R], "words": s
      [B, T, D], "word_mask" [B, T]}.
  `embed_image` and `embed_sentence` (via `model.apply(..., method=...)`)
  give each side alone, to score a test set of images against all sentences.

  The paper: an RCNN (4096-d fc7) at 224 px and word2vec-sized words; the
  defaults here are CPU-scale (the "small" detection backbone at 32 px).
  whole_image_only=True: the baseline, the whole image as the only region
  (regions and region_mask are ignored). context: R-CNN's context padding
  (16 of 227 pixels, scaled to crop_size) around each region.

  Raises:
    ValueError: tokens, regions or region_mask of shapes that do not fit.
  """
  vocab_size: int = 1000
  word_dim: int = 64        # x_t = W_w I_t
  hidden: int = 64          # e_t and the BRNN states
  embed_dim: int = 128      # D, the multimodal space
  backbone: str = "small"   # research/models/detection.py's BACKBONES
  crop_size: int = 32       # Side of each warped region (the detector's stride x RoI grid).
  context: bool = True
  whole_image_only: bool = False

  def setup(self):
    pooled_grid(self.backbone, self.crop_size)  # A bad crop_size stops here, before any work.
    self.image_encoder = RegionEncoder(self.backbone, self.crop_size, self.context,
                                       self.embed_dim)
    self.sentence_encoder = SentenceEncoder(self.vocab_size, self.word_dim, self.hidden,
                                            self.embed_dim)

  def _image_inputs(self, image, regions, region_mask):
    """Checked (image float, regions [B, R, 4], region_mask float32 [B, R])."""
    b, h, w = image.shape[:3]
    if regions is None or self.whole_image_only:
      return image, whole_image_boxes(b, h, w), jnp.ones((b, 1), jnp.float32)
    if regions.ndim != 3 or regions.shape[0] != b or regions.shape[2] != 4:
      raise ValueError(f"AlignmentModel: regions of shape {regions.shape} must be [B, R, 4] "
                       f"pixel boxes for the {b} images.")
    if region_mask is None:
      region_mask = jnp.ones(regions.shape[:2], jnp.float32)
    if region_mask.shape != regions.shape[:2]:
      raise ValueError(f"AlignmentModel: region_mask of shape {region_mask.shape} must be "
                       f"{regions.shape[:2]}, one entry per region.")
    if jnp.issubdtype(image.dtype, jnp.integer):
      image = image.astype(jnp.float32) / 127.5 - 1.0
    return image, regions, region_mask.astype(jnp.float32)

  @staticmethod
  def _check_tokens(tokens):
    if tokens.ndim != 2 or not jnp.issubdtype(tokens.dtype, jnp.integer):
      raise ValueError(f"AlignmentModel: tokens of shape {tokens.shape} and dtype {tokens.dtype} "
                       "must be int [B, T] token ids (Vocabulary.encode).")

  def embed_image(self, image, regions=None, region_mask=None):
    """(v float [B, R, D], region_mask float32 [B, R]); R = 1 without regions or
    with whole_image_only."""
    image, regions, region_mask = self._image_inputs(image, regions, region_mask)
    return self.image_encoder(image, regions), region_mask

  def embed_sentence(self, tokens):
    """(s float [B, T, D] (0 at non-words), word_mask float32 [B, T])."""
    self._check_tokens(tokens)
    return self.sentence_encoder(tokens)

  def __call__(self, image, tokens=None, regions=None, region_mask=None, *, train: bool = False):
    del train  # No dropout or batch norm: the same in training and evaluation.
    if tokens is None:
      tokens = jnp.tile(jnp.asarray([START, UNK, END], jnp.int32), (image.shape[0], 1))
    # Every input is checked before any work.
    self._check_tokens(tokens)
    if tokens.shape[0] != image.shape[0]:
      raise ValueError(f"AlignmentModel: {tokens.shape[0]} sentences for {image.shape[0]} images; "
                       "give sentence b of image b.")
    image, regions, region_mask = self._image_inputs(image, regions, region_mask)
    v = self.image_encoder(image, regions)
    s, s_mask = self.sentence_encoder(tokens)
    scores = caption_ops.alignment_scores(v, region_mask, s, s_mask)
    return scores, {"regions": v, "region_mask": region_mask, "words": s, "word_mask": s_mask}


def from_detector(params) -> dict:
  """A Fast/Faster R-CNN's parameters under AlignmentModel's names, for
  research/train/transfer.copy_matching (include_regex "^image_encoder/"): its
  shared convs and fc6, fc7 become the region CNN (§3.1.1: the paper's CNN is
  an R-CNN fine-tuned for detection). Same backbone and crop_size = the
  backbone's stride x RoI grid x k, so every copied shape agrees; the detector's
  cls_score, bbox_pred and RPN are left out, and W_m (region_embed) is new.

  Args:
    params: the "params" collection of a FastRCNN / FasterRCNN (without svd_ranks).

  Returns:
    {"image_encoder": {"convs": ..., "fc6": ..., "fc7": ...}} (the same arrays).
  """
  head = {k: v for k, v in params["head"].items() if k.startswith("fc")}
  return {"image_encoder": {"convs": params["convs"], **head}}


MODELS = {"alignment": AlignmentModel}
