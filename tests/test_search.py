"""Your own catalog, end to end (#18): a JSONL catalog of photos prepared with
``input_pipeline.prepare``, a tiny checkpoint saved with the catalog's tokenizer, then

* ``python -m mvlt_jax.search`` (``main([...])`` in-process) on a caption and on a photo: the
  console report, the HTML page, the scores against the Predictor's, the first stage against
  the full-gallery evaluation's features, and the one-line errors;
* the README's inference snippet, extracted by its marker and run as it is.

The model is random (pvlt_micro at 64x64, L=16): the tests check what reaches the model and
what comes back, not the quality of the matches. Six compiles: the search's two functions
(shared by every search of the process), the evaluation's features, and the Predictor's
forward at N=2 and features at N=1 and N=2, which the README snippet's Predictor reuses (same
model, same shapes).
"""

import contextlib
import io
import os
import re

import numpy as np
import pytest
from PIL import Image

from input_pipeline import image_ops, prepare
from mvlt_jax import checkpoint, search
from mvlt_jax.inference import Predictor
from mvlt_jax.models import build_model
from tests import conftest
from tests import prepare_test_data as data

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGE_SIZE = 64
TEXT_LENGTH = 16
TOP_K = 4
COLOURS = {
    'red': (200, 30, 30),
    'blue': (30, 60, 200),
    'green': (30, 160, 60),
    'black': (20, 20, 20),
    'yellow': (230, 200, 40),
    'purple': (120, 40, 150),
}
CLASSES = [('TOPS', 'SHIRTS', 'cotton shirt'), ('SHOES', 'BOOTS', 'leather boots')]
QUERY = 'red cotton shirt'


def photo(colour, size, box):
  """A product photo: a coloured, shaded object in ``box`` on a white background."""
  image = np.full(size[::-1] + (3,), 255, np.uint8)
  left, top, right, bottom = box
  shade = np.linspace(0.7, 1.0, right - left)[None, :, None]
  image[top:bottom, left:right] = (np.array(colour) * shade).astype(np.uint8)
  return Image.fromarray(image)


def write_catalog(manual):
  """Training and validation records: every colour with both classes, photos of 256x256 and
  300x200 with white margins (JPEG and PNG)."""
  os.makedirs(os.path.join(manual, 'images'))
  records = {'train': [], 'validation': []}
  index = 0
  for split in ('train', 'validation'):
    for c, (colour, rgb) in enumerate(COLOURS.items()):
      for k, (category, subcategory, noun) in enumerate(CLASSES):
        if split == 'train' and (c + k) % 2:
          continue  # a smaller training split, every class still in it
        big = (c + k) % 2 == 0
        size, box = ((256, 256), (40, 60, 200, 230)) if big else ((300, 200), (90, 20, 250, 180))
        name = f'images/{split}_{colour}_{k}.{"png" if big else "jpg"}'
        photo(rgb, size, box).save(os.path.join(manual, name))
        records[split].append(
            data.catalog_record(
                index,
                name,
                category=category,
                subcategory=subcategory,
                caption=f'{colour.capitalize()} {noun} number {index}',
            )
        )
        index += 1
  for split, rows in records.items():
    data.write_jsonl(os.path.join(manual, f'{split}.jsonl'), rows)
  return records


@pytest.fixture(scope='module')
def catalog(tmp_path_factory):
  root = tmp_path_factory.mktemp('search')
  manual = str(root / 'manual')
  records = write_catalog(manual)
  data_dir = str(root / 'data')
  prepare.prepare_dataset(
      'catalog',
      data_dir,
      manual_dir=manual,
      vocab_size=60,
      text_length=TEXT_LENGTH,
      image_size=IMAGE_SIZE,
      num_workers=1,
  )
  prepared = prepare.load_prepared('catalog', data_dir)
  config = conftest.tiny_config(heads=('mlm', 'itm'))
  config.model.vocab_size = prepared.tokenizer.vocab_size
  config.dataset.name = 'catalog'
  config.dataset.data_dir = data_dir
  variables = conftest.random_variables(build_model(config.model), IMAGE_SIZE, TEXT_LENGTH)
  checkpoint_dir = str(root / 'checkpoint')
  checkpoint.save_variables(
      checkpoint_dir, variables, config, tokenizer_dir=prepare.tokenizer_dir(data_dir, 'catalog')
  )
  return dict(
      root=root,
      manual=manual,
      data_dir=data_dir,
      checkpoint=checkpoint_dir,
      config=config,
      variables=variables,
      tokenizer=prepared.tokenizer,
      validation=records['validation'],
  )


