"""The embedded default: pre-train a micro MVLT on the synthetic fashion catalog on a CPU.

Prepares `synthetic_fashion` in ./data when missing (no downloads), pre-trains with the
three losses, then evaluates retrieval on the paper's protocol (101 candidates) and
writes a reconstruction picture. Fits in about 10 minutes on 2 CPU cores.

  python main.py --config=configs/demo.py --workdir=workdirs/demo
"""
from configs import pretrain


def get_config():
  c = pretrain.get_config()
  c.task = 'train'

  m = c.model
  m.variant = 'pvlt_micro'
  m.image_size = 64
  m.pos_grid_size = 64
  m.text_length = 32
  m.vocab_size = 0  # from the tokenizer
  m.text_width = 128
  m.head_width = 128
  m.mir_channels = 16
  m.num_main_classes = 0  # from the dataset
  m.num_sub_classes = 0
  m.drop_path_rate = 0.0
  m.dtype = 'float32'

  d = c.dataset
  d.name = 'synthetic_fashion'
  d.data_dir = './data'
  d.tokenizer = 'sentencepiece'
  d.caption_fields = 'title+description'
  d.deterministic = True
  d.prepare_options.vocab_size = 1000
  d.prepare_options.image_size = 64  # stored at the model's size: no resize per batch
  d.prepare_options.num_products = 2000
  # The retrieval protocol needs >= 101 products per sub-category (26) in the eval split.
  d.prepare_options.num_validation_products = 4000

  c.masking.image_unit = 8  # 64x64 images: 8x8 units keep the paper's 8x8 grid of units
  c.masking.mlm_max_predictions = 8

  c.global_batch_size = 64
  c.num_epochs = 0
  c.total_steps = 600
  c.optimizer.base_learning_rate = 1e-3
  c.optimizer.base_batch_size = 64
  c.optimizer.warmup_epochs = 1.0
  c.optimizer.final_lr = 1e-5
  c.checkpoint_every = 200
  c.validation_every = 200  # validation losses on 4 batches; the best in best_checkpoint
  c.validation_batches = 4
  c.eval_after_training = True
  c.eval.num_queries = 100  # of the paper's 1,000, to fit the CPU budget; 101 candidates each
  c.eval.batch_size = 64
  c.eval.max_examples = 512  # reconstruction metrics over the first 512 validation images
  c.log_every = 20
  return c
