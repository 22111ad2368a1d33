"""Search a prepared catalog with a checkpoint: a caption or a photo -> its best matches.

  python -m mvlt_jax.search --checkpoint=workdirs/demo/checkpoints --query="red floral dress" \\
      --out=results.html
  python -m mvlt_jax.search --checkpoint=CKPT --image=photo.jpg --top_k=10 --out=results.html

prints the top matches (rank, P(match), record id, caption) and, with ``--out``, writes them as
a self-contained HTML page (thumbnails inline as PNG data URIs, scores, captions, classes).

The gallery is the split's products, one record each (the full-gallery evaluation's:
``evaluators.retrieval.gallery_of``). Two stages, as that evaluation ranks (docs/search.md):

1. first stage: the query's pooled unimodal features against every product's (a caption query
   against the images', a photo query against the captions'; ``retrieval.make_pooled_features``,
   cosine similarity); the ``--candidates`` most similar go on;
2. re-rank: the ITM cross-encoder scores each (query, candidate) pair
   (``retrieval.make_itm_scorer``); the matches are the candidates by P(match) =
   sigmoid(log-odds), best first.

The checkpoint's config.json names the dataset (``dataset.name`` and ``dataset.data_dir``,
a relative one taken from where the command runs) and the split (``eval.split`` or
``dataset.eval_split``); ``--dataset``, ``--data_dir`` and ``--split`` replace them. Nothing
is prepared here: prepare a catalog first (``python -m input_pipeline.prepare catalog ...``,
with ``--tokenizer_from=CKPT`` for a checkpoint trained on other data). Captions are
tokenized with the checkpoint's tokenizer; photos get the training preprocessing
(``inference.load_photo``: EXIF orientation, RGB on white, white-margin crop, bilinear resize to
the checkpoint's image size).

Bad input (no checkpoint, a dataset not prepared, an empty query, an unreadable photo, ...) is
one ``error: ...`` line and exit status 1. :class:`Searcher` is the same search from Python.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import io
import os
import sys
import tempfile
import time
from typing import Any, Optional, Sequence

if __name__ == '__main__':  # the command line: TensorFlow's start-up lines off, before its import
  from mvlt_jax import console

  console.quiet_tensorflow()

import ml_collections
import numpy as np
from absl import flags
from absl import logging
from PIL import Image

from mvlt_jax import checkpoint as checkpoint_lib
from mvlt_jax import cli
from mvlt_jax import data as data_lib
from mvlt_jax import inference
from mvlt_jax.errors import MVLTError, printable
from mvlt_jax.evaluators import common, retrieval

_PROGRAM = 'python -m mvlt_jax.search'
_USAGE = f"""Search a prepared catalog with a checkpoint: a caption or a photo -> its best matches.

  {_PROGRAM} --checkpoint=DIR --query="red floral dress" [--out=results.html]
  {_PROGRAM} --checkpoint=DIR --image=photo.jpg [--out=results.html]

The dataset and split are the checkpoint's (config.json) unless --dataset / --data_dir /
--split say otherwise. docs/search.md has the details.
"""
DEFAULT_TOP_K = 20
DEFAULT_CANDIDATES = 100
DEFAULT_BATCH_SIZE = 64
KINDS = {'text': 'caption -> images', 'image': 'photo -> captions'}


class SearchError(MVLTError):
  """A search that cannot run: bad flags, a checkpoint without ITM, no tokenizer, ..."""


@dataclasses.dataclass(frozen=True)
class Match:
  """One product found: its scores, record and image (as the model saw it)."""

  rank: int  # 1 = best
  score: float  # P(match) = sigmoid(log_odds)
  log_odds: float  # ITM logits[1] - logits[0]
  similarity: float  # the first stage's cosine similarity
  record_id: str
  product_id: str
  caption: str
  category: str
  subcategory: str
  image: np.ndarray  # uint8 [S, S, 3]


@dataclasses.dataclass(frozen=True)
class SearchResult:
  """A search's query, matches and what produced them."""

  kind: str  # 'text' | 'image'
  query: str  # the caption, or the photo's path / description
  query_image: Optional[np.ndarray]  # the photo as the model saw it (uint8 [S, S, 3])
  matches: list[Match]
  gallery_size: int
  candidates: int  # pairs the cross-encoder scored
  checkpoint: str
  step: int
  dataset: str
  split: str
  data_dir: str
  first_stage_seconds: float  # the gallery's features (the first search only) and the query's
  rerank_seconds: float


