"""The sharded train step on 8 devices equals the single-device one (tests/test_train.py).

Run in a process of its own with 8 host devices
(``XLA_FLAGS=--xla_force_host_platform_device_count=8 python -m tests.sharded_check``): the
device count is fixed when jax starts, so the test suite's process cannot run it itself.
"""

import ml_collections
import jax
import numpy as np
from mvlt_jax import optim, sharding, steps
from mvlt_jax.masking import TokenSpec
from mvlt_jax.models import build_model
from mvlt_jax.train_state import create_train_state
from tests.conftest import tiny_config


def main() -> None:
  assert jax.device_count() == 8, f'needs 8 devices, has {jax.device_count()}: see the docstring'
  config = tiny_config()
  config.model.image_size = config.model.pos_grid_size = 32
  model = build_model(config.model)
  schedule = optim.learning_rate_schedule(config.optimizer, 16, 10, 100)
  optimizer = optim.make_optimizer(config.optimizer, schedule)
  step_fn = steps.make_train_step(
      model, config, TokenSpec(64, (0, 1, 2, 3, 4), 4), optimizer, schedule
  )
  rng = np.random.default_rng(0)
  batch = dict(
      images=rng.integers(0, 256, (16, 32, 32, 3), dtype=np.uint8),
      input_ids=rng.integers(5, 64, (16, 16)).astype(np.int32),
      itm_labels=rng.integers(0, 2, (16,)).astype(np.int32),
  )

  def run(devices, fsdp):
    mesh_config = ml_collections.ConfigDict(dict(data=-1, fsdp=fsdp))
    mesh = sharding.make_mesh(mesh_config, devices=devices)
    with jax.set_mesh(mesh):
      make_state = lambda: create_train_state(model, config, optimizer)
      shardings = sharding.state_shardings(jax.eval_shape(make_state), mesh, min_fsdp_size=1)
      state = jax.jit(make_state, out_shardings=shardings)()
      batch_sharding = sharding.batch_sharding(mesh)
      global_batch = sharding.to_global_batch(batch, batch_sharding)
      fn = jax.jit(
          step_fn,
          in_shardings=(shardings, batch_sharding),
          out_shardings=(shardings, None),
          donate_argnums=(0,),
      )
      for _ in range(2):
        state, metrics = fn(state, global_batch)
      kernel = state.params['block1']['0']['attn']['q']['kernel']
      print(len(devices), 'devices, fsdp', fsdp, 'q kernel sharding', kernel.sharding.spec)
      return jax.device_get(state.params), jax.device_get(metrics)

  p1, m1 = run(jax.devices()[:1], 1)
  for fsdp in (2,):  # a 4 (data) x 2 (fsdp) mesh: batch split 8 ways, parameters 2 ways
    p8, m8 = run(jax.devices(), fsdp)
    for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(p8)):
      np.testing.assert_allclose(a, b, atol=2e-5, rtol=1e-4)
    np.testing.assert_allclose(m1['loss'], m8['loss'], rtol=1e-5)
    print('sharded ok: fsdp', fsdp, float(m8['loss']))


if __name__ == '__main__':
  main()
