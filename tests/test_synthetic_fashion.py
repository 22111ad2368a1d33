"""Tests of the embedded synthetic fashion catalog (input_pipeline/synthetic_render/)."""

from __future__ import annotations

import hashlib
import itertools
import re
import subprocess
import sys

import numpy as np
import pytest

from input_pipeline import synthetic_render as sf
from input_pipeline.synthetic_render import contact_sheets

SIZE = 64  # small images keep the tests fast
NUM_PRODUCTS = 24
SEED = 3
RECORD_KEYS = {
    'id',
    'product_id',
    'image',
    'caption',
    'title',
    'description',
    'category',
    'subcategory',
    'pose',
    'attributes',
}


@pytest.fixture(scope='module')
def records() -> list[dict]:
  return list(sf.generate_catalog(NUM_PRODUCTS, SEED, image_size=SIZE, max_views=4))


def _digest(records_: list[dict]) -> str:
  """A hash of everything in the records (images as bytes)."""
  h = hashlib.sha256()
  for r in records_:
    h.update(r['image'].tobytes())
    h.update(repr(sorted((k, v) for k, v in r.items() if k != 'image')).encode())
  return h.hexdigest()


def _product(subcategory: str, **attributes) -> sf.SyntheticProduct:
  return sf.SyntheticProduct('test-product', 'X', subcategory, attributes, '', '')


def _non_white(image: np.ndarray) -> np.ndarray:
  return (image < 250).any(axis=-1)


# --- the catalog ------------------------------------------------------------


def test_catalog_has_enough_categories_colours_and_patterns():
  assert len(sf.main_categories()) >= 6
  assert len(sf.sub_categories()) >= 20
  assert len(sf.COLOURS) >= 12
  assert len(sf.PATTERNS) >= 5 and sf.SOLID in sf.PATTERNS
  names = sf.main_categories() + sf.sub_categories()
  assert len(set(sf.sub_categories())) == len(sf.sub_categories())
  assert all(name == name.upper() for name in names)
  # Class lists are in a fixed order: the catalog's.
  assert sf.sub_categories() == [s.name for m in sf.CATALOG for s in m.subcategories]


def test_every_subcategory_has_attributes_with_several_values():
  for main in sf.CATALOG:
    for sub in main.subcategories:
      assert sub.attributes, sub.name
      combos = np.prod([len(values) for _, values in sub.attributes])
      # Colour x pattern x attributes: items of a sub-category are mostly distinct.
      assert combos >= 3, sub.name


# --- records ----------------------------------------------------------------


def test_records_have_the_documented_fields(records):
  assert len({r['product_id'] for r in records}) == NUM_PRODUCTS
  sub_to_main = {s.name: m.name for m in sf.CATALOG for s in m.subcategories}
  for r in records:
    assert set(r) == RECORD_KEYS
    assert r['id'] == f"{r['product_id']}_{r['pose']}"
    assert r['image'].dtype == np.uint8 and r['image'].shape == (SIZE, SIZE, 3)
    assert r['caption'] == r['title'] + ' ' + r['description']
    assert r['title'] and r['description']
    assert sub_to_main[r['subcategory']] == r['category']


def test_background_is_white_and_the_garment_fills_the_frame(records):
  for r in records:
    image = r['image']
    border = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])
    assert (border == 255).all(), r['id']
    if r['pose'] == 0:
      rows, cols = np.nonzero(_non_white(image))
      extent = max(rows.max() - rows.min() + 1, cols.max() - cols.min() + 1)
      assert extent >= 0.8 * SIZE, r['id']


def test_titles_name_the_colour_and_every_attribute_value(records):
  for r in records:
    title = r['title'].lower()
    sub = next(s for m in sf.CATALOG for s in m.subcategories if s.name == r['subcategory'])
    assert set(r['attributes']) == (
        {'colour', 'pattern'}
        | {k for k, _ in sub.attributes}
        | ({'pattern_colour'} if r['attributes']['pattern'] != sf.SOLID else set())
    )
    for value in r['attributes'].values():
      assert re.search(rf'(^|\s){re.escape(value.lower())}(\s|$)', title), (value, title)
    assert r['title'][0].isupper() and r['title'][1:] != r['title'][1:].upper()