# ----------------------------------------------------------------------------- the search


# Compiled functions by (model config, dtype): searches of one process share them.
_FUNCTIONS: dict[tuple[str, str], tuple[Any, Any]] = {}


def _functions(loaded: common.LoadedCheckpoint, dtype: str):
  """(pooled features, ITM scorer), jit'd once per model and dtype."""
  key = (loaded.model_config.to_json_best_effort(sort_keys=True), dtype)
  if key not in _FUNCTIONS:
    _FUNCTIONS[key] = (
        retrieval.make_pooled_features(loaded.model((), dtype)),
        retrieval.make_itm_scorer(loaded.model(('itm',), dtype)),
    )
  return _FUNCTIONS[key]


def _open_checkpoint(path: str, step: Optional[int]):
  """(LoadedCheckpoint, the run's config) of a checkpoint with an ITM head."""
  opened = checkpoint_lib.open(path, step)
  config = opened.config
  if 'itm' not in config.model.heads:
    raise SearchError(
        f"{opened.path}: the checkpoint's model has the heads {tuple(config.model.heads)}; "
        'search re-ranks with the ITM head: use a pre-training checkpoint.'
    )
  loaded = common.LoadedCheckpoint(
      opened.path,
      int(opened.step),
      config.model,
      opened.variables,
      opened.tokenizer,
      config.get('masking'),
  )
  return loaded, config


def _dataset_config(
    run_config, loaded, dataset: str, data_dir: str, split: str
) -> ml_collections.ConfigDict:
  """The dataset and split to search: the checkpoint's, fields given replacing theirs."""
  saved = run_config.get('dataset') or ml_collections.ConfigDict()
  evaluation = run_config.get('eval') or ml_collections.ConfigDict()
  name = dataset or saved.get('name', '')
  directory = data_dir or saved.get('data_dir', '')
  if not name or not directory:
    raise SearchError(
        f"{loaded.path}: the checkpoint's config.json names no dataset "
        f'({"dataset.data_dir" if name else "dataset.name"} missing): give --dataset=NAME and '
        '--data_dir=DIR.'
    )
  if not data_dir and not os.path.isabs(directory):
    if not os.path.isdir(os.path.join(directory, name)):
      raise SearchError(
          f"the checkpoint's config.json has dataset.data_dir={directory!r}, relative to the "
          f'directory training ran in; here that is {os.path.abspath(directory)}, which holds '
          f'no {name}/. Run from that directory or give --data_dir=DIR.'
      )
  split = split or evaluation.get('split') or saved.get('eval_split') or 'validation'
  return ml_collections.ConfigDict(
      {
          'dataset': {
              'name': name,
              'data_dir': directory,
              'eval_split': split,
              'auto_prepare': False,  # search prepares nothing: a missing dataset is an error
          },
          'eval': {'split': split},
      }
  )


