"""The end-to-end runs of main.py that tests/test_train.py checks, started at the session's
start and run one at a time in a background thread (``conftest.train_runs``).

A run of main.py keeps about one core busy (compiling, mostly), and so do the in-process tests
of the modules before test_train.py: on CI's 2 cores these runs take place while those tests
run, instead of after them. A job runs its commands as the tests ran them before and keeps
what they printed; the tests assert on that and on the files the runs left, as before (where a
later run of a job changes a workdir, on a copy of it taken in between). A fixture that needs a
job waits for it (and starts it, if the selected tests did not). The reference run comes
first: every other job but the sharded check starts from it. The two-process run stays in its
test: it keeps both cores busy by itself.
"""

import concurrent.futures
import functools
import glob
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from typing import Callable, Optional

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(REPO, 'tests', 'tiny_train_config.py')
TOTAL_STEPS = 12


def env(cache_dir, devices=1, base=None):
  """The environment of a run: ``base`` (default: this process's) with a compilation cache
  and ``devices`` CPU devices."""
  environment = dict(os.environ if base is None else base)
  environment.update(
      {
          # Identical programs compile once across the runs that share a cache folder.
          'JAX_COMPILATION_CACHE_DIR': str(cache_dir),
          'JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS': '0',
          'JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES': '0',
          'XLA_FLAGS': (
              f'--xla_force_host_platform_device_count={devices} '
              '--xla_backend_optimization_level=0'
          ),
          'JAX_PLATFORMS': 'cpu',
          'PYTHONPATH': REPO,
      }
  )
  return environment


def train_cmd(workdir, data_dir, *extra):
  return [
      sys.executable,
      'main.py',
      f'--config={TINY}',
      f'--workdir={workdir}',
      f'--config.dataset.data_dir={data_dir}',
      *extra,
  ]


# ----------------------------------------------------------------------------- your own catalog

OWN_COLOURS = {
    'red': (200, 30, 30),
    'blue': (30, 40, 190),
    'green': (40, 150, 60),
    'black': (20, 20, 20),
    'yellow': (230, 200, 40),
    'purple': (120, 40, 150),
    'orange': (240, 130, 20),
    'grey': (128, 128, 128),
}
OWN_CLASSES = [
    ('TOPS', 'SHIRTS', 'cotton shirt'),
    ('TOPS', 'BLOUSES', 'silk blouse'),
    ('SHOES', 'BOOTS', 'leather boots'),
    ('SHOES', 'SNEAKERS', 'canvas sneakers'),
]


def write_own_catalog(manual):
  """64 products, one photo each (96x80, white margins): 8 colours x 4 classes x 2 sizes; the
  products of 2 colours are the validation split (16), the rest training (48)."""
  from PIL import Image  # pylint: disable=import-outside-toplevel

  from tests import prepare_test_data  # pylint: disable=import-outside-toplevel

  os.makedirs(os.path.join(manual, 'images'))
  records, index = {'train': [], 'validation': []}, 0
  for c, (colour, rgb) in enumerate(OWN_COLOURS.items()):
    split = 'validation' if c in (3, 7) else 'train'
    for category, subcategory, noun in OWN_CLASSES:
      for size, margin in (('small', 24), ('large', 8)):
        image = np.full((80, 96, 3), 255, np.uint8)
        image[margin : 80 - margin, margin : 96 - margin] = rgb
        name = f'images/{index}.png'
        Image.fromarray(image).save(os.path.join(manual, name))
        records[split].append(
            prepare_test_data.catalog_record(
                index,
                name,
                category=category,
                subcategory=subcategory,
                caption=f'{colour.capitalize()} {size} {noun}',
            )
        )
        index += 1
  for split, rows in records.items():
    prepare_test_data.write_jsonl(os.path.join(manual, f'{split}.jsonl'), rows)
  return records


def readme_commands(section: str) -> list[str]:
  """The commands of the first bash block under ``## {section}`` in README.md."""
  with open(os.path.join(REPO, 'README.md')) as f:
    text = f.read()
  start = text.index(f'## {section}\n')
  block = text[text.index('```bash\n', start) + len('```bash\n') :]
  block = block[: block.index('```')].replace('\\\n', ' ')
  return [line.strip() for line in block.splitlines() if line.strip().startswith('python')]


# ----------------------------------------------------------------------------- the runs

SIGNALS = {'kill9': signal.SIGKILL, 'sigterm': signal.SIGTERM, 'sigint': signal.SIGINT}


