"""One job per folder: an exclusive lock that names its holder.

A training run locks its workdir, ``prepare`` the dataset it writes. The lock is a kernel
``flock`` on ``<folder>/.lock`` (through ``filelock``): the kernel releases it when the holder
ends, however it ends (kill -9 included), so a lock left by a killed process never blocks the
next run. Beside it, ``<folder>/.lock.holder`` says who holds it (host, process id, command,
since when) so that the refusal can name the other job.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import socket
import sys
from typing import Iterator

import filelock

from mvlt_jax.errors import MVLTError

LOCK_FILE = '.lock'
HOLDER_FILE = '.lock.holder'


class FolderInUseError(MVLTError):
  """Another job holds the folder's lock."""


def _holder_description(folder: str) -> str:
  try:
    with open(os.path.join(folder, HOLDER_FILE)) as f:
      holder = json.load(f)
    return (
        f"process {holder['pid']} on {holder['host']} since {holder['since']} "
        f"({holder['command']})"
    )
  except (OSError, ValueError, KeyError, TypeError):
    return 'another process'


@contextlib.contextmanager
def exclusive(folder: str, job: str) -> Iterator[None]:
  """Holds ``folder``'s lock for the ``with`` block; ``job`` names what takes it.

  Raises:
    FolderInUseError: another process holds it (the message names that process).
  """
  lock = filelock.FileLock(os.path.join(folder, LOCK_FILE), timeout=0)
  try:
    lock.acquire()
  except filelock.Timeout:
    raise FolderInUseError(
        f'{folder} is in use by {_holder_description(folder)}; {job} needs it to itself. Wait '
        'for that job to end or stop it (a lock of a process that has ended is released by '
        'the system, nothing needs cleaning).'
    ) from None
  holder_path = os.path.join(folder, HOLDER_FILE)
  try:
    holder = {
        'pid': os.getpid(),
        'host': socket.gethostname(),
        'since': datetime.datetime.now().isoformat(timespec='seconds'),
        'command': ' '.join(sys.argv)[:300] or job,
    }
    with open(holder_path, 'w') as f:
      json.dump(holder, f)
    yield
  finally:
    with contextlib.suppress(OSError):
      os.remove(holder_path)
    lock.release()