class Searcher:
  """A checkpoint and a prepared split, opened once for any number of searches.

  The gallery's features of each side are computed on the first search that needs them and
  kept; the compiled functions are shared by the searchers of a process.

  Args:
    checkpoint: a checkpoint folder (or one of its steps) with an ITM head.
    step: its step (default: the latest).
    dataset, data_dir, split: replace the checkpoint's config.json's (``dataset.name``,
      ``dataset.data_dir``, ``eval.split`` or ``dataset.eval_split``).
    dtype: compute dtype: 'float32' (default, as :class:`inference.Predictor`), 'bfloat16',
      'float16', or '' for the checkpoint's.
    batch_size: rows per call of the model.

  Raises:
    MVLTError: no checkpoint there (``CheckpointNotFoundError``), a model without ITM, a
      dataset that is not prepared (``PreparedDatasetError``), one tokenized for another
      model, or no tokenizer.
  """

  def __init__(
      self,
      checkpoint: str,
      *,
      step: Optional[int] = None,
      dataset: str = '',
      data_dir: str = '',
      split: str = '',
      dtype: str = inference.DEFAULT_DTYPE,
      batch_size: int = DEFAULT_BATCH_SIZE,
  ):
    if batch_size < 1:
      raise SearchError(f'batch_size must be >= 1, got {batch_size}.')
    self.loaded, run_config = _open_checkpoint(checkpoint, step)
    self.dtype = inference.resolve_dtype(dtype, self.loaded.model_config)
    config = _dataset_config(run_config, self.loaded, dataset, data_dir, split)
    self.data = common.open_eval_split(config, self.loaded)
    self.tokenizer = self.loaded.tokenizer or data_lib.dataset_tokenizer(
        self.data.data_dir, self.data.name
    )
    if self.tokenizer is None:
      raise SearchError(
          f'neither {self.loaded.path} nor {self.data.description} keeps a tokenizer: captions '
          'cannot be encoded.'
      )
    self.metadata, self.view = data_lib.split_view(
        self.data.data_dir,
        self.data.name,
        self.data.split,
        image_size=self.data.image_size,
        prefetch=2,
        num_workers=None,
    )
    self.record_ids, self.product_ids = retrieval.gallery_of(self.metadata)
    if not len(self.record_ids):
      raise SearchError(f'{self.data.description} holds no records to search.')
    self._record_index = {record: i for i, record in enumerate(self.metadata.ids)}
    self.runner = common.LocalRunner(self.loaded.variables)
    self.rows = self.runner.padded(batch_size)
    self._features_fn, self._scorer = _functions(self.loaded, self.dtype)
    length = self.loaded.model_config.text_length
    self._blank_ids = np.asarray(self.tokenizer.encode('', length), np.int32)  # [L]
    self._gallery: dict[str, np.ndarray] = {}  # side -> [N, D]

  @property
  def gallery_size(self) -> int:
    return len(self.record_ids)

  def close(self) -> None:
    self.view.close()

  def __enter__(self) -> 'Searcher':
    return self

  def __exit__(self, *exc) -> None:
    self.close()

  # --------------------------------------------------------------------------- inputs

  def encode_query(self, text: str) -> np.ndarray:
    """A caption query -> int32 [L] with the checkpoint's tokenizer.

    Raises:
      SearchError: an empty query (nothing but white space).
    """
    if not isinstance(text, str) or not text.strip():
      raise SearchError('the query is empty: give a caption, e.g. --query="red floral dress".')
    ids = np.asarray(self.tokenizer.encode(text, self.loaded.model_config.text_length), np.int32)
    common.check_token_ids(ids, self.loaded.model_config.vocab_size, 'the query')
    return ids

  def load_query_image(self, photo) -> np.ndarray:
    """A photo query (a path, image bytes, a PIL image or a uint8 array) -> uint8 [S, S, 3],
    by the training preprocessing (``inference.load_photo``)."""
    if isinstance(photo, str) and not photo.strip():
      raise SearchError('the image query is empty: give a photo, e.g. --image=photo.jpg.')
    return inference.load_photo(photo, self.data.image_size)

  # --------------------------------------------------------------------------- features

  def _blank_images(self, count: int) -> np.ndarray:
    size = self.data.image_size
    return np.full((count, size, size, 3), round(255 * retrieval.BLANK_IMAGE_VALUE), np.uint8)

  def _features(self, images: np.ndarray, input_ids: np.ndarray, side: str) -> np.ndarray:
    """One side's pooled features of up to ``rows`` rows: [n, D]."""
    pad_id = self.tokenizer.pad_id
    inputs = self.runner.put_rows(
        {'images': images, 'input_ids': input_ids, 'text_valid': input_ids != pad_id},
        self.rows,
    )
    visual, text = self._features_fn(self.runner.variables, *inputs.values())
    return np.asarray(visual if side == 'image' else text)[: len(images)]

  def gallery_features(self, side: str) -> np.ndarray:
    """The gallery's features of ``side`` ('image': each image beside an empty caption;
    'text': each caption beside a white image), as ``retrieval.gallery_features`` computes
    them; float32 [N, D], L2-normalised, computed once."""
    if side not in self._gallery:
      parts = []
      ids = list(self.record_ids)
      for chunk in self.view.pairs(ids, ids, self.rows):
        count = len(chunk['images'])
        if side == 'image':
          images, input_ids = chunk['images'], np.tile(self._blank_ids, (count, 1))
        else:
          common.check_token_ids(
              chunk['input_ids'], self.loaded.model_config.vocab_size, self.data.description
          )
          images, input_ids = self._blank_images(count), chunk['input_ids']
        parts.append(self._features(images, input_ids, side))
      self._gallery[side] = np.concatenate(parts)
    return self._gallery[side]

  # --------------------------------------------------------------------------- search

  def search(
      self,
      *,
      query: Optional[str] = None,
      image: Any = None,
      top_k: int = DEFAULT_TOP_K,
      candidates: int = DEFAULT_CANDIDATES,
  ) -> SearchResult:
    """The ``top_k`` best matches of a caption (``query``) or a photo (``image``).

    ``candidates`` products (at least ``top_k``) of the first stage are re-ranked by ITM.

    Raises:
      SearchError: both or neither of query and image, an empty query, top_k or candidates
        below 1.
      PredictorInputError: a photo that cannot be read.
    """
    if (query is None) == (image is None):
      raise SearchError('give one query: a caption (--query=TEXT) or a photo (--image=FILE).')
    if top_k < 1 or candidates < 1:
      raise SearchError(f'top_k and candidates must be >= 1, got {top_k} and {candidates}.')
    start = time.perf_counter()
    if query is not None:
      kind, query_ids = 'text', self.encode_query(query)
      query_image = None
      query_feature = self._features(self._blank_images(1), query_ids[None], 'text')[0]
      gallery = self.gallery_features('image')
      description = query
    else:
      kind, query_ids = 'image', None
      query_image = self.load_query_image(image)
      query_feature = self._features(query_image[None], self._blank_ids[None], 'image')[0]
      gallery = self.gallery_features('text')
      description = (
          printable(os.fspath(image))
          if isinstance(image, (str, os.PathLike))
          else inference.photo_name(image)
      )
    similarity = gallery @ query_feature  # [N]
    width = min(max(candidates, top_k), self.gallery_size)
    chosen = np.argsort(-similarity, kind='stable')[:width]  # first-stage order
    first_stage_seconds = time.perf_counter() - start

    start = time.perf_counter()
    log_odds, images = self._rerank(chosen, query_ids, query_image)
    order = np.argsort(-log_odds, kind='stable')[:top_k]  # ties keep the first stage's order
    rerank_seconds = time.perf_counter() - start

    positions = chosen[order]
    captions = self.captions(self.record_ids[positions])
    matches = []
    for rank, (k, position, caption) in enumerate(zip(order, positions, captions), 1):
      record = str(self.record_ids[position])
      index = self._record_index[record]
      matches.append(
          Match(
              rank=rank,
              score=float(1.0 / (1.0 + np.exp(-log_odds[k]))),
              log_odds=float(log_odds[k]),
              similarity=float(similarity[position]),
              record_id=record,
              product_id=str(self.product_ids[position]),
              caption=caption,
              category=self._class_name('main', self.metadata.categories[index]),
              subcategory=self._class_name('sub', self.metadata.subcategories[index]),
              image=images[k],
          )
      )
    return SearchResult(
        kind=kind,
        query=description,
        query_image=query_image,
        matches=matches,
        gallery_size=self.gallery_size,
        candidates=width,
        checkpoint=self.loaded.path,
        step=self.loaded.step,
        dataset=self.data.name,
        split=self.data.split,
        data_dir=os.path.abspath(self.data.data_dir),
        first_stage_seconds=first_stage_seconds,
        rerank_seconds=rerank_seconds,
    )

  def _rerank(self, chosen, query_ids, query_image) -> tuple[np.ndarray, np.ndarray]:
    """ITM log-odds of (query, gallery[chosen[i]]) [K], and the candidates' images."""
    ids = list(self.record_ids[chosen])
    scores, images = [], []
    for chunk in self.view.pairs(ids, ids, self.rows):
      count = len(chunk['images'])
      if query_ids is not None:  # caption query: the candidates' images
        inputs = {'images': chunk['images'], 'input_ids': np.tile(query_ids, (count, 1))}
      else:  # photo query: the candidates' captions
        common.check_token_ids(
            chunk['input_ids'], self.loaded.model_config.vocab_size, self.data.description
        )
        inputs = {
            'images': np.repeat(query_image[None], count, axis=0),
            'input_ids': chunk['input_ids'],
        }
      inputs = self.runner.put_rows(inputs, self.rows)
      margins = self._scorer(self.runner.variables, inputs['images'], inputs['input_ids'])
      scores.append(np.asarray(margins, np.float32)[:count])
      images.append(chunk['images'])
    return np.concatenate(scores), np.concatenate(images)

  def _class_name(self, level: str, label) -> str:
    names = self.data.class_names.get(level, [])
    label = int(label)
    return str(names[label]) if 0 <= label < len(names) else str(label)

  def captions(self, record_ids: Sequence[str]) -> list[str]:
    """The stored caption text of records (the token ids decoded when the dataset keeps
    none)."""
    texts = self.view.captions(list(record_ids))
    if texts is None:
      return [self.tokenizer.decode(row) for row in self.view.input_ids(list(record_ids))]
    return texts


