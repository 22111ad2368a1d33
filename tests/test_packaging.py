"""Installable (#18): pyproject.toml declares the project mvlt-jax (Python >= 3.11, the
dependencies of requirements.txt) and its packages mvlt_jax, input_pipeline and configs, and
``pip install -e .`` makes them importable from anywhere.

The install test installs a copy of the project's packaging inputs into a throwaway virtual
environment that sees this one's packages (a .pth file), with ``--no-deps
--no-build-isolation --no-index``: a few seconds, no network, nothing written to the
repository.
"""

import os
import shutil
import site
import subprocess
import sys
import sysconfig
import tomllib
import venv

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ('mvlt_jax', 'input_pipeline', 'configs')


def read_pyproject():
  with open(os.path.join(REPO, 'pyproject.toml'), 'rb') as f:
    return tomllib.load(f)


def source_folders():
  """Every folder of .py files under the packages, dotted (``mvlt_jax.models``, ...)."""
  found = set()
  for package in PACKAGES:
    for directory, subdirectories, files in os.walk(os.path.join(REPO, package)):
      subdirectories[:] = [d for d in subdirectories if d != '__pycache__']
      if any(name.endswith('.py') for name in files):
        found.add(os.path.relpath(directory, REPO).replace(os.sep, '.'))
  return found


def test_pyproject_declares_the_project_and_its_packages():
  setuptools = pytest.importorskip('setuptools')
  from packaging.requirements import Requirement  # setuptools' own dependency

  meta = read_pyproject()
  project = meta['project']
  assert project['name'] == 'mvlt-jax'
  assert project['requires-python'] == '>=3.11'
  assert project['dynamic'] == ['dependencies']
  tool = meta['tool']
  assert tool['setuptools']['dynamic']['dependencies'] == {'file': ['requirements.txt']}
  # The file directive takes PEP 508 lines and comments only (no pip options such as -r).
  with open(os.path.join(REPO, 'requirements.txt')) as f:
    lines = [line.split('#')[0].strip() for line in f]
  names = {Requirement(line).name for line in lines if line}
  assert {'jax', 'flax', 'tensorflow-cpu', 'pillow'} <= names
  # Package discovery finds every folder of the three packages, and nothing else.
  find = tool['setuptools']['packages']['find']
  found = set(setuptools.find_namespace_packages(where=REPO, include=find['include']))
  assert found == source_folders()
  assert {'mvlt_jax', 'mvlt_jax.models', 'input_pipeline.datasets', 'configs'} <= found
  # Files the packages read besides their modules are package data.
  data_files = {
      os.path.relpath(os.path.join(directory, name), REPO)
      for package in PACKAGES
      for directory, _, files in os.walk(os.path.join(REPO, package))
      if '__pycache__' not in directory
      for name in files
      if not name.endswith('.py')
  }
  declared = {
      os.path.join(package, name)
      for package, names in tool['setuptools'].get('package-data', {}).items()
      for name in names
  }
  assert data_files <= declared
  with open(os.path.join(REPO, 'README.md'), encoding='utf-8') as f:
    assert 'pip install -e .' in f.read()
  # The formatter's settings stay (tests/test_formatting.py).
  assert tool['pyink']['line-length'] == 100 and tool['pyink']['pyink-indentation'] == 2


def test_editable_install_imports_from_anywhere(tmp_path):
  pytest.importorskip('setuptools')
  pytest.importorskip('pip')
  project = tmp_path / 'project'
  project.mkdir()
  for name in ('pyproject.toml', 'requirements.txt', 'README.md'):
    shutil.copy(os.path.join(REPO, name), project)
  for package in PACKAGES:
    shutil.copytree(
        os.path.join(REPO, package),
        project / package,
        ignore=shutil.ignore_patterns('__pycache__', '*.pyc'),
    )
  environment = tmp_path / 'venv'
  venv.create(environment, with_pip=False)
  python = str(environment / 'bin' / 'python')
  purelib = subprocess.run(
      [python, '-c', 'import sysconfig; print(sysconfig.get_paths()["purelib"])'],
      capture_output=True,
      text=True,
      check=True,
  ).stdout.strip()
  # This environment's packages (setuptools, pip, the dependencies) seen from the new one.
  ours = site.getsitepackages() + [sysconfig.get_paths()['purelib']]
  with open(os.path.join(purelib, 'outer.pth'), 'w') as f:
    f.write('\n'.join(dict.fromkeys(ours)) + '\n')
  elsewhere = tmp_path / 'elsewhere'
  elsewhere.mkdir()
  env = {k: v for k, v in os.environ.items() if k not in ('PYTHONPATH', 'VIRTUAL_ENV')}
  install = subprocess.run(
      [python, '-m', 'pip', 'install', '--no-deps', '--no-build-isolation', '--no-index', '-e',
       str(project)],
      capture_output=True,
      text=True,
      env=env,
      cwd=elsewhere,
      timeout=300,
  )  # fmt: skip
  assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]
  code = (
      'import importlib.util, configs.demo, input_pipeline, mvlt_jax\n'
      'print(mvlt_jax.__file__, input_pipeline.__file__, configs.demo.__file__,\n'
      '      importlib.util.find_spec("mvlt_jax.search").origin)\n'
  )
  imported = subprocess.run(
      [python, '-c', code], capture_output=True, text=True, env=env, cwd=elsewhere, timeout=300
  )
  assert imported.returncode == 0, imported.stderr[-3000:]
  paths = imported.stdout.split()
  assert paths == [
      str(project / 'mvlt_jax' / '__init__.py'),
      str(project / 'input_pipeline' / '__init__.py'),
      str(project / 'configs' / 'demo.py'),
      str(project / 'mvlt_jax' / 'search.py'),
  ]
  # Without the install the same command finds nothing (the copy is not on the path).
  assert not os.path.exists(elsewhere / 'mvlt_jax')
