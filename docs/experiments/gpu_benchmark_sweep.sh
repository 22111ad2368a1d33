#!/usr/bin/env bash
# The GPU variants of docs/performance.md, one process each (so that each peak_memory_gib is
# its own), in order of importance, so that a run cut short still has the first ones.
#
#   bash docs/experiments/gpu_benchmark_sweep.sh RESULTS.jsonl [VARIANT ...]
#
# Each result is one JSON line appended to RESULTS.jsonl, with a "variant" key in front; a
# variant that fails appends {"variant": ..., "error": <last line of its stderr>} and the
# sweep goes on. Environment: BATCH (150), STEPS (20, the timed steps; the median is
# reported), WARMUP (5), BENCH_ARGS (extra flags for every variant, e.g. a smaller model to
# try the script on a CPU). FLOPs are counted for the first variant only (the full-logits
# count is the same for all of them; docs/performance.md derives the others' mfu from it).
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
)
ORDER=(base cudnn scatter_cudnn full_logits_cudnn full_logits remat_cudnn alternate_cudnn xla batch300_cudnn)
if [ $# -gt 0 ]; then ORDER=("$@"); fi

count_flops=true
for variant in "${ORDER[@]}"; do
  if [ -z "${FLAGS[$variant]+set}" ]; then
    echo "unknown variant '$variant' (known: ${!FLAGS[*]})" >&2
    exit 2
  fi
  echo "== $variant: ${FLAGS[$variant]}" >&2
  stderr_file=$(mktemp)
  start=$(date +%s)
  # shellcheck disable=SC2086  # the flag strings are meant to split
  line=$(python3 -m mvlt_jax.benchmark --config=configs/pretrain.py \
      --config.global_batch_size="$BATCH" --steps="$STEPS" --warmup="$WARMUP" \
      --count_flops="$count_flops" $BENCH_ARGS ${FLAGS[$variant]} 2>"$stderr_file")
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
