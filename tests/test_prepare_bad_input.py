"""Bad input: every case is named with its file/record and reason, skipped or fatal.

By default bad records are skipped and counted (summary and metadata);
``--strict`` turns the first one into exit status 1 with its message. Fatal
problems always exit 1. A failed preparation leaves nothing that passes for
prepared, and a re-run succeeds.
"""

import os
import subprocess
import sys

import pytest

import prepare_test_data as data
from input_pipeline import prepare
from input_pipeline.errors import NotPreparedError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OPTIONS = ['--vocab_size=40', '--text_length=16', '--num_workers=1']


def good_records(split: str, count: int, start: int = 0) -> list[dict]:
  return [
      data.catalog_record(
          start + i, 'img/good.png', product=start + i, caption=f'{split} shirt {start + i}'
      )
      for i in range(count)
  ]


def make_catalog(root, train_extra=(), validation_extra=(), fmt='jsonl', class_file=None):
  """A manual dir: 3 good train records, 2 good validation ones, plus the extra ones."""
  manual = root / 'manual'
  images = data.images_of_every_mode()
  png = images['gray.png']
  data.write_images(
      str(manual / 'img'),
      {
          'good.png': png,
          'corrupt.jpg': b'\xff\xd8\xff\xe0 this is not really a JPEG',
          'truncated.png': png[: len(png) // 2],
      },
  )
  write = data.write_jsonl if fmt == 'jsonl' else data.write_csv
  write(str(manual / f'train.{fmt}'), good_records('train', 3) + list(train_extra))
  write(
      str(manual / f'validation.{fmt}'),
      good_records('validation', 2, start=50) + list(validation_extra),
  )
  if class_file is not None:
    with open(manual / 'classes.json', 'w') as f:
      f.write(class_file)
  return str(manual)


def run_cli(capsys, *args):
  code = prepare.main(list(args))
  captured = capsys.readouterr()
  assert 'Traceback' not in captured.err
  return code, captured.err


def assert_not_prepared(data_dir, name='catalog'):
  with pytest.raises(NotPreparedError, match='not .*prepared'):
    prepare.load_prepared(name, data_dir)
  root = os.path.join(data_dir, name)
  leftovers = os.listdir(root) if os.path.isdir(root) else []
  assert not [e for e in leftovers if e.startswith(('incomplete.', '.tokenizer'))], leftovers


# Each bad record, where it goes, the reason and the words of its message ({manual}: the
# manual dir).
BAD_RECORDS = {
    'corrupt_image': (
        'train',
        data.catalog_record(7, 'img/corrupt.jpg'),
        "train.jsonl line 4 (id 'item7'): {manual}/img/corrupt.jpg: cannot decode image",
    ),
    'truncated_image': (
        'validation',
        data.catalog_record(8, 'img/truncated.png'),
        "validation.jsonl line 3 (id 'item8'): {manual}/img/truncated.png: cannot decode image",
    ),
    'missing_image': (
        'train',
        data.catalog_record(9, 'img/nowhere.png'),
        "train.jsonl line 4 (id 'item9'): image file not found",
    ),
    'empty_caption': (
        'train',
        data.catalog_record(10, 'img/good.png', caption=' \t '),
        "train.jsonl line 4 (id 'item10'): the caption is empty",
    ),
    'not_utf8': (
        'train',
        b'{"id": "item11", "caption": "caf\xe9"}',
        'train.jsonl line 4: the line is not valid UTF-8',
    ),
    'duplicate_id': (
        'validation',
        data.catalog_record(0, 'img/good.png'),
        "validation.jsonl line 3 (id 'item0'): id 'item0' was already used by "
        'train.jsonl line 1',
    ),
    'missing_field': (
        'train',
        {k: v for k, v in data.catalog_record(12, 'img/good.png').items() if k != 'subcategory'},
        "train.jsonl line 4 (id 'item12'): the field 'subcategory' is missing",
    ),
    'unseen_category': (
        'validation',
        data.catalog_record(13, 'img/good.png', category='HATS'),
        "validation.jsonl line 3 (id 'item13'): category 'HATS' is not in the "
        'categories of the train split',
    ),
    'invalid_json': ('train', '{"id": "item14", ', 'train.jsonl line 4: not valid JSON'),
}
REASONS = {
    'truncated_image': 'corrupt_image',
    'unseen_category': 'unknown_category',
    'invalid_json': 'invalid_record',
}


@pytest.mark.parametrize('case', sorted(BAD_RECORDS))
def test_strict_stops_at_the_bad_record_with_its_message(case, tmp_path, capsys):
  split, record, message = BAD_RECORDS[case]
  manual = make_catalog(tmp_path, **{f'{split}_extra': [record]})
  data_dir = str(tmp_path / 'data')
  code, err = run_cli(
      capsys, 'catalog', f'--data_dir={data_dir}', f'--manual_dir={manual}', '--strict', *OPTIONS
  )
  assert code == 1
  assert message.format(manual=manual) in err, err
  assert f'[{REASONS.get(case, case)}]' in err
  assert_not_prepared(data_dir)


@pytest.fixture(scope='module')
def lenient_build(tmp_path_factory):
  """Every bad record at once, prepared without --strict: all skipped and counted."""
  root = tmp_path_factory.mktemp('lenient')
  train = [r for split, r, _ in BAD_RECORDS.values() if split == 'train']
  validation = [r for split, r, _ in BAD_RECORDS.values() if split == 'validation']
  manual = make_catalog(root, train_extra=train, validation_extra=validation)
  data_dir = str(root / 'data')
  summary = prepare.prepare_dataset(
      'catalog', data_dir, manual_dir=manual, vocab_size=40, text_length=16, num_workers=1
  )
  return data_dir, summary


def test_bad_records_are_skipped_and_counted(lenient_build):
  data_dir, summary = lenient_build
  expected = {
      'train': {
          'corrupt_image': 1,
          'empty_caption': 1,
          'invalid_record': 1,
          'missing_field': 1,
          'missing_image': 1,
          'not_utf8': 1,
      },
      'validation': {'corrupt_image': 1, 'duplicate_id': 1, 'unknown_category': 1},
  }
  assert summary.skipped == expected
  assert summary.num_examples == {'train': 3, 'validation': 2}
  text = summary.format()
  assert 'skipped records: 9' in text
  manual = os.path.join(os.path.dirname(data_dir), 'manual')
  for _, record, message in BAD_RECORDS.values():  # Every skipped record is named, and why.
    assert message.format(manual=manual).split(': ', 1)[1] in text
    if isinstance(record, dict):
      assert f"(id '{record['id']}')" in text
  metadata = prepare.load_prepared('catalog', data_dir).metadata
  assert metadata['skipped'] == expected
  assert len(metadata['skipped_examples']) == 9


def test_two_file_catalog_validation_subcategory_unseen_in_train_is_reported(tmp_path):
  # The user chose the split: the record is skipped (not moved), and said so.
  manual = make_catalog(
      tmp_path,
      validation_extra=[data.catalog_record(31, 'img/good.png', product=31, subcategory='SOCKS')],
  )
  summary = prepare.prepare_dataset(
      'catalog',
      str(tmp_path / 'data'),
      manual_dir=manual,
      vocab_size=40,
      text_length=16,
      num_workers=1,
  )
  assert summary.skipped == {'validation': {'unknown_category': 1}}
  assert summary.num_examples == {'train': 3, 'validation': 2}
  text = summary.format()
  assert 'skipped records: 1' in text and '  validation: unknown_category 1' in text
  assert (
      "[validation] validation.jsonl line 3 (id 'item31'): subcategory 'SOCKS' is not in "
      'the categories of the train split [unknown_category]'
  ) in text


def test_csv_bad_rows(tmp_path, capsys):
  rows = [
      b'"item20","prod20","img/good.png","caf\xe9 latin-1","TOPS","SHIRTS","front"',
      b'"item21","prod21","img/good.png","too","many","values","x","y"',
  ]
  manual = make_catalog(tmp_path, train_extra=rows, fmt='csv')
  summary = prepare.prepare_dataset(
      'catalog',
      str(tmp_path / 'data'),
      manual_dir=manual,
      vocab_size=40,
      text_length=16,
      num_workers=1,
  )
  assert summary.skipped == {'train': {'invalid_record': 1, 'not_utf8': 1}}
  assert 'train.csv line 5: the row is not valid UTF-8' in summary.format()
  code, err = run_cli(
      capsys,
      'catalog',
      f'--data_dir={tmp_path / "strict"}',
      f'--manual_dir={manual}',
      '--strict',
      *OPTIONS,
  )
  assert code == 1 and 'train.csv line 5: the row is not valid UTF-8 [not_utf8]' in err


def test_category_outside_the_class_file(tmp_path, capsys):
  manual = make_catalog(
      tmp_path,
      train_extra=[data.catalog_record(30, 'img/good.png', subcategory='SOCKS')],
      class_file='{"categories": ["TOPS"], "subcategories": ["SHIRTS"]}',
  )
  code, err = run_cli(
      capsys,
      'catalog',
      f'--data_dir={tmp_path / "data"}',
      f'--manual_dir={manual}',
      '--class_file=classes.json',
      '--strict',
      *OPTIONS,
  )
  assert code == 1
  assert (
      "train.jsonl line 4 (id 'item30'): subcategory 'SOCKS' is not in "
      f'{manual}/classes.json [unknown_category]'
  ) in err


def test_fashion_gen_bad_row_is_named(tmp_path, capsys):
  manual = tmp_path / 'manual'
  write_h5_pair(str(manual))
  rows = [data.fashion_gen_row(1, 'Shirt'), data.fashion_gen_row(1, ' ', description='')]
  data.write_fashion_gen_h5(str(manual / 'fashiongen_256_256_train.h5'), rows)
  code, err = run_cli(
      capsys,
      'fashion_gen',
      f'--data_dir={tmp_path / "data"}',
      f'--manual_dir={manual}',
      '--strict',
      *OPTIONS,
  )
  assert code == 1
  assert (
      "fashiongen_256_256_train.h5 row 1 (id '1_1'): the caption is empty or only "
      'whitespace [empty_caption]'
  ) in err


# -- fatal problems ---------------------------------------------------------------


def write_h5_pair(manual, drop=()):
  os.makedirs(manual, exist_ok=True)
  rows = [data.fashion_gen_row(1, 'Shirt'), data.fashion_gen_row(2, 'Boots', 'SHOES', 'BOOTS')]
  data.write_fashion_gen_h5(os.path.join(manual, 'fashiongen_256_256_train.h5'), rows, drop)
  data.write_fashion_gen_h5(os.path.join(manual, 'fashiongen_256_256_validation.h5'), rows)


FATAL = {
    'empty_catalog': (
        'catalog',
        lambda m: (
            os.makedirs(m / 'img'),
            data.write_jsonl(str(m / 'train.jsonl'), []),
            data.write_jsonl(str(m / 'validation.jsonl'), good_records('validation', 1)),
        ),
        'train.jsonl: the catalog is empty (no records)',
    ),
    'no_catalog_file': (
        'catalog',
        lambda m: os.makedirs(m),
        'expected train.jsonl|csv and validation.jsonl|csv, or a single '
        'catalog.jsonl|csv; found: nothing',
    ),
    'h5_without_datasets': (
        'fashion_gen',
        lambda m: write_h5_pair(str(m), drop=('input_name', 'input_image')),
        'fashiongen_256_256_train.h5: missing dataset(s) input_image, ' 'input_name',
    ),
    'missing_h5_file': ('fashion_gen', lambda m: os.makedirs(m), 'fashion_gen: missing file(s): '),
    'not_an_h5_file': (
        'fashion_gen',
        lambda m: (
            write_h5_pair(str(m)),
            open(m / 'fashiongen_256_256_validation.h5', 'wb').write(b'garbage'),
        ),
        'fashiongen_256_256_validation.h5: not a readable HDF5 file',
    ),
}


@pytest.mark.parametrize('case', sorted(FATAL))
def test_fatal_problems_exit_non_zero_without_strict(case, tmp_path, capsys):
  name, make, message = FATAL[case]
  manual = tmp_path / 'manual'
  make(manual)
  data_dir = str(tmp_path / 'data')
  code, err = run_cli(capsys, name, f'--data_dir={data_dir}', f'--manual_dir={manual}', *OPTIONS)
  assert code == 1
  assert err.startswith(f'prepare {name}: error: ') and message in err, err
  assert_not_prepared(data_dir, name)


def test_bad_options_are_fatal(tmp_path, capsys):
  manual = make_catalog(tmp_path)
  for args, message in [
      (['--tokenizer=wordpiece'], 'tokenizer=wordpiece needs vocab_file'),
      (['--tokenizer=wordpiece', f'--vocab_file={tmp_path}/none.txt'], 'none.txt: cannot read'),
      (['--num_products=5'], 'invalid option for catalog: num_products'),
      (['--caption_fields=title'], "caption_fields='title', expected one of ('caption',)"),
  ]:
    code, err = run_cli(
        capsys,
        'catalog',
        f'--data_dir={tmp_path / "data"}',
        f'--manual_dir={manual}',
        *args,
        *OPTIONS,
    )
    assert code == 1 and message in err, (args, err)


def test_command_line_exit_status_and_message(tmp_path):
  result = subprocess.run(
      [
          sys.executable,
          '-m',
          'input_pipeline.prepare',
          'catalog',
          f'--data_dir={tmp_path / "data"}',
          f'--manual_dir={tmp_path / "nowhere"}',
      ],
      cwd=REPO,
      capture_output=True,
      text=True,
      timeout=120,
  )
  assert result.returncode == 1
  assert 'prepare catalog: error: catalog needs --manual_dir' in result.stderr
  assert 'Traceback' not in result.stderr


# -- interrupted preparations ---------------------------------------------------------


def test_failure_midway_leaves_nothing_and_a_rerun_succeeds(tmp_path):
  # The train split is written, then validation meets a corrupt image (strict).
  manual = make_catalog(tmp_path, validation_extra=[data.catalog_record(40, 'img/corrupt.jpg')])
  data_dir = str(tmp_path / 'data')
  with pytest.raises(prepare.PrepareError, match=r'item40.*\[corrupt_image\]'):
    prepare.prepare_dataset(
        'catalog',
        data_dir,
        manual_dir=manual,
        strict=True,
        vocab_size=40,
        text_length=16,
        num_workers=1,
    )
  assert_not_prepared(data_dir)
  # Only the lock file (mvlt_jax.locking: it stays; the lock is the kernel's flock on it).
  assert os.listdir(os.path.join(data_dir, 'catalog')) == ['.lock']
  with open(os.path.join(manual, 'img', 'corrupt.jpg'), 'wb') as f:  # Repair the image.
    f.write(data.images_of_every_mode()['rgb.jpg'])
  summary = prepare.prepare_dataset(
      'catalog',
      data_dir,
      manual_dir=manual,
      strict=True,
      vocab_size=40,
      text_length=16,
      num_workers=1,
  )
  assert summary.num_examples == {'train': 3, 'validation': 3}
  prepare.load_prepared('catalog', data_dir)


def test_crash_before_the_tokenizer_is_installed(tmp_path, monkeypatch):
  manual = make_catalog(tmp_path)
  data_dir = str(tmp_path / 'data')
  move = prepare._move_into_place

  def crash_at_the_tokenizer(staged, final):
    if os.path.basename(final) == prepare.TOKENIZER_DIR:
      raise KeyboardInterrupt('killed')
    move(staged, final)

  monkeypatch.setattr(prepare, '_move_into_place', crash_at_the_tokenizer)
  with pytest.raises(KeyboardInterrupt):
    prepare.prepare_dataset(
        'catalog', data_dir, manual_dir=manual, vocab_size=40, text_length=16, num_workers=1
    )
  # The TFDS folder is complete, but without its tokenizer it is not prepared.
  assert os.path.isdir(os.path.join(data_dir, 'catalog', '1.0.0'))
  assert_not_prepared(data_dir)
  monkeypatch.undo()
  summary = prepare.prepare_dataset(
      'catalog', data_dir, manual_dir=manual, vocab_size=40, text_length=16, num_workers=1
  )
  assert not summary.already_prepared and summary.num_examples == {'train': 3, 'validation': 2}
  prepare.load_prepared('catalog', data_dir)
