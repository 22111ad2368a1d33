"""Device mesh and shardings: batch over every device, parameters replicated or FSDP-sharded.

The mesh has two axes, ``data`` and ``fsdp``; the batch is split over both. Parameters
(and optimizer state) are replicated, or with ``mesh.fsdp > 1`` sharded along their
largest dimension that the ``fsdp`` axis divides.
"""

import jax
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

BATCH_AXES = ('data', 'fsdp')


def make_mesh(mesh_config, devices=None) -> jax.sharding.Mesh:
  devices = jax.devices() if devices is None else devices
  fsdp = int(mesh_config.fsdp)
  data = int(mesh_config.data)
  if data == -1:
    if len(devices) % fsdp:
      raise ValueError(f'mesh.fsdp={fsdp} does not divide the {len(devices)} devices.')
    data = len(devices) // fsdp
  if data * fsdp != len(devices):
    raise ValueError(f'mesh data={data} x fsdp={fsdp} != {len(devices)} devices.')
  axis_types = (jax.sharding.AxisType.Auto,) * 2
  return jax.make_mesh((data, fsdp), BATCH_AXES, axis_types=axis_types, devices=devices)


def check_global_batch(global_batch_size: int, mesh: jax.sharding.Mesh) -> None:
  if global_batch_size % mesh.size:
    raise ValueError(
        f'global_batch_size={global_batch_size} does not divide over the {mesh.size} devices '
        f'of the mesh; use a multiple of {mesh.size}.'
    )
  if global_batch_size % jax.process_count():
    raise ValueError(
        f'global_batch_size={global_batch_size} does not divide over the '
        f'{jax.process_count()} processes.'
    )


def batch_sharding(mesh: jax.sharding.Mesh) -> NamedSharding:
  return NamedSharding(mesh, P(BATCH_AXES))


def replicated(mesh: jax.sharding.Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def _leaf_spec(shape, fsdp_size: int, min_size: int) -> P:
  if fsdp_size == 1 or not shape or np.prod(shape) < min_size:
    return P()
  # Shard the largest dimension that the fsdp axis divides.
  for dim in sorted(range(len(shape)), key=lambda d: -shape[d]):
    if shape[dim] % fsdp_size == 0:
      spec = [None] * len(shape)
      spec[dim] = 'fsdp'
      return P(*spec)
  return P()


def state_shardings(abstract_state, mesh: jax.sharding.Mesh, min_fsdp_size: int = 2**14):
  """NamedShardings for every leaf of an (abstract) state pytree."""
  fsdp_size = mesh.shape['fsdp']
  return jax.tree.map(
      lambda leaf: NamedSharding(mesh, _leaf_spec(leaf.shape, fsdp_size, min_fsdp_size)),
      abstract_state,
  )


def to_global_batch(local_batch: dict, sharding: NamedSharding) -> dict:
  """Host-local numpy batch (this process's rows) -> global jax arrays on the mesh."""
  return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, x), local_batch)
