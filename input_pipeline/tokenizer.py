"""Caption tokenizers: SentencePiece trained on the training captions, or BERT WordPiece.

Both produce the model's text input, ``[CLS] tokens [SEP]`` right-padded with
``[PAD]`` to a fixed length (no attention mask: the model attends to padding).

* :class:`SentencePieceTokenizer` is trained on the lower-cased training
  captions when a dataset is prepared (:func:`train_sentencepiece`), with fixed
  ids ``[PAD]=0, [UNK]=1, [CLS]=2, [SEP]=3, [MASK]=4``.
* :class:`WordPieceTokenizer` reads a BERT uncased ``vocab.txt`` (the release's
  vocabulary: 30,522 entries, ``[PAD]=0, [UNK]=100, [CLS]=101, [SEP]=102,
  [MASK]=103``) and tokenizes like BERT's uncased tokenizer, in pure Python.

A tokenizer is saved in a directory holding its model file and a
``tokenizer.json`` (kind, vocabulary size, special ids, fingerprint of the
model file); :func:`load_tokenizer` reads it back.

A training checkpoint keeps the tokenizer of its dataset beside its steps
(``CKPT/tokenizer``, ``mvlt_jax.checkpoint.TOKENIZER_DIR``);
:func:`checkpoint_tokenizer` reads it (without TensorFlow or JAX), so that another dataset
can be tokenized with it (``prepare --tokenizer_from=CKPT``) and ``init_from`` can tell
whether a checkpoint's word table fits a dataset.
"""

from __future__ import annotations

import abc
import dataclasses
import hashlib
import io
import json
import os
import unicodedata
from collections.abc import Iterable, Sequence
from typing import ClassVar

import numpy as np
import sentencepiece as spm

from input_pipeline.errors import TokenizerError

TOKENIZER_JSON = 'tokenizer.json'
SPECIAL_TOKENS = ('[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]')


@dataclasses.dataclass(frozen=True)
class SpecialIds:
  """Ids of the special tokens."""

  pad: int
  unk: int
  cls: int
  sep: int
  mask: int

  def as_tuple(self) -> tuple[int, ...]:
    return (self.pad, self.unk, self.cls, self.sep, self.mask)

  def as_dict(self) -> dict[str, int]:
    return dataclasses.asdict(self)


# The fixed ids of a trained SentencePiece model.
SENTENCEPIECE_SPECIAL_IDS = SpecialIds(pad=0, unk=1, cls=2, sep=3, mask=4)
# The ids of bert-base-uncased's vocab.txt.
BERT_UNCASED_SPECIAL_IDS = SpecialIds(pad=0, unk=100, cls=101, sep=102, mask=103)


def _sha256(data: bytes) -> str:
  return hashlib.sha256(data).hexdigest()


def _write_atomically(path: str, data: bytes) -> None:
  tmp_path = f'{path}.tmp-{os.getpid()}'
  with open(tmp_path, 'wb') as f:
    f.write(data)
  os.replace(tmp_path, path)