# ----------------------------------------------------------------------------- output


def format_result(result: SearchResult) -> str:
  """The console report: a header line, then rank, P(match), record id and caption."""
  query = printable(result.query)
  lines = [
      f'search ({KINDS[result.kind]}): "{query}" in {result.dataset} split '
      f'{result.split!r} ({result.gallery_size:,} products; the first stage kept '
      f'{result.candidates}, re-ranked by ITM); checkpoint {printable(result.checkpoint)} step '
      f'{result.step}',
  ]
  ids = [printable(match.record_id) for match in result.matches]
  width = max([len('id')] + [len(i) for i in ids])
  lines.append(f'{"rank":>4}  {"P(match)":>8}  {"id":<{width}}  caption')
  for match, record in zip(result.matches, ids):
    lines.append(
        f'{match.rank:>4}  {match.score:>8.3f}  {record:<{width}}  {printable(match.caption)}'
    )
  lines.append(
      f'first stage {result.first_stage_seconds:.1f} s, re-rank {result.rerank_seconds:.1f} s'
  )
  return '\n'.join(lines)


def _png_data_uri(image: np.ndarray) -> str:
  out = io.BytesIO()
  Image.fromarray(np.asarray(image, np.uint8)).save(out, format='PNG')
  return 'data:image/png;base64,' + base64.b64encode(out.getvalue()).decode('ascii')


