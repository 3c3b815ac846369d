#!/usr/bin/env bash
# Stage the models the cluster configs load, at pinned hub revisions, onto the shared volume, once.
#   bash cluster/stage_models.sh /mnt/factory/models MODEL_ID=COMMIT_SHA [MODEL_ID=COMMIT_SHA ...]
#   bash cluster/stage_models.sh --fingerprint DIR   # (re)write DIR's FINGERPRINT, e.g. after copying in a retrained model
# e.g. deepseek-ai/DeepSeek-R1-Distill-Qwen-7B=<40-hex commit> Qwen/Qwen2.5-Math-1.5B=<commit>
#      open-r1/Qwen2.5-Math-7B-RoPE-300k=<commit>   (configs/cluster/qwen-7b.yaml's student: Qwen2.5-Math has a 4k
#      context; open-r1 trains this RoPE-base-300k variant for 32k chains)
# Each lands in DEST/<org>--<name>/ with a REVISION file holding the commit and a FINGERPRINT file: per model file
# (the suffixes of factory.models.IDENTITY_SUFFIXES) its sha256, size, inode, mtime and ctime in ns, tab-separated.
# The factory's model identity (factory.models.model_identity: the sha256 of the `sha256sum` listing of those
# files) is recorded in the lineage and generation keys; it reads the digests from FINGERPRINT instead of hashing
# the shards again while every file's size, inode, mtime and ctime still match, and re-hashes otherwise. Run it
# from a machine that can reach the hub (or a mirror); the GPU nodes never download at run time. Refuses branch
# names: pin a commit.
set -euo pipefail

fingerprint() {  # fingerprint DIR: write DIR/FINGERPRINT; prints the identity
  local dir=$1 f sha size inode mtime ctime
  (
    cd "$dir"
    shopt -s nullglob
    mapfile -t files < <(printf '%s\n' *.safetensors *.bin *.pt *.pth *.json *.model *.txt *.jinja *.tiktoken *.py | sed '/^$/d' | LC_ALL=C sort)
    [[ ${#files[@]} -gt 0 ]] || { echo "error: $dir has no model files" >&2; exit 2; }
    {
      echo "# distill-factory model fingerprint v1: sha256 size inode mtime_ns ctime_ns name (tab-separated)"
      for f in "${files[@]}"; do
        sha=$(sha256sum -- "$f"); sha=${sha%% *}
        read -r size inode mtime ctime < <(stat -c '%s %i %.9Y %.9Z' -- "$f")
        printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$sha" "$size" "$inode" "${mtime/./}" "${ctime/./}" "$f"
      done
    } > FINGERPRINT.partial
    mv FINGERPRINT.partial FINGERPRINT
    echo "sha256:$(grep -v '^#' FINGERPRINT | awk -F'\t' '{print $1 "  " $6}' | sha256sum | cut -d' ' -f1)"
  )
}

if [[ ${1:-} == --fingerprint ]]; then
  fingerprint "${2:?model dir}"
  exit 0
fi
dest=${1:?destination dir}; shift
for spec in "$@"; do
  model=${spec%%=*}; rev=${spec#*=}
  [[ $rev =~ ^[0-9a-f]{40}$ ]] || { echo "error: $model: revision must be a 40-hex commit, got '$rev'" >&2; exit 2; }
  dir="$dest/${model/\//--}"
  huggingface-cli download "$model" --revision "$rev" --local-dir "$dir.partial"
  echo "$rev" > "$dir.partial/REVISION"
  identity=$(fingerprint "$dir.partial")
  rm -rf "$dir" && mv "$dir.partial" "$dir"
  echo "staged $model@$rev -> $dir ($identity)"
done