class Tokenizer(abc.ABC):
  """Maps captions to fixed-length id sequences ``[CLS] tokens [SEP] [PAD]...``."""

  KIND: ClassVar[str]
  MODEL_FILE: ClassVar[str]

  def __init__(self, special_ids: SpecialIds):
    self._special_ids = special_ids
    self._special_id_set = frozenset(special_ids.as_tuple())

  # -- what each kind provides -------------------------------------------------

  @property
  @abc.abstractmethod
  def vocab_size(self) -> int:
    """Number of ids (the size of the embedding table it needs)."""

  @abc.abstractmethod
  def tokenize(self, text: str) -> list[int]:
    """The ids of ``text``'s tokens, without any special token."""

  @abc.abstractmethod
  def _ids_to_text(self, ids: list[int]) -> str:
    """Text of ids that contain no special id."""

  @abc.abstractmethod
  def model_bytes(self) -> bytes:
    """Content of the model file (saved as ``MODEL_FILE``)."""

  # -- shared behaviour -------------------------------------------------------

  @property
  def pad_id(self) -> int:
    return self._special_ids.pad

  @property
  def unk_id(self) -> int:
    return self._special_ids.unk

  @property
  def cls_id(self) -> int:
    return self._special_ids.cls

  @property
  def sep_id(self) -> int:
    return self._special_ids.sep

  @property
  def mask_id(self) -> int:
    return self._special_ids.mask

  @property
  def special_ids(self) -> tuple[int, ...]:
    """``(pad, unk, cls, sep, mask)`` ids."""
    return self._special_ids.as_tuple()

  @property
  def fingerprint(self) -> str:
    """SHA-256 of the model file: identifies this exact tokenizer."""
    return _sha256(self.model_bytes())

  def encode(self, text: str, length: int) -> np.ndarray:
    """``[CLS] tokens [SEP]`` right-padded with ``[PAD]``; int32 ``[length]``.

    Tokens past ``length - 2`` are dropped.
    """
    if length < 2:
      raise ValueError(f'length must leave room for [CLS] and [SEP], got {length}')
    return self._pack(self.tokenize(text), length)

  def encode_batch(self, texts: Sequence[str], length: int) -> np.ndarray:
    """:meth:`encode` of each text; int32 ``[len(texts), length]``."""
    if length < 2:
      raise ValueError(f'length must leave room for [CLS] and [SEP], got {length}')
    out = np.full((len(texts), length), self.pad_id, dtype=np.int32)
    for row, token_ids in enumerate(self._tokenize_batch(texts)):
      out[row] = self._pack(token_ids, length)
    return out

  def decode(self, ids: Iterable[int]) -> str:
    """The text of ``ids``, skipping the special tokens."""
    kept = [int(i) for i in ids if int(i) not in self._special_id_set]
    return self._ids_to_text(kept)

  def info(self) -> dict:
    """What ``tokenizer.json`` and the dataset metadata record."""
    return {
        'kind': self.KIND,
        'vocab_size': self.vocab_size,
        'special_ids': self._special_ids.as_dict(),
        'model_file': self.MODEL_FILE,
        'fingerprint': self.fingerprint,
    }

  def save(self, directory: str) -> None:
    """Writes the model file and ``tokenizer.json`` (last) into ``directory``."""
    os.makedirs(directory, exist_ok=True)
    _write_atomically(os.path.join(directory, self.MODEL_FILE), self.model_bytes())
    _write_atomically(
        os.path.join(directory, TOKENIZER_JSON), json.dumps(self.info(), indent=2).encode('utf-8')
    )

  def _tokenize_batch(self, texts: Sequence[str]) -> list[list[int]]:
    return [self.tokenize(text) for text in texts]

  def _pack(self, token_ids: list[int], length: int) -> np.ndarray:
    ids = [self.cls_id] + token_ids[: length - 2] + [self.sep_id]
    out = np.full((length,), self.pad_id, dtype=np.int32)
    out[: len(ids)] = ids
    return out


# ---------------------------------------------------------------------------
# SentencePiece


class SentencePieceTokenizer(Tokenizer):
  """A SentencePiece model over lower-cased text, with ids 0-4 the special tokens."""

  KIND = 'sentencepiece'
  MODEL_FILE = 'spm.model'

  def __init__(self, model_proto: bytes, source: str = '<memory>'):
    super().__init__(SENTENCEPIECE_SPECIAL_IDS)
    self._model_proto = model_proto
    try:
      self._processor = spm.SentencePieceProcessor(model_proto=model_proto)
    except (RuntimeError, OSError) as e:
      raise TokenizerError(f'{source}: not a SentencePiece model ({e})') from e
    for token, expected_id in zip(SPECIAL_TOKENS, self.special_ids):
      found = self._processor.piece_to_id(token)
      if found != expected_id:
        raise TokenizerError(
            f'{source}: SentencePiece model has {token} at id {found}, ' f'expected {expected_id}'
        )

  @property
  def vocab_size(self) -> int:
    return self._processor.get_piece_size()

  def tokenize(self, text: str) -> list[int]:
    return self._processor.encode(text.lower(), out_type=int)

  def _tokenize_batch(self, texts: Sequence[str]) -> list[list[int]]:
    return self._processor.encode([t.lower() for t in texts], out_type=int)

  def _ids_to_text(self, ids: list[int]) -> str:
    return self._processor.decode(ids)

  def model_bytes(self) -> bytes:
    return self._model_proto


