"""Pre-training MVLT as the release did: pvlt_tiny, 256x256, L=128, MIR + ITM + MLM.

The defaults reproduce the release's code (which produced the paper's numbers); where the
paper's text or a fix of a release bug differs, the other behaviour is the option named in
the comment. docs/fidelity.md has the item-by-item table.

Run (8 accelerators, Fashion-Gen prepared in ./data, PVT ImageNet weights as the release):
  python main.py --config=configs/pretrain.py --workdir=workdirs/pretrain \
      --config.init_from=/path/to/pvt_tiny.pth

Print the model's parameter table instead:
  python main.py --config=configs/pretrain.py --workdir=/tmp/x --config.task=summary
"""

import ml_collections


def model_config() -> ml_collections.ConfigDict:
  """The paper's model: pvlt_tiny with the pre-training heads."""
  m = ml_collections.ConfigDict()
  m.variant = 'pvlt_tiny'  # pvlt_tiny | pvlt_small | pvlt_medium | pvlt_large | pvlt_micro
  # Per-stage overrides of the variant (4 entries each); None keeps the variant's value.
  m.embed_dims = None
  m.num_heads = None
  m.mlp_ratios = None
  m.depths = None
  m.sr_ratios = None
  m.image_size = 256
  m.text_length = 128
  m.vocab_size = 30522
  m.pos_grid_size = 224  # the image size whose grid the visual position embeddings are stored for
  m.text_max_positions = 512
  m.type_vocab_size = 2
  m.text_width = 768
  m.head_width = 768
  m.heads = ('mlm', 'itm', 'mir')  # any of: mlm, itm, mir, recognition, attributes
  m.num_main_classes = 48
  m.num_sub_classes = 122
  # Classes per attribute of the 'attributes' heads (not in the paper; the demo's): () takes
  # them from the dataset (synthetic_fashion: colour 16, pattern 6).
  m.attribute_classes = ()
  m.mir_channels = 64
  m.bn_momentum = 0.9  # flax convention; PyTorch's momentum 0.1
  m.drop_path_rate = 0.1
  m.text_dropout_rate = 0.1
  m.stage_dropout_rate = 0.0
  m.dtype = 'bfloat16'  # compute dtype; parameters stay float32
  m.attention_impl = ''  # '' lets JAX choose; 'xla' or 'cudnn'
  m.remat = False  # recompute each transformer block in the backward pass (less memory)
  # What a remat block keeps: '' nothing; 'dots_saveable' / 'dots_with_no_batch_dims_saveable'
  # (jax.checkpoint_policies) the matrix products' outputs, recomputing the element-wise work.
  m.remat_policy = ''
  # Gradient of the word table: 'scatter' (XLA's scatter-add), 'one_hot' (a one-hot matrix
  # product, same values, much faster on GPUs) or 'auto' (one_hot on GPUs, else scatter).
  m.word_embedding_grad = 'auto'
  # The [PAD] id: its lookups add no gradient to the word table, as the release's
  # nn.Embedding(padding_idx=0) (it still learns through the tied MLM decoder). -1: they do.
  m.word_padding_idx = 0
  # Init std of the word table; None is the release's: 0.02 with the MLM head (its tied decoder,
  # an nn.Linear, re-initialises the table), PyTorch's N(0, 1) with the [PAD] row zero without
  # it. 1.0: N(0, 1) always (BERT-style tables; what this project used before 2026-12-01).
  m.word_init_std = ml_collections.config_dict.placeholder(float)
  # Init std of the attention q / kv / proj kernels: 0.02 as the release (which then loads
  # PVT ImageNet weights); larger lets ITM learn from scratch sooner (docs/training.md).
  m.attention_init_std = 0.02
  return m


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.task = 'train'  # summary | train | eval_retrieval | eval_recognition | reconstruct
  c.seed = 0
  c.model = model_config()

  c.dataset = ml_collections.ConfigDict()
  c.dataset.name = 'fashion_gen'  # fashion_gen | catalog | synthetic_fashion
  c.dataset.data_dir = './data'
  c.dataset.manual_dir = ''
  c.dataset.train_split = 'train'
  c.dataset.eval_split = 'validation'
  c.dataset.caption_fields = 'title'  # title (the paper) | title+description (FashionViL)
  c.dataset.tokenizer = 'wordpiece'  # wordpiece (release-compatible) | sentencepiece
  c.dataset.vocab_file = ''
  c.dataset.itm_negative_prob = 0.5
  # Share of ITM negatives drawn from the same sub-category (0 = the paper: any product).
  c.dataset.itm_hard_negative_prob = 0.0
  c.dataset.itm_hard_negative_from_step = 0  # no hard negatives before this step
  # Repeated sampling (the release's RASampler): each item appears k times per epoch (each
  # copy with its own word mask, grid mask and ITM draw), an epoch covering ~1/k of the items.
  # 1 = a plain permutation per epoch.
  c.dataset.repeated_sampling = 3
  c.dataset.prefetch = 4  # training batches tf.data keeps ready ahead of the step
  c.dataset.num_workers = 0  # threads of tf.data's pool reading records (0 = the usable cores)
  c.dataset.auto_prepare = True  # prepare the dataset when it is missing
  # Extra options of `python -m input_pipeline.prepare` (e.g. num_products, vocab_size).
  c.dataset.prepare_options = ml_collections.ConfigDict()
  # A checkpoint folder whose tokenizer and text length a missing dataset is prepared with
  # ('' = build a tokenizer from dataset.tokenizer / vocab_file): fine-tuning on a new catalog.
  c.dataset.prepare_options.tokenizer_from = ''

  c.masking = ml_collections.ConfigDict()
  c.masking.image_unit = 16  # pixels per side of a masked unit (alpha=4 patches of P=4)
  c.masking.image_ratio = 0.5
  c.masking.image_fill = 1e-6
  # 'release': the release's generator (overlapping windows of one shuffled list: the masked
  # share varies per image, mean 0.5, std ~0.095); 'exact': exactly image_ratio of the units
  # of every image (the paper's words).
  c.masking.image_distribution = 'release'
  c.masking.word_prob = 0.15
  c.masking.word_mask_frac = 0.8
  c.masking.word_random_frac = 0.1
  c.masking.mlm_max_predictions = 32  # per sequence; MLM logits only there (0 = all positions)

  c.loss_weights = ml_collections.ConfigDict(
      dict(mir=10.0, itm=1.0, mlm=1.0, recognition=1.0, attributes=1.0)
  )
  # 'alternate': the release: even steps feed the unmasked image, odd steps the masked one,
  # every step computes all three losses on what it fed.
  # 'sum': all three losses on every batch with the masked image (the paper's reading).
  c.loss_schedule = 'alternate'

  c.optimizer = ml_collections.ConfigDict()
  c.optimizer.base_learning_rate = 2.5e-4  # scaled by global_batch_size / base_batch_size
  c.optimizer.base_batch_size = 512
  c.optimizer.b1 = 0.9
  c.optimizer.b2 = 0.999
  c.optimizer.eps = 1e-8
  c.optimizer.weight_decay = 0.01  # the release's config (the paper says 1e-4)
  # 'release': everything but 1-D parameters and biases decays (position embeddings and
  # embedding tables included); 'pvt': position embeddings excluded too (PVT's no_weight_decay).
  c.optimizer.weight_decay_groups = 'release'
  # timm's cosine over the absolute epoch after a linear warm-up (the release's curve).
  c.optimizer.warmup_epochs = 5.0
  c.optimizer.warmup_init_lr = 1e-6
  c.optimizer.final_lr = 1e-5
  # 'step': that curve evaluated at every step (our default); 'release_epoch': constant per
  # epoch and one epoch late, as the release steps timm's scheduler after each epoch.
  c.optimizer.lr_schedule_unit = 'step'
  c.optimizer.grad_clip_norm = 0.0  # 0 = no clipping (the release)

  c.global_batch_size = 1200  # 150 per accelerator x 8
  c.num_epochs = 150
  c.total_steps = 0  # 0 = derived from num_epochs
  c.checkpoint_every = 1000
  # The latest N in WORKDIR/checkpoints (0 = all); a restart resumes the newest that restores.
  c.keep_checkpoints = 3
  c.log_every = 50
  # Validation while training: the training losses (no dropout, fixed masks) and accuracies on
  # the first `validation_batches` global batches of dataset.eval_split, every
  # `validation_every` steps and at the end (0 = never). The checkpoint with the best
  # `best_metric` (a key of those metrics: loss, loss_itm, itm_accuracy, ...) is kept in
  # WORKDIR/best_checkpoint ('' = keep no best).
  # 'release_score' is the release's rule: MLM accuracy with the clean image + ITM accuracy
  # with the clean image and caption, kept from best_from_fraction of training on (the
  # release: from epoch 100 of 150).
  c.validation_every = 5000
  c.validation_batches = 10
  c.best_metric = 'release_score'
  c.best_mode = 'max'  # min | max
  c.best_from_fraction = 100 / 150
  # A checkpoint directory or a PyTorch file to start from: PVT's ImageNet pvt_tiny.pth (as
  # the release always does), a release checkpoint, or one of ours.
  c.init_from = ''
  # What init_from does with an array of another shape there than here (the class heads of
  # another dataset's classes, the word table of another vocabulary, the text positions of
  # another text length; also the word table of another tokenizer): 'error' stops before
  # training, naming them; 'fresh' starts them fresh and loads the rest. Either way the run
  # prints what was loaded and what was not. `prepare --tokenizer_from=CKPT` gives a dataset
  # the checkpoint's tokenizer and text length, so that its word table loads.
  c.init_from_mismatch = 'error'
  # Say so in one line when the vision path starts without pre-trained weights (the paper's
  # Table 4: about -6 points of R@5).
  c.pretrained_vision_expected = True
  c.checkpoint = ''  # the checkpoint an evaluation task reads
  c.eval_after_training = False  # run the retrieval + reconstruction evaluation after training

  # Evaluation tasks (eval_retrieval | eval_recognition | reconstruct; mvlt_jax/evaluators/).
  # The model comes from the checkpoint's config.json, the data from c.dataset.
  c.eval = ml_collections.ConfigDict()
  c.eval.split = ''  # '' = dataset.eval_split
  c.eval.dtype = 'float32'  # compute dtype ('' = the checkpoint's); bf16 ITM logits often tie
  c.eval.batch_size = 256  # global batch of recognition / reconstruction
  c.eval.max_examples = 0  # recognition / reconstruction: the first N records (0 = all)
  c.eval.prefetch = 4  # steps (batches, or queries_per_step queries) prepared ahead
  c.eval.num_workers = 0  # threads reading data (0 = the usable cores)
  # Retrieval as the paper: num_queries x num_candidates (partner + same sub-category).
  c.eval.num_queries = 1000
  c.eval.num_candidates = 101
  c.eval.seed = 0  # candidate sets of seed, seed + 1, ... (one per resample)
  c.eval.resamples = 1  # > 1: mean and std over fresh candidate draws
  c.eval.queries_per_step = 1  # queries per jit'd call (num_candidates pairs each)
  c.eval.recall_ks = (1, 5, 10)
  c.eval.retrieval_sets_dir = ''  # '' = <data_dir>/<dataset>/retrieval_sets
  # Full-gallery retrieval (each query against one view of every product of the split).
  c.eval.full_gallery = False
  c.eval.full_gallery_queries = 1000  # 0 = every product
  c.eval.first_stage = 'pooled_features'  # pooled_features | none (cross-encoder on all pairs)
  c.eval.first_stage_top_k = 100  # pairs per query the cross-encoder re-ranks
  # Masked image generation: masks keyed by (mask_seed, record index); a picture of the first
  # num_pictures records.
  c.eval.mask_seed = 0
  c.eval.num_pictures = 8
  c.eval.picture_cell_pixels = 192  # each picture enlarged (a whole factor) to at least this

  c.init_prng_impl = 'rbg'  # key implementation of the parameter initialisers (fast to compile)

  c.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1))  # -1: all remaining devices
  c.distributed = ml_collections.ConfigDict(
      dict(coordinator_address='', num_processes=0, process_id=-1, auto=False)
  )
  return c