@pytest.fixture(scope='module')
def searcher(catalog):
  with search.Searcher(catalog['checkpoint']) as opened:
    yield opened


@pytest.fixture(scope='module')
def predictor(catalog):
  return Predictor.from_checkpoint(catalog['checkpoint'])


def run_main(*args):
  """``search.main(args)`` -> (exit status, stdout, stderr)."""
  out, err = io.StringIO(), io.StringIO()
  with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
    status = search.main(list(args))
  return status, out.getvalue(), err.getvalue()


def report_rows(stdout):
  """(rank, P(match), id, caption) of the console report's match lines."""
  rows = re.findall(r'^\s+(\d+)\s+(\d\.\d{3})\s+(\S+)\s+(.*)$', stdout, re.MULTILINE)
  return [(int(rank), float(score), record, caption) for rank, score, record, caption in rows]


# ----------------------------------------------------------------------------- ITEM 4: search


def test_caption_search_writes_the_report_and_the_page(catalog, searcher, predictor, tmp_path):
  out = tmp_path / 'pages' / 'results.html'
  status, stdout, stderr = run_main(
      f'--checkpoint={catalog["checkpoint"]}',
      f'--query={QUERY}',
      f'--top_k={TOP_K}',
      f'--out={out}',
  )
  assert status == 0, stderr
  # The dataset and split came from the checkpoint's config.json.
  assert "in catalog split 'validation' (12 products; the first stage kept 12" in stdout
  rows = report_rows(stdout)
  assert [row[0] for row in rows] == list(range(1, TOP_K + 1))
  assert [row[1] for row in rows] == sorted((row[1] for row in rows), reverse=True)
  captions = {r['id']: r['caption'] for r in catalog['validation']}
  assert all(captions[record] == caption for _, _, record, caption in rows)
  assert f'wrote {out}' in stdout
  page = out.read_text()
  assert page.count('src="data:image/png;base64,') == TOP_K
  for _, _, record, caption in rows:
    assert caption in page and record in page
  # The same search from Python; its scores are the Predictor's P(match) of each pair.
  result = searcher.search(query=QUERY, top_k=TOP_K)
  assert [(m.rank, round(m.score, 3), m.record_id) for m in result.matches] == [
      row[:3] for row in rows
  ]
  best = result.matches[:2]  # two: the README snippet's shape, compiled once
  expected = predictor.itm_scores(np.stack([m.image for m in best]), [QUERY] * 2)
  np.testing.assert_allclose([m.score for m in best], expected, rtol=1e-4, atol=1e-5)
  assert {m.category for m in result.matches} <= {'TOPS', 'SHOES'}


def test_photo_search_preprocesses_the_photo_as_training(catalog, searcher, predictor, tmp_path):
  record = catalog['validation'][0]  # a 256x256 PNG with white margins
  path = os.path.join(catalog['manual'], record['image'])
  out = tmp_path / 'photo.html'
  status, stdout, stderr = run_main(
      f'--checkpoint={catalog["checkpoint"]}', f'--image={path}', f'--top_k={TOP_K}', f'--out={out}'
  )
  assert status == 0, stderr
  assert 'search (photo -> captions)' in stdout and len(report_rows(stdout)) == TOP_K
  assert out.read_text().count('src="data:image/png;base64,') == TOP_K + 1  # and the query
  result = searcher.search(image=path, top_k=TOP_K)
  # The photo as the model sees it is the prepared dataset's image of that record: cropped to
  # the object and resized from 256 to 64, as prepare stored it.
  stored = searcher.view.images([record['id']])[0]
  np.testing.assert_array_equal(result.query_image, stored)
  assert result.query_image.shape == (IMAGE_SIZE, IMAGE_SIZE, 3)
  # Scores: the Predictor's, given the photo file itself and the matches' captions.
  best = result.matches[:2]
  expected = predictor.itm_scores([path] * 2, [m.caption for m in best])
  np.testing.assert_allclose([m.score for m in best], expected, rtol=1e-4, atol=1e-5)