def wait_for_checkpoint(workdir, proc, timeout=600):
  """Waits until a first checkpoint step directory exists; returns its step."""
  ckpt = os.path.join(workdir, 'checkpoints')
  start = time.time()
  while time.time() - start < timeout:
    if os.path.isdir(ckpt):
      done = [int(d) for d in os.listdir(ckpt) if d.isdigit()]
      if done:
        return min(done)
    if proc.poll() is not None:
      raise AssertionError(f'run ended before its first checkpoint: {proc.stderr.read()[-3000:]}')
    time.sleep(0.01)
  raise AssertionError('no checkpoint appeared')


def run_files(workdir):
  """The bytes of every file of a workdir's checkpoints/ folder and its config.json."""
  files = {}
  for path in sorted(glob.glob(os.path.join(workdir, 'checkpoints', '**'), recursive=True)):
    if os.path.isfile(path):
      with open(path, 'rb') as f:
        files[os.path.relpath(path, workdir)] = f.read()
  with open(os.path.join(workdir, 'config.json'), 'rb') as f:
    files['config.json'] = f.read()
  return files


class Runs:
  """The runs of one test session, in ``root``: a single worker runs the jobs in the order they
  were started, so that at most one of them competes with the tests for the cores."""

  def __init__(self, root):
    self.root = root
    self.dirs = dict(root=root, data=root / 'data', cache=root / 'xla_cache')
    # The environment of the session's start, not of a test that changes os.environ while a
    # job starts in the background.
    self._base_env = dict(os.environ)
    # In the order tests/test_train.py needs them.
    self.jobs: dict[str, Callable[[], Optional[dict]]] = {
        'reference': self._reference,
        **{f'interrupted_{how}': functools.partial(self._interrupted, how) for how in SIGNALS},
        'other_model': self._other_model,
        'damaged': self._damaged,
        'sharded_check': self._sharded_check,
        'own_catalog': self._own_catalog,
    }
    self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix='train_runs')
    self._futures: dict[str, concurrent.futures.Future] = {}
    self._lock = threading.Lock()
    self._process: Optional[subprocess.Popen] = None
    self._closed = False

  def start(self, name: str) -> None:
    """Queues job ``name`` (after the reference run, which the others but one need) unless
    it is queued already."""
    if name != 'sharded_check' and name != 'reference':
      self.start('reference')
    if name not in self._futures:
      self._futures[name] = self._executor.submit(self.jobs[name])

  def result(self, name: str) -> Optional[dict]:
    """What job ``name`` printed (None: the reference run it needs failed, which the reference
    fixture reports); waits for it (starting it first, if it was not)."""
    self.start(name)
    return self._futures[name].result()

  def close(self) -> None:
    """Stops the job running now (its process group) and drops the queued ones."""
    with self._lock:
      self._closed = True
      self._kill()
    self._executor.shutdown(wait=True, cancel_futures=True)

  def _kill(self) -> None:
    if self._process is not None and self._process.poll() is None:
      try:
        os.killpg(self._process.pid, signal.SIGKILL)
      except ProcessLookupError:  # it ended meanwhile
        pass

  def _popen(self, argv, environment) -> subprocess.Popen:
    """``argv`` in the repository, in a process group of its own (killed by ``close``)."""
    with self._lock:
      if self._closed:
        raise RuntimeError('the test session ended')
      self._process = subprocess.Popen(
          argv,
          cwd=REPO,
          env=environment,
          stdout=subprocess.PIPE,
          stderr=subprocess.PIPE,
          text=True,
          start_new_session=True,
      )
      return self._process

  def _run(self, argv, environment, timeout) -> dict:
    process = self._popen(argv, environment)
    try:
      stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
      with self._lock:
        self._kill()
      stdout, stderr = process.communicate()
      stderr += f'\n(killed after {timeout} s)'
    return dict(argv=argv, returncode=process.returncode, stdout=stdout, stderr=stderr)

  def _reference_workdir(self) -> Optional[str]:
    """The reference run's workdir; None if it failed."""
    reference = self._futures['reference'].result()
    return reference['workdir'] if reference['returncode'] == 0 else None

  def _reference(self) -> dict:
    """An uninterrupted tiny run (it also prepares the tiny dataset); like the demo, it ends
    with the retrieval table and the picture."""
    workdir = self.root / 'reference'
    result = self._run(
        train_cmd(workdir, self.dirs['data'], '--config.eval_after_training=True'),
        env(self.dirs['cache'], base=self._base_env),
        timeout=900,
    )
    return dict(result, workdir=workdir)

  def _interrupted(self, how: str) -> Optional[dict]:
    """test_interrupted_run_resumes_to_same_parameters[how]'s runs. The first, slowed down a
    little (tests/slow_main.py) so that it is interrupted mid-run, not at its end, with the
    evaluation after training on (a preempted run must skip it), gets ``SIGNALS[how]`` at its
    first checkpoint; ``stopped``: a copy of the workdir it left. Then (but after Ctrl-C, whose
    stop is SIGTERM's) the same workdir is resumed to its end: ``resumed``."""
    if self._reference_workdir() is None:
      return None
    workdir = self.root / how
    command = train_cmd(workdir, self.dirs['data'], '--config.eval_after_training=True')
    environment = env(self.dirs['cache'], base=self._base_env)
    process = self._popen(
        [sys.executable, '-m', 'tests.slow_main', '0.3', *command[2:]], environment
    )
    try:
      wait_for_checkpoint(workdir, process)
      process.send_signal(SIGNALS[how])
      stdout, stderr = process.communicate(timeout=300)
    finally:
      with self._lock:
        self._kill()
    first = dict(returncode=process.returncode, stdout=stdout, stderr=stderr)
    if how == 'sigint':
      return dict(workdir=workdir, first=first, stopped=workdir, resumed=None)
    stopped = self.root / f'{how}_stopped'
    shutil.copytree(workdir, stopped)
    resumed = self._run(train_cmd(workdir, self.dirs['data']), environment, timeout=900)
    return dict(workdir=workdir, first=first, stopped=stopped, resumed=resumed)

  def _other_model(self) -> Optional[dict]:
    """A copy of the reference run resumed with another model: ``before``, the bytes of its
    run files before."""
    reference_workdir = self._reference_workdir()
    if reference_workdir is None:
      return None
    workdir = self.root / 'other_model'
    shutil.copytree(reference_workdir, workdir)
    before = run_files(workdir)
    result = self._run(
        train_cmd(workdir, self.dirs['data'], '--config.model.text_width=48'),
        env(self.dirs['cache'], base=self._base_env),
        timeout=600,
    )
    return dict(result, workdir=workdir, before=before)

  def _damaged(self) -> Optional[dict]:
    """A copy of the reference run whose last step is damaged (the largest data file
    truncated), with a stale temporary folder, resumed."""
    reference_workdir = self._reference_workdir()
    if reference_workdir is None:
      return None
    workdir = self.root / 'damaged'
    shutil.copytree(reference_workdir, workdir)
    checkpoints = os.path.join(workdir, 'checkpoints')
    last = glob.glob(
        os.path.join(checkpoints, str(TOTAL_STEPS), 'state', '**', '*'), recursive=True
    )
    largest = max((p for p in last if os.path.isfile(p)), key=os.path.getsize)
    with open(largest, 'r+b') as f:
      f.truncate(os.path.getsize(largest) // 2)
    os.makedirs(os.path.join(checkpoints, f'{TOTAL_STEPS + 1}.orbax-checkpoint-tmp-1', 'state'))
    result = self._run(
        train_cmd(workdir, self.dirs['data']),
        env(self.dirs['cache'], base=self._base_env),
        timeout=900,
    )
    return dict(result, workdir=workdir)

  def _sharded_check(self) -> dict:
    return self._run(
        [sys.executable, '-m', 'tests.sharded_check'],
        # A cache of its own (its programs are its own): no file of the shared one is written
        # while another run may read it.
        env(self.root / 'xla_cache_sharded', devices=8, base=self._base_env),
        timeout=900,
    )

  def _own_catalog(self) -> Optional[dict]:
    """README "Your own catalog", as written: prepare with the checkpoint's tokenizer,
    fine-tune from it (the class heads fresh), evaluate without dataset flags, search; paths
    swapped for temporary ones, the demo config for the tiny one the reference run trained, a
    few steps. Stops at the first command that fails."""
    import shlex  # pylint: disable=import-outside-toplevel

    reference_workdir = self._reference_workdir()
    if reference_workdir is None:
      return None
    root = self.root / 'own_catalog'
    manual = str(root / 'my_catalog')
    records = write_own_catalog(manual)
    swaps = {
        'workdirs/demo/checkpoints': os.path.join(reference_workdir, 'checkpoints'),
        'workdirs/my_catalog': str(root / 'work'),
        '/path/to/my_catalog': manual,
        './data': str(root / 'data'),
        'configs/demo.py': TINY,
    }
    commands = readme_commands('Your own catalog')
    results = []
    environment = env(root / 'xla_cache', base=self._base_env)  # its programs are its own
    for index, command in enumerate(commands):
      for before, after in swaps.items():
        command = command.replace(before, after)
      argv = shlex.split(command)
      argv[0] = sys.executable
      if index == 1:  # training: a few steps
        argv += ['--config.total_steps=4', '--config.checkpoint_every=2', '--config.log_every=2']
      results.append(dict(self._run(argv, environment, timeout=900), command=command))
      if results[-1]['returncode'] != 0:
        break
    return dict(root=root, records=records, commands=commands, results=results)
