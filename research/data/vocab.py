"""The word vocabulary of the caption models (Karpathy & Fei-Fei 2015, §4: words
seen fewer than a threshold number of times in training are dropped).

Ids: 0 `<pad>`, 1 `<start>`, 2 `<end>`, 3 `<unk>`, then the training words by
descending count, ties alphabetical, so a vocabulary is a function of the
training texts and `min_count` only. `tokenize` lowercases and keeps runs of
[a-z0-9'] (punctuation dropped): "A red T-shirt." -> ["a", "red", "t", "shirt"].
Pure Python and NumPy.
"""

import collections
import json
import re

import numpy as np

from research import errors

PAD, START, END, UNK = 0, 1, 2, 3
SPECIALS = ("<pad>", "<start>", "<end>", "<unk>")
_WORD = re.compile(r"[a-z0-9']+")


class EmptyCaptionError(errors.ConfigError):
  """A caption with no word in it (the data must be fixed)."""


class VocabularyMismatch(errors.ConfigError):
  """A run resumed with a vocabulary other than the one its checkpoints were made with."""


def tokenize(text: str) -> list[str]:
  """The words of `text`: lowercase runs of [a-z0-9'] (punctuation dropped)."""
  return _WORD.findall(text.lower())


class Vocabulary:
  """Word <-> id maps (ids as in the module docstring).

  `len(vocab)` counts the four special tokens; `vocab.words` lists every
  token by id; `vocab.min_count` is the count a word needed to be kept.
  """

  def __init__(self, words, min_count: int = 1):
    words = tuple(words)
    if words[:len(SPECIALS)] != SPECIALS or len(set(words)) != len(words):
      raise ValueError(f"A vocabulary's words must start with {SPECIALS} and not repeat; "
                       f"got {words[:6]}... ({len(words)} words).")
    self.words, self.min_count = words, int(min_count)
    self._ids = {w: i for i, w in enumerate(words)}

  @classmethod
  def build(cls, texts, min_count: int = 1) -> "Vocabulary":
    """The vocabulary of `texts` (an iterable of str): words seen at least
    `min_count` times, by descending count, ties alphabetical."""
    if min_count < 1:
      raise ValueError(f"min_count={min_count}: need at least 1.")
    counts = collections.Counter(w for text in texts for w in tokenize(text))
    kept = sorted((w for w, c in counts.items() if c >= min_count),
                  key=lambda w: (-counts[w], w))
    return cls(SPECIALS + tuple(kept), min_count)

  def __len__(self) -> int:
    return len(self.words)

  def __eq__(self, other) -> bool:
    return isinstance(other, Vocabulary) and self.words == other.words

  def id(self, word: str) -> int:
    """A word's id (UNK for a word not kept)."""
    return self._ids.get(word, UNK)

  def encode(self, text: str, max_len: int) -> np.ndarray:
    """int32 [max_len]: <start>, the words' ids (UNK for unknown ones), <end>,
    then PAD. A caption of more than max_len - 2 words keeps its first
    max_len - 2 and still ends with <end> (`encoded_length` tells beforehand).

    Raises:
      EmptyCaptionError: the text has no word.
      ValueError: max_len < 3 (no room for one word).
    """
    if max_len < 3:
      raise ValueError(f"max_len={max_len}: need at least 3 (<start>, a word, <end>).")
    words = tokenize(text)
    if not words:
      raise EmptyCaptionError(f"Empty caption {text!r}: it has no word. To fix: remove or "
                              "rewrite that caption in the dataset and prepare it again.")
    ids = [START] + [self.id(w) for w in words[:max_len - 2]] + [END]
    out = np.zeros(max_len, np.int32)
    out[:len(ids)] = ids
    return out

  @staticmethod
  def encoded_length(text: str) -> int:
    """The tokens `encode` needs for `text` without truncation (words + 2)."""
    return len(tokenize(text)) + 2

  def decode(self, ids) -> str:
    """The words of `ids` up to the first <end>, <start> and <pad> left out
    (unknown words read "<unk>")."""
    words = []
    for i in np.asarray(ids).reshape(-1).tolist():
      if i == END:
        break
      if i not in (PAD, START):
        words.append(self.words[i] if 0 <= i < len(self.words) else SPECIALS[UNK])
    return " ".join(words)

  def to_json(self) -> str:
    return json.dumps({"min_count": self.min_count, "words": list(self.words)})

  @classmethod
  def from_json(cls, text: str) -> "Vocabulary":
    data = json.loads(text)
    return cls(data["words"], data["min_count"])

  def check_same(self, other: "Vocabulary", where: str = "the checkpoint") -> None:
    """Raises VocabularyMismatch (one line, with the fix) unless `other` has
    exactly these words in this order. self: the vocabulary saved with
    `where`; other: the one built from the data now."""
    if self == other:
      return
    diff = next((i for i, (a, b) in enumerate(zip(self.words, other.words)) if a != b),
                min(len(self), len(other)))
    def word(v):
      return repr(v.words[diff]) if diff < len(v) else "none"
    raise VocabularyMismatch(
        f"The vocabulary of {where} ({len(self)} words, min_count {self.min_count}) differs "
        f"from the data's ({len(other)} words, min_count {other.min_count}): id {diff} is "
        f"{word(self)} there and {word(other)} now. To fix: resume with the same dataset, "
        "split and min_count, or start a new workdir.")