def train_sentencepiece(
    captions: Iterable[str],
    vocab_size: int,
    out_dir: str | None = None,
    *,
    model_type: str = 'unigram',
    character_coverage: float = 0.9995,
    max_sentence_length: int = 16384,
) -> SentencePieceTokenizer:
  """Trains a SentencePiece model on lower-cased ``captions``, deterministically.

  The vocabulary size is a soft limit (``hard_vocab_limit=False``) so a small
  corpus yields a smaller vocabulary instead of an error; the special tokens
  are control symbols at fixed ids ``[PAD]=0, [UNK]=1, [CLS]=2, [SEP]=3,
  [MASK]=4`` (text never encodes to them). Training runs on one thread over
  the captions in the given order, so the same captions give the same model.

  Args:
    captions: training captions (blank ones are ignored).
    vocab_size: requested vocabulary size, special tokens included.
    out_dir: if given, the tokenizer is saved there.
    model_type: SentencePiece model type (``unigram`` or ``bpe``).
    character_coverage: share of characters covered by the vocabulary.
    max_sentence_length: longest caption (bytes) used for training.

  Returns:
    The trained tokenizer.
  """
  corpus = [c.lower() for c in captions if c and c.strip()]
  if not corpus:
    raise TokenizerError('cannot train SentencePiece: there are no training captions')
  model = io.BytesIO()
  try:
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus),
        model_writer=model,
        vocab_size=vocab_size,
        model_type=model_type,
        character_coverage=character_coverage,
        max_sentence_length=max_sentence_length,
        pad_id=SENTENCEPIECE_SPECIAL_IDS.pad,
        pad_piece='[PAD]',
        unk_id=SENTENCEPIECE_SPECIAL_IDS.unk,
        unk_piece='[UNK]',
        bos_id=-1,
        eos_id=-1,
        control_symbols=['[CLS]', '[SEP]', '[MASK]'],
        hard_vocab_limit=False,
        num_threads=1,
        shuffle_input_sentence=False,
        input_sentence_size=0,
        minloglevel=2,
    )
  except RuntimeError as e:
    raise TokenizerError(
        f'SentencePiece training on {len(corpus)} captions with vocab_size='
        f'{vocab_size} failed: {e}'
    ) from e
  tokenizer = SentencePieceTokenizer(model.getvalue(), source='trained model')
  if out_dir is not None:
    tokenizer.save(out_dir)
  return tokenizer


# ---------------------------------------------------------------------------
# BERT WordPiece


def _is_whitespace(char: str) -> bool:
  return char in ' \t\n\r' or unicodedata.category(char) == 'Zs'


def _is_control(char: str) -> bool:
  if char in '\t\n\r':
    return False
  return unicodedata.category(char) in ('Cc', 'Cf')


def _is_punctuation(char: str) -> bool:
  cp = ord(char)
  # All non-letter/number ASCII characters count as punctuation, as in BERT.
  if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
    return True
  return unicodedata.category(char).startswith('P')


def _is_cjk(cp: int) -> bool:
  """CJK Unified Ideographs blocks (not Hangul or Kana), as BERT defines them."""
  return (
      0x4E00 <= cp <= 0x9FFF
      or 0x3400 <= cp <= 0x4DBF
      or 0x20000 <= cp <= 0x2A6DF
      or 0x2A700 <= cp <= 0x2B73F
      or 0x2B740 <= cp <= 0x2B81F
      or 0x2B820 <= cp <= 0x2CEAF
      or 0xF900 <= cp <= 0xFAFF
      or 0x2F800 <= cp <= 0x2FA1F
  )