def test_first_stage_is_the_full_gallery_evaluations(catalog, searcher, predictor):
  import ml_collections

  from mvlt_jax.evaluators import retrieval

  config = ml_collections.ConfigDict({'eval': {'dtype': 'float32'}})
  images, captions = retrieval.gallery_features(
      config,
      searcher.loaded,
      searcher.data,
      searcher.runner,
      searcher.view,
      searcher.record_ids,
      searcher.rows,
  )
  np.testing.assert_allclose(searcher.gallery_features('image'), images, atol=1e-5)
  np.testing.assert_allclose(searcher.gallery_features('text'), captions, atol=1e-5)
  # The Predictor's embeddings are the same features (inference.py cannot import the
  # evaluation's function: it reads data, hence TensorFlow).
  ids = list(searcher.record_ids[:2])
  np.testing.assert_allclose(
      predictor.embed_images(searcher.view.images(ids)), images[:2], atol=1e-5
  )
  np.testing.assert_allclose(
      predictor.embed_captions(searcher.view.input_ids(ids)), captions[:2], atol=1e-5
  )
  # With 3 candidates the cross-encoder re-orders the first stage's 3 best.
  query_feature = predictor.embed_captions(QUERY)[0]
  best = set(np.argsort(-(images @ query_feature), kind='stable')[:3])
  result = searcher.search(query=QUERY, top_k=3, candidates=3)
  assert result.candidates == 3
  assert {list(searcher.record_ids).index(m.record_id) for m in result.matches} == best


@pytest.mark.parametrize(
    'args, message',
    [
        (['--checkpoint=/nonexistent/ckpt', '--query=dress'], 'No checkpoint directory at'),
        (['--checkpoint={ckpt}', '--query=   '], '--query is empty'),
        (['--checkpoint={ckpt}'], 'give one query'),
        (['--checkpoint={ckpt}', '--query=dress', '--image=x.jpg'], 'give one query'),
        (['--checkpoint={ckpt}', '--image=/nonexistent/photo.jpg'], 'no such file'),
        (['--checkpoint={ckpt}', '--query=dress', '--data_dir={empty}'], 'Prepare it with'),
        (['--checkpoint={ckpt}', '--query=dress', '--split=test'], 'test'),
        (['--checkpoint={ckpt}', '--image={not_an_image}'], 'not an image'),
        (['--checkpoint={ckpt}', '--query=dress', '--top_k=0'], 'must be >= 1'),
        (['--query=dress'], '--checkpoint=DIR is required'),
    ],
)
def test_errors_are_one_line(catalog, tmp_path, args, message):
  not_an_image = tmp_path / 'photo.jpg'
  not_an_image.write_text('hello')
  empty = tmp_path / 'empty'
  empty.mkdir()
  names = dict(ckpt=catalog['checkpoint'], empty=empty, not_an_image=not_an_image)
  status, stdout, stderr = run_main(*(arg.format(**names) for arg in args))
  assert status == 1 and not stdout
  assert stderr.startswith('error: ') and stderr.count('\n') == 1, stderr
  assert message in stderr


# ----------------------------------------------------------------------------- ITEM 5: README


def readme_snippet(marker):
  """The fenced python block after ``<!-- marker -->`` in README.md."""
  with open(os.path.join(REPO, 'README.md'), encoding='utf-8') as f:
    text = f.read()
  found = re.search(rf'<!-- {re.escape(marker)} -->\s*```python\n(.*?)```', text, re.DOTALL)
  assert found, f'README.md has no python block after <!-- {marker} -->'
  return found.group(1)


def test_readme_inference_snippet_runs(catalog, tmp_path, monkeypatch):
  """The README's snippet as it is, where its paths lead to the tiny checkpoint and a photo."""
  os.makedirs(tmp_path / 'workdirs' / 'demo')
  os.symlink(catalog['checkpoint'], tmp_path / 'workdirs' / 'demo' / 'checkpoints')
  photo((200, 30, 30), (256, 256), (40, 60, 200, 230)).save(tmp_path / 'photo.jpg')
  monkeypatch.chdir(tmp_path)
  code = readme_snippet('test: README inference snippet')
  out = io.StringIO()
  namespace = {}
  with contextlib.redirect_stdout(out):
    exec(compile(code, 'README.md', 'exec'), namespace)  # pylint: disable=exec-used
  scores, similarity = namespace['scores'], namespace['similarity']
  captions = namespace['captions']
  assert scores.shape == similarity.shape == (len(captions),)
  assert np.all((0 < scores) & (scores < 1)) and np.all(np.abs(similarity) <= 1 + 1e-5)
  assert namespace['image_embedding'].shape[0] == 1
  assert len(out.getvalue().splitlines()) == len(captions)