_STYLE = """
body { font-family: sans-serif; margin: 1.5em; color: #222; }
.query { display: flex; gap: 1em; align-items: center; margin-bottom: 1em; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(200px, 1fr)); gap: 1em; }
.match { border: 1px solid #ddd; border-radius: 6px; padding: 0.5em; }
.match img, .query img { width: 192px; height: 192px; image-rendering: pixelated; }
.score { font-weight: bold; }
.meta { color: #666; font-size: 0.85em; }
"""


def format_html(result: SearchResult) -> str:
  """A self-contained page of the matches: thumbnails as PNG data URIs, scores, captions."""
  e = lambda value: html.escape(printable(value))
  if result.kind == 'text':
    query = f'<div class="query"><div>Caption: <b>{e(result.query)}</b></div></div>'
  else:
    query = (
        f'<div class="query"><img alt="query" src="{_png_data_uri(result.query_image)}">'
        f'<div>Photo: <b>{e(result.query)}</b><br><span class="meta">as the model sees it '
        '(white margin cropped, resized)</span></div></div>'
    )
  cards = []
  for match in result.matches:
    cards.append(
        '<div class="match">'
        f'<img alt="{e(match.record_id)}" src="{_png_data_uri(match.image)}">'
        f'<div><span class="score">#{match.rank} &middot; P(match) {match.score:.3f}</span>'
        f'<br><span class="meta">ITM log-odds {match.log_odds:.3f}, first-stage similarity '
        f'{match.similarity:.3f}</span></div>'
        f'<div>{e(match.caption)}</div>'
        f'<div class="meta">{e(match.record_id)} (product {e(match.product_id)})<br>'
        f'{e(match.category)} / {e(match.subcategory)}</div>'
        '</div>'
    )
  summary = (
      f'{result.dataset} split {e(result.split)} in {e(result.data_dir)}: '
      f'{result.gallery_size:,} products; the first stage (pooled features) kept '
      f'{result.candidates}, re-ranked by the ITM head; checkpoint {e(result.checkpoint)} step '
      f'{result.step}'
  )
  return (
      '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
      f'<title>mvlt-jax search: {e(result.query)}</title><style>{_STYLE}</style></head>\n'
      f'<body><h1>Search ({KINDS[result.kind]})</h1>{query}'
      f'<p class="meta">{summary}</p>\n<div class="grid">\n'
      + '\n'.join(cards)
      + '\n</div></body></html>\n'
  )


def write_html(path: str, result: SearchResult) -> None:
  """Writes :func:`format_html` to ``path`` atomically (its folder created if missing)."""
  directory = os.path.dirname(os.path.abspath(path))
  try:
    os.makedirs(directory, exist_ok=True)
    with tempfile.NamedTemporaryFile(
        'w', dir=directory, suffix='.tmp', delete=False, encoding='utf-8'
    ) as f:
      f.write(format_html(result))
    os.replace(f.name, path)
  except OSError as e:
    raise SearchError(f'cannot write {printable(path)}: {printable(e.strerror or e)}.') from e