def test_descriptions_are_one_to_three_sentences_in_varied_wordings():
  products = [sf.sample_product(i, SEED) for i in range(300)]
  openings = set()
  for p in products:
    sentences = re.findall(r'[^.]+\.', p.description)
    assert 1 <= len(sentences) <= 3, p.description
    openings.add(p.description.split()[0])
    # The description names the colour again (possibly with a synonym).
    colour_words = sf.COLOUR_SYNONYMS[p.attributes['colour']]
    assert any(w in p.description.lower() for w in colour_words), p.description
  assert len(openings) >= 10
  descriptions = ' '.join(p.description for p in products).lower()
  for synonym in ('long-sleeved', 'full-length sleeves', 'navy blue', 'gray'):
    assert synonym in descriptions


# --- determinism ------------------------------------------------------------


def test_same_seed_gives_identical_records(records):
  again = list(sf.generate_catalog(NUM_PRODUCTS, SEED, image_size=SIZE, max_views=4))
  assert _digest(again) == _digest(records)


def test_same_seed_gives_identical_records_in_another_process(records):
  code = (
      'import hashlib, sys; sys.path.insert(0, "."); '
      'from tests.test_synthetic_fashion import _digest; '
      'from input_pipeline import synthetic_render as sf; '
      f'print(_digest(list(sf.generate_catalog({NUM_PRODUCTS}, {SEED}, image_size={SIZE}))))'
  )
  out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True)
  assert out.stdout.strip() == _digest(records)


def test_different_seeds_give_different_catalogs(records):
  other = list(sf.generate_catalog(NUM_PRODUCTS, SEED + 1, image_size=SIZE, max_views=4))
  assert [r['title'] for r in other] != [r['title'] for r in records]
  assert not {r['product_id'] for r in other} & {r['product_id'] for r in records}


def test_records_can_be_made_in_any_order(records):
  for r in records[::7]:
    index = int(r['product_id'].rsplit('-', 1)[1])
    product = sf.sample_product(index, SEED)
    assert product.title == r['title'] and product.attributes == r['attributes']
    np.testing.assert_array_equal(sf.render_view(product, r['pose'], SEED, SIZE), r['image'])


# --- views ------------------------------------------------------------------


def test_views_share_the_product_and_differ_in_pixels(records):
  by_product = {}
  for r in records:
    by_product.setdefault(r['product_id'], []).append(r)
  counts = [len(v) for v in by_product.values()]
  assert min(counts) >= 1 and max(counts) <= 4 and len(set(counts)) > 1
  for views in by_product.values():
    assert [v['pose'] for v in views] == list(range(len(views)))
    assert len({(v['title'], v['subcategory']) for v in views}) == 1
    for a, b in itertools.combinations(views, 2):
      assert not np.array_equal(a['image'], b['image']), (a['id'], b['id'])


def test_max_views_bounds_the_view_count():
  records_ = list(sf.generate_catalog(10, SEED, image_size=32, max_views=1))
  assert [r['pose'] for r in records_] == [0] * 10


# --- pixels depend on the attributes, and only on them ----------------------


def test_items_of_a_subcategory_differ_only_in_attributes():
  """Same attributes: identical canonical views; any other attribute value: different pixels."""
  for sub_name in sf.sub_categories():
    sub = next(s for m in sf.CATALOG for s in m.subcategories if s.name == sub_name)
    base = {'colour': 'navy', 'pattern': sf.SOLID}
    base.update({kind: values[0] for kind, values in sub.attributes})
    image = sf.render_view(_product(sub_name, **base), 0, 0, SIZE)
    twin = sf.SyntheticProduct('another-id', 'X', sub_name, dict(base), 'other', 'other')
    np.testing.assert_array_equal(sf.render_view(twin, 0, 0, SIZE), image)
    variants = [dict(base, colour='red'), dict(base, pattern='polka dots', pattern_colour='white')]
    variants += [
        dict(base, **{kind: value}) for kind, values in sub.attributes for value in values[1:]
    ]
    for attributes in variants:
      other = sf.render_view(_product(sub_name, **attributes), 0, 0, SIZE)
      changed = (other != image).any(axis=-1).mean()
      assert changed > 0.005, (sub_name, attributes)