def basic_tokenize(text: str) -> list[str]:
  """BERT's uncased basic tokenizer: clean, lower-case, strip accents, split.

  Control characters are dropped, CJK ideographs become words of their own and
  every punctuation character is split off as a word.
  """
  chars = []
  for char in text:
    cp = ord(char)
    if cp == 0 or cp == 0xFFFD or _is_control(char):
      continue
    if _is_whitespace(char):
      chars.append(' ')
    elif _is_cjk(cp):
      chars.extend((' ', char, ' '))
    else:
      chars.append(char)
  words = []
  for word in ''.join(chars).split():
    word = unicodedata.normalize('NFD', word.lower())
    word = ''.join(c for c in word if unicodedata.category(c) != 'Mn')
    current = []
    for char in word:
      if _is_punctuation(char):
        if current:
          words.append(''.join(current))
          current = []
        words.append(char)
      else:
        current.append(char)
    if current:
      words.append(''.join(current))
  return words


def _vocab_lines(text: str) -> list[str]:
  """The tokens of a ``vocab.txt``: one per line (``\\n`` or ``\\r\\n``)."""
  lines = text.split('\n')
  if lines and lines[-1] == '':
    lines.pop()
  return [line[:-1] if line.endswith('\r') else line for line in lines]


class WordPieceTokenizer(Tokenizer):
  """BERT uncased WordPiece (greedy longest-match-first, ``##`` continuations).

  Args:
    vocab: the tokens, in id order (a ``vocab.txt``'s lines).
    expected_special_ids: the ids the special tokens must have in ``vocab``.
    max_chars_per_word: longer words become ``[UNK]``.
    source: where ``vocab`` comes from, for error messages.
  """

  KIND = 'wordpiece'
  MODEL_FILE = 'vocab.txt'

  def __init__(
      self,
      vocab: Sequence[str],
      expected_special_ids: SpecialIds = BERT_UNCASED_SPECIAL_IDS,
      max_chars_per_word: int = 100,
      source: str = '<memory>',
  ):
    self._vocab = list(vocab)
    self._token_to_id: dict[str, int] = {}
    for index, token in enumerate(self._vocab):
      if token in self._token_to_id:
        raise TokenizerError(
            f'{source}: token {token!r} appears twice (lines '
            f'{self._token_to_id[token] + 1} and {index + 1})'
        )
      self._token_to_id[token] = index
    found = {}
    for token, expected_id in zip(SPECIAL_TOKENS, expected_special_ids.as_tuple()):
      found[token] = self._token_to_id.get(token)
      if found[token] != expected_id:
        where = 'missing' if found[token] is None else f'at id {found[token]}'
        raise TokenizerError(
            f'{source}: {token} is {where}, expected id {expected_id} ' '(a BERT uncased vocab.txt)'
        )
    super().__init__(expected_special_ids)
    self._max_chars_per_word = max_chars_per_word
    self._word_cache: dict[str, list[int]] = {}

  @classmethod
  def from_vocab_file(cls, path: str, **kwargs) -> 'WordPieceTokenizer':
    """Reads a ``vocab.txt`` (one token per line, the id is the line index)."""
    try:
      with open(path, 'rb') as f:
        data = f.read()
    except OSError as e:
      raise TokenizerError(f'{path}: cannot read the vocabulary ({e.strerror})') from e
    try:
      text = data.decode('utf-8')
    except UnicodeDecodeError as e:
      raise TokenizerError(f'{path}: vocabulary is not UTF-8 ({e})') from e
    return cls(_vocab_lines(text), source=path, **kwargs)

  @property
  def vocab_size(self) -> int:
    return len(self._vocab)

  def tokenize(self, text: str) -> list[int]:
    ids = []
    for word in basic_tokenize(text):
      word_ids = self._word_cache.get(word)
      if word_ids is None:
        word_ids = self._wordpiece(word)
        self._word_cache[word] = word_ids
      ids.extend(word_ids)
    return ids

  def _wordpiece(self, word: str) -> list[int]:
    """Greedy longest-match-first split of one word; ``[UNK]`` if impossible."""
    if len(word) > self._max_chars_per_word:
      return [self.unk_id]
    ids = []
    start = 0
    while start < len(word):
      end = len(word)
      piece_id = None
      while start < end:
        piece = word[start:end] if start == 0 else '##' + word[start:end]
        piece_id = self._token_to_id.get(piece)
        if piece_id is not None:
          break
        end -= 1
      if piece_id is None:
        return [self.unk_id]
      ids.append(piece_id)
      start = end
    return ids

  def _ids_to_text(self, ids: list[int]) -> str:
    text = ' '.join(self._vocab[i] for i in ids)
    return text.replace(' ##', '').replace('##', '')

  def model_bytes(self) -> bytes:
    return ('\n'.join(self._vocab) + '\n').encode('utf-8')


