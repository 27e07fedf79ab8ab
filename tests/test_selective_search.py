"""R-CNN's region proposals (issue 16; Girshick et al. 2014, §2.1): selective search on a
scikit-image photograph (inside the image, capped, unique, deterministic) and the proposal
cache that computes each example's boxes once per settings."""

import numpy as np
import pytest


@pytest.fixture(scope="module")
def photo():
  """scikit-image's coffee photograph, 96 x 64 pixels (small: selective search is CPU-bound)."""
  from PIL import Image
  from skimage import data as skdata
  return np.asarray(Image.fromarray(skdata.coffee()).resize((96, 64), Image.BILINEAR))


def test_selective_search_boxes_are_inside_capped_unique_and_deterministic(photo):
  from research.data import proposals
  settings = proposals.ProposalSettings(max_proposals=40, min_side=4)
  first = proposals.selective_search(photo, settings)
  boxes = first.boxes
  assert boxes.dtype == np.float32 and 0 < len(boxes) <= 40 and first.seconds > 0
  assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= 64).all() and (boxes[:, 3] <= 96).all()
  assert ((boxes[:, 2:] - boxes[:, :2]) >= 4).all()
  assert len(np.unique(boxes, axis=0)) == len(boxes)
  np.testing.assert_array_equal(proposals.selective_search(photo, settings).boxes, boxes)
  uncapped = proposals.selective_search(photo, proposals.ProposalSettings(max_proposals=10 ** 6,
                                                                          min_side=4))
  assert len(uncapped.boxes) > 40  # The cap did cut, keeping selective search's first 40.
  np.testing.assert_array_equal(uncapped.boxes[:40], boxes)
  grey = proposals.selective_search(photo[..., :1], settings)  # Grey images are repeated to RGB.
  assert len(grey.boxes) > 0
  with pytest.raises(ValueError, match="needs a uint8 image"):
    proposals.selective_search(photo.astype(np.float32), settings)


def test_proposal_cache_computes_once_per_example_and_settings(photo, tmp_path, monkeypatch):
  from research.data import proposals
  settings = proposals.ProposalSettings(max_proposals=40, min_side=4)
  cache = proposals.ProposalCache(str(tmp_path), settings)
  computed = cache.get("scenes/small", "train[:10]", 3, photo)
  path = cache.path("scenes/small", "train[:10]", 3)
  assert not computed.cached and path.startswith(str(tmp_path)) and path.endswith("/3.npz")
  monkeypatch.setattr(proposals, "selective_search", lambda *a: pytest.fail("recomputed"))
  again = cache.get("scenes/small", "train[:10]", 3, photo)
  assert again.cached and again.seconds == computed.seconds
  np.testing.assert_array_equal(again.boxes, computed.boxes)
  other = proposals.ProposalCache(str(tmp_path), proposals.ProposalSettings(max_proposals=20))
  assert other.path("scenes/small", "train[:10]", 3) != path
  assert cache.path("scenes/small", "train[:10]", 4) != path
  padded, mask = proposals.pad_proposals(computed.boxes, 64)
  assert padded.shape == (64, 4) and mask.sum() == len(computed.boxes)
  with pytest.raises(ValueError, match=r"config.proposals.mode='slow'"):
    proposals.ProposalSettings(mode="slow").validate()
