"""Multi-process setup: ``jax.distributed.initialize`` from the config or the environment."""

import os

import jax
from absl import logging

# Environment variables read when the config leaves the fields empty.
ENV_COORDINATOR = 'MVLT_COORDINATOR_ADDRESS'
ENV_NUM_PROCESSES = 'MVLT_NUM_PROCESSES'
ENV_PROCESS_ID = 'MVLT_PROCESS_ID'


def maybe_initialize(distributed_config) -> None:
  """Joins a multi-process job when one is described; a no-op for a single process.

  ``coordinator_address`` (or $MVLT_COORDINATOR_ADDRESS) with ``num_processes`` and
  ``process_id`` starts the job explicitly (e.g. several CPU processes on one machine);
  ``auto=True`` lets JAX detect the cluster (TPU pods, SLURM, Open MPI).
  """
  address = distributed_config.coordinator_address or os.environ.get(ENV_COORDINATOR, '')
  if address:
    num_processes = distributed_config.num_processes or int(os.environ[ENV_NUM_PROCESSES])
    process_id = (
        distributed_config.process_id
        if distributed_config.process_id >= 0
        else int(os.environ[ENV_PROCESS_ID])
    )
    # Lets CPU devices of several processes talk (only affects the CPU backend).
    jax.config.update('jax_cpu_collectives_implementation', 'gloo')
    jax.distributed.initialize(address, num_processes=num_processes, process_id=process_id)
  elif distributed_config.auto:
    jax.distributed.initialize()
  else:
    return
  logging.info(
      'Process %d of %d, %d local / %d global devices.',
      jax.process_index(),
      jax.process_count(),
      jax.local_device_count(),
      jax.device_count(),
  )