# ---------------------------------------------------------------------------
# Loading

_TOKENIZER_KINDS = ('sentencepiece', 'wordpiece')


def load_tokenizer(directory: str) -> Tokenizer:
  """Loads a tokenizer saved by :meth:`Tokenizer.save`.

  Raises:
    TokenizerError: the directory holds no tokenizer, or its files disagree
      with ``tokenizer.json`` (kind, special ids, vocabulary size, fingerprint).
  """
  info_path = os.path.join(directory, TOKENIZER_JSON)
  try:
    with open(info_path, 'rb') as f:
      info = json.loads(f.read().decode('utf-8'))
  except FileNotFoundError as e:
    raise TokenizerError(f'{info_path}: no tokenizer saved here') from e
  except (OSError, ValueError) as e:
    raise TokenizerError(f'{info_path}: cannot read ({e})') from e
  kind = info.get('kind')
  if kind not in _TOKENIZER_KINDS:
    raise TokenizerError(
        f'{info_path}: unknown tokenizer kind {kind!r}, ' f'expected one of {_TOKENIZER_KINDS}'
    )
  model_path = os.path.join(directory, info.get('model_file', ''))
  try:
    with open(model_path, 'rb') as f:
      model = f.read()
  except OSError as e:
    raise TokenizerError(f'{model_path}: cannot read the tokenizer model ({e})') from e
  if kind == 'sentencepiece':
    tokenizer = SentencePieceTokenizer(model, source=model_path)
  else:
    special_ids = SpecialIds(**info['special_ids'])
    tokenizer = WordPieceTokenizer(
        _vocab_lines(model.decode('utf-8')), expected_special_ids=special_ids, source=model_path
    )
  recorded = {k: info.get(k) for k in ('special_ids', 'vocab_size', 'fingerprint')}
  actual = {k: tokenizer.info()[k] for k in recorded}
  if recorded != actual:
    raise TokenizerError(
        f'{info_path}: does not match {model_path} ' f'(recorded {recorded}, found {actual})'
    )
  return tokenizer


# ---------------------------------------------------------------------------
# The tokenizer of a checkpoint

# The layout of a mvlt_jax checkpoint folder (mvlt_jax.checkpoint: CONFIG_FILE, TOKENIZER_DIR),
# repeated here so that preparation does not import JAX and orbax.
CHECKPOINT_CONFIG_FILE = 'config.json'
CHECKPOINT_TOKENIZER_DIR = 'tokenizer'


def checkpoint_folder(path: str) -> str:
  """The folder holding a checkpoint's ``config.json`` and tokenizer: ``path`` itself, or its
  parent when ``path`` is one of its ``<step>`` folders (absolute)."""
  path = os.path.abspath(os.fspath(path))
  parent = os.path.dirname(path)
  if os.path.basename(path).isdigit() and (
      os.path.isfile(os.path.join(parent, CHECKPOINT_CONFIG_FILE))
      or os.path.isdir(os.path.join(parent, CHECKPOINT_TOKENIZER_DIR))
  ):
    return parent
  return path


def checkpoint_tokenizer(path: str) -> Tokenizer | None:
  """The tokenizer saved beside the checkpoint ``path`` (a checkpoint folder or one of its
  steps), or None when it keeps none (e.g. one converted from the release's PyTorch files).

  Raises:
    TokenizerError: the tokenizer saved there cannot be read.
  """
  directory = os.path.join(checkpoint_folder(path), CHECKPOINT_TOKENIZER_DIR)
  if not os.path.isdir(directory):
    return None
  return load_tokenizer(directory)
