#!/usr/bin/env bash
# Input-pipeline throughput of two checkouts, side by side (docs/input_pipeline.md).
#
#   git worktree add /tmp/old 3dda84d      # the version to compare with
#   bash docs/experiments/input_pipeline_side_by_side.sh /tmp/old . /tmp/tp
#
# DATA holds three prepared datasets:
#   python -m input_pipeline.prepare synthetic_fashion --data_dir=DATA/raw \
#       --num_products=600 --num_validation_products=50
#   (the same with --image_encoding=jpeg under DATA/jpeg)
#   python -c "from tests.contract_dataset import write_contract_dataset as w; w('DATA/standin', 'standin', split_sizes={'train': 3000}, image_encoding='jpeg')"
#   (the stand-in dataset; run from the repository root)
# Prints one line per run: version, dataset, the JSON of input_pipeline.throughput.
set -euo pipefail
OLD=$(cd "$1" && pwd); NEW=$(cd "$2" && pwd); DATA=$3
OLD_FLAGS=${OLD_FLAGS:---deterministic}  # the old reader's ordered mode
for round in 1 2 3; do
  for dataset in raw:synthetic_fashion jpeg:synthetic_fashion standin:standin; do
    dir=${dataset%%:*}; name=${dataset##*:}
    for version in old new; do
      if [ "$version" = old ]; then tree=$OLD; flags=$OLD_FLAGS; else tree=$NEW; flags=; fi
      result=$(cd "$tree" && python -m input_pipeline.throughput --data_dir="$DATA/$dir" \
               --name="$name" $flags 2>/dev/null | tail -1)
      echo "$version $dir $result"
    done
  done
done
