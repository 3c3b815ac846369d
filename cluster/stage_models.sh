#!/usr/bin/env bash
# Stage the models the cluster configs load, at pinned hub revisions, onto the shared volume, once.
#   bash cluster/stage_models.sh /mnt/factory/models MODEL_ID=COMMIT_SHA [MODEL_ID=COMMIT_SHA ...]
# e.g. deepseek-ai/DeepSeek-R1-Distill-Qwen-7B=<40-hex commit> Qwen/Qwen2.5-Math-1.5B=<commit>
# Each lands in DEST/<org>--<name>/ with a REVISION file holding the commit; the pipeline records that file
# in every row's lineage (teacher_revision) and in the training card. Run it from a machine that can reach the
# hub (or a mirror); the GPU nodes never download at run time. Refuses branch names: pin a commit.
set -euo pipefail
dest=${1:?destination dir}; shift
for spec in "$@"; do
  model=${spec%%=*}; rev=${spec#*=}
  [[ $rev =~ ^[0-9a-f]{40}$ ]] || { echo "error: $model: revision must be a 40-hex commit, got '$rev'" >&2; exit 2; }
  dir="$dest/${model/\//--}"
  huggingface-cli download "$model" --revision "$rev" --local-dir "$dir.partial"
  echo "$rev" > "$dir.partial/REVISION"
  rm -rf "$dir" && mv "$dir.partial" "$dir"
  echo "staged $model@$rev -> $dir"
done
