#!/usr/bin/env bash
# The GPU variants of docs/performance.md, one process each (so that each peak_memory_gib is
# its own), in order of importance, so that a run cut short still has the first ones.
#
#   bash docs/experiments/gpu_benchmark_sweep.sh RESULTS.jsonl [VARIANT ...]
#
# Each result is one JSON line appended to RESULTS.jsonl, with a "variant" key in front; a
# variant that fails appends {"variant": ..., "error": <last line of its stderr>} and the
# sweep goes on. Environment: BATCH (150), STEPS (20, the timed steps; the median is
# reported), WARMUP (5), BENCH_ARGS (extra flags for every variant, given after the
# variant's so that they win, e.g. a smaller model and attention_impl=xla to try the script
# on a CPU). FLOPs are counted for the first variant only (the full-logits
# count is the same for all of them; docs/performance.md derives the others' mfu from it).
# A variant may also set XLA_FLAGS (ENVS below); the benchmark's JSON line reports them.
#
# The default ORDER is the next GPU session's plan for issue #17 (about 60 s per variant on
# an H100/H200, mostly compilation: the first 8 fit in one 600 s call). The variants of the
# 2026-11-25 table stay callable by name.
set -u
results=${1:?usage: gpu_benchmark_sweep.sh RESULTS.jsonl [VARIANT ...]}
shift
BATCH=${BATCH:-150}
STEPS=${STEPS:-20}
WARMUP=${WARMUP:-5}
BENCH_ARGS=${BENCH_ARGS:-}

declare -A FLAGS=(
  [base]=''
  [cudnn]='--config.model.attention_impl=cudnn'
  [scatter_cudnn]='--config.model.word_embedding_grad=scatter --config.model.attention_impl=cudnn'
  [full_logits_cudnn]='--config.masking.mlm_max_predictions=0 --config.model.attention_impl=cudnn'
  [full_logits]='--config.masking.mlm_max_predictions=0'
  [remat_cudnn]='--config.model.remat=True --config.model.attention_impl=cudnn'
  [alternate_cudnn]='--config.loss_schedule=alternate --config.model.attention_impl=cudnn'
  [xla]='--config.model.attention_impl=xla'
  [batch300_cudnn]='--config.model.attention_impl=cudnn --config.global_batch_size=300'
  # Added for #17 (2026-12-02; not run yet: no GPU lent since):
  [remat_dots_cudnn]='--config.model.remat=True --config.model.remat_policy=dots_saveable --config.model.attention_impl=cudnn'
  [remat_dots_nobatch_cudnn]='--config.model.remat=True --config.model.remat_policy=dots_with_no_batch_dims_saveable --config.model.attention_impl=cudnn'
  [lhs_cudnn]='--config.model.attention_impl=cudnn'
  [no_command_buffer_cudnn]='--config.model.attention_impl=cudnn'
  [triton_gemm_any_cudnn]='--config.model.attention_impl=cudnn'
  [batch256_cudnn]='--config.model.attention_impl=cudnn --config.global_batch_size=256'
  [batch256_remat_dots_cudnn]='--config.model.attention_impl=cudnn --config.global_batch_size=256 --config.model.remat=True --config.model.remat_policy=dots_saveable'
)
declare -A ENVS=(
  [lhs_cudnn]='--xla_gpu_enable_latency_hiding_scheduler=true'
  [no_command_buffer_cudnn]='--xla_gpu_enable_command_buffer='
  [triton_gemm_any_cudnn]='--xla_gpu_triton_gemm_any=true'
)
ORDER=(cudnn scatter_cudnn remat_dots_cudnn remat_dots_nobatch_cudnn lhs_cudnn
       no_command_buffer_cudnn batch256_cudnn batch256_remat_dots_cudnn remat_cudnn
       triton_gemm_any_cudnn)
if [ $# -gt 0 ]; then ORDER=("$@"); fi

count_flops=true
for variant in "${ORDER[@]}"; do
  if [ -z "${FLAGS[$variant]+set}" ]; then
    echo "unknown variant '$variant' (known: ${!FLAGS[*]})" >&2
    exit 2
  fi
  xla_flags="${XLA_FLAGS:-} ${ENVS[$variant]:-}"
  echo "== $variant: ${FLAGS[$variant]} ${ENVS[$variant]:+XLA_FLAGS=${ENVS[$variant]}}" >&2
  stderr_file=$(mktemp)
  start=$(date +%s)
  # shellcheck disable=SC2086  # the flag strings are meant to split
  line=$(XLA_FLAGS="${xla_flags# }" python3 -m mvlt_jax.benchmark --config=configs/pretrain.py \
      --config.global_batch_size="$BATCH" --steps="$STEPS" --warmup="$WARMUP" \
      --count_flops="$count_flops" ${FLAGS[$variant]} $BENCH_ARGS 2>"$stderr_file")
  status=$?
  if [ $status -eq 0 ] && [ "${line:0:1}" = "{" ]; then
    echo "{\"variant\": \"$variant\", ${line:1}" | tee -a "$results"
    count_flops=false
  else
    reason=$(grep -v '^\s*$' "$stderr_file" | tail -n 1 | tr -d '"\\' | cut -c1-300)
    echo "{\"variant\": \"$variant\", \"error\": \"exit $status: $reason\"}" | tee -a "$results"
    tail -n 30 "$stderr_file" >&2
  fi
  rm -f "$stderr_file"
  echo "   ($(( $(date +%s) - start )) s)" >&2
done