# ----------------------------------------------------------------------------- command line


def _define_flags(fv: flags.FlagValues) -> None:
  f = dict(flag_values=fv)
  flags.DEFINE_string('checkpoint', None, 'checkpoint folder (or one of its steps), required', **f)
  flags.DEFINE_integer('step', None, 'checkpoint step (default: the latest)', **f)
  flags.DEFINE_string('query', None, 'a caption to search for', **f)
  flags.DEFINE_string('image', None, 'a photo to search with (a file)', **f)
  flags.DEFINE_string('out', '', 'write the matches to this HTML file', **f)
  flags.DEFINE_integer('top_k', DEFAULT_TOP_K, 'matches shown', **f)
  flags.DEFINE_integer(
      'candidates', DEFAULT_CANDIDATES, 'products of the first stage re-ranked by ITM', **f
  )
  flags.DEFINE_string('dataset', '', "dataset name (default: the checkpoint's)", **f)
  flags.DEFINE_string(
      'data_dir', '', "where prepared datasets live (default: the checkpoint's)", **f
  )
  flags.DEFINE_string('split', '', "split to search (default: the checkpoint's eval split)", **f)
  flags.DEFINE_string(
      'dtype', inference.DEFAULT_DTYPE, "float32 | bfloat16 | float16 | '' (the checkpoint's)", **f
  )
  flags.DEFINE_integer('batch_size', DEFAULT_BATCH_SIZE, 'rows per call of the model', **f)


def _parse(argv: Sequence[str]) -> flags.FlagValues:
  options = flags.FlagValues()
  _define_flags(options)
  try:
    extra = options(list(argv))[1:]
  except flags.Error as error:
    raise SearchError(str(error).strip().splitlines()[0]) from error
  if extra:
    raise SearchError(f'unexpected arguments {extra} (flags are --name=value).')
  if not options.checkpoint:
    raise SearchError('--checkpoint=DIR is required (a checkpoint folder with an ITM head).')
  if options['query'].present == options['image'].present:
    raise SearchError('give one query: a caption (--query=TEXT) or a photo (--image=FILE).')
  if options['query'].present and not (options.query or '').strip():
    raise SearchError('--query is empty: give a caption, e.g. --query="red floral dress".')
  if options['image'].present:
    if not options.image:
      raise SearchError('--image is empty: give a photo file, e.g. --image=photo.jpg.')
    if not os.path.isfile(options.image):
      raise SearchError(f'--image={printable(options.image)}: no such file.')
  if options.top_k < 1 or options.candidates < 1 or options.batch_size < 1:
    raise SearchError('--top_k, --candidates and --batch_size must be >= 1.')
  if options.out and os.path.isdir(options.out):
    raise SearchError(f'--out={printable(options.out)} is a folder; give an HTML file name.')
  return options


def main(argv: Optional[Sequence[str]] = None) -> int:
  """Command-line entry point; returns the exit status (errors print one ``error:`` line).

  ``argv``: the arguments after the program name (default ``sys.argv[1:]``).
  """
  argv = [_PROGRAM, *(sys.argv[1:] if argv is None else argv)]
  if cli.help_requested(argv[1:]):
    options = flags.FlagValues()
    _define_flags(options)
    print(cli.help_text(_USAGE, options))
    return 0
  verbosity = logging.get_verbosity()
  logging.set_verbosity(logging.ERROR)  # the libraries' logs (orbax, TFDS): the report is printed
  try:
    options = _parse(argv)
    with Searcher(
        options.checkpoint,
        step=options.step,
        dataset=options.dataset,
        data_dir=options.data_dir,
        split=options.split,
        dtype=options.dtype,
        batch_size=options.batch_size,
    ) as searcher:
      result = searcher.search(
          query=options.query if options['query'].present else None,
          image=options.image if options['image'].present else None,
          top_k=options.top_k,
          candidates=options.candidates,
      )
    print(format_result(result), flush=True)
    if options.out:
      write_html(options.out, result)
      print(f'wrote {printable(options.out)}', flush=True)
  except MVLTError as error:
    print(f'error: {printable(error)}', file=sys.stderr)
    return 1
  finally:
    logging.set_verbosity(verbosity)
  return 0


if __name__ == '__main__':
  sys.exit(main())
