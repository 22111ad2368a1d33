"""The tree keeps one formatting hand: pyink with the settings of pyproject.toml."""

import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_python_files_are_formatted():
  pytest.importorskip('pyink')
  result = subprocess.run(
      [sys.executable, '-m', 'pyink', '--check', '--quiet', '.'],
      cwd=REPO,
      capture_output=True,
      text=True,
      timeout=600,
  )
  assert result.returncode == 0, (
      'files not formatted (run `pyink .`):\n' + result.stdout + result.stderr
  )
