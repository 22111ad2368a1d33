"""A tiny training run for the tests: the demo's recipe on a 60-product catalog.

  python main.py --config=tests/tiny_train_config.py --workdir=/tmp/tiny \
      --config.dataset.data_dir=/tmp/tiny_data
"""

from configs import demo


def get_config():
  c = demo.get_config()
  m = c.model
  m.image_size = 32
  m.pos_grid_size = 32
  m.text_length = 16
  m.text_width = 32
  m.head_width = 32
  m.mir_channels = 8
  m.drop_path_rate = 0.1  # exercised: stochastic depth must be deterministic per step too
  c.dataset.prepare_options.vocab_size = 120
  c.dataset.prepare_options.image_size = 32
  c.dataset.prepare_options.num_products = 60
  c.dataset.prepare_options.num_validation_products = 60
  c.dataset.prepare_options.max_views = 2
  c.masking.image_unit = 8
  c.masking.mlm_max_predictions = 4
  c.global_batch_size = 8
  c.total_steps = 12
  c.checkpoint_every = 3
  c.log_every = 3
  c.validation_every = 6
  c.validation_batches = 2
  c.optimizer.warmup_epochs = 0.2
  c.eval_after_training = False  # the reference run of tests/test_train.py turns it on
  c.eval.num_queries = 4
  c.eval.num_candidates = 2
  c.eval.max_examples = 8
  c.eval.num_pictures = 2
  return c