def test_sleeve_length_is_visible_in_the_sleeve_region():
  long_sleeve = sf.render_view(
      _product(
          'T-SHIRTS', colour='red', pattern=sf.SOLID, sleeve='long-sleeve', neckline='crew-neck'
      ),
      0,
      0,
      SIZE,
  )
  sleeveless = sf.render_view(
      _product(
          'T-SHIRTS', colour='red', pattern=sf.SOLID, sleeve='sleeveless', neckline='crew-neck'
      ),
      0,
      0,
      SIZE,
  )
  outer = np.r_[0 : SIZE // 6, SIZE - SIZE // 6 : SIZE]  # left and right sixths: where sleeves hang
  lower = slice(SIZE // 2, SIZE)
  assert _non_white(long_sleeve[lower][:, outer]).mean() > 0.1
  assert _non_white(sleeveless[lower][:, outer]).mean() == 0.0


def test_colour_and_pattern_colour_are_visible():
  def mean_fabric_colour(**attributes):
    image = sf.render_view(
        _product('TOTE BAGS', handle='short-handle', pocket='pocketless', **attributes), 0, 0, SIZE
    ).astype(np.float64)
    return image[SIZE // 2 - 8 : SIZE // 2 + 8, SIZE // 2 - 8 : SIZE // 2 + 8].reshape(-1, 3)

  red = mean_fabric_colour(colour='red', pattern=sf.SOLID)
  np.testing.assert_allclose(red.mean(axis=0), sf.COLOURS['red'], atol=3)
  striped = mean_fabric_colour(colour='red', pattern='vertical stripes', pattern_colour='white')
  distances = np.linalg.norm(
      striped[:, None] - np.array([sf.COLOURS['red'], sf.COLOURS['white']])[None], axis=-1
  )
  nearest = distances.argmin(axis=1)
  assert 0.3 < nearest.mean() < 0.7  # both colours cover a good share of the fabric


# --- errors and the debug entry ---------------------------------------------


@pytest.mark.parametrize(
    'call',
    [
        lambda: sf.sample_product(-1, 0),
        lambda: sf.sample_product(0, 2**32),
        lambda: sf.sample_product(1.5, 0),
        lambda: list(sf.generate_catalog(2, 0, image_size=8)),
        lambda: list(sf.generate_catalog(2, 0, max_views=0)),
        lambda: sf.render_view(_product('SOCKS', colour='red', pattern=sf.SOLID), 0, 0),
        lambda: sf.render_view(
            _product(
                'T-SHIRTS', colour='red', pattern=sf.SOLID, sleeve='puffed', neckline='crew-neck'
            ),
            0,
            0,
        ),
        lambda: sf.render_view(
            _product(
                'T-SHIRTS',
                colour='red',
                pattern='checks',
                sleeve='sleeveless',
                neckline='crew-neck',
            ),
            0,
            0,
        ),
    ],
)
def test_bad_input_raises_a_clear_error(call):
  with pytest.raises(sf.SyntheticCatalogError):
    call()


def test_bad_attribute_error_names_the_product():
  product = sf.SyntheticProduct(
      'p42',
      'TOPS',
      'T-SHIRTS',
      {'colour': 'red', 'pattern': sf.SOLID, 'sleeve': 'puffed', 'neckline': 'crew-neck'},
      '',
      '',
  )
  with pytest.raises(sf.SyntheticCatalogError, match=r'p42.*sleeve.*puffed'):
    sf.render_view(product, 0, 0)


def test_debug_entry_writes_contact_sheets(tmp_path, capsys):
  contact_sheets.main([f'--out={tmp_path}', '--num_products=4', '--image_size=48', '--columns=2'])
  from PIL import Image

  sheet = Image.open(tmp_path / 'contact_sheet.png')
  assert sheet.width == 2 * (48 + 8) and sheet.height > 2 * 48
  assert (tmp_path / 'views_sheet.png').exists()
  assert 'ms per 48px image' in capsys.readouterr().out
