#!/usr/bin/env bash
# Submit one scheduled run to a Ray cluster at most once per schedule slot, then follow it to its end.
#
# Usage: cluster/submit_slot.sh NAME -- ENTRYPOINT...      (run from the repository root, e.g. /app)
# Env:   RAY_ADDRESS  the job API, e.g. http://distill-factory-head-svc:8265
#        SLOT         the schedule slot; defaults to the suffix of JOB_NAME, which the Kubernetes CronJob
#                     controller sets to <cronjob name>-<scheduled time in minutes since the epoch>
#        RAY_AUTH_MODE=token and RAY_AUTH_TOKEN when the cluster has token authentication on.
#
# The submission id is NAME-SLOT. Ray refuses a second job with an existing submission id, so a retried
# pod, a duplicate trigger or a manual re-run of the same slot follows the job already submitted instead
# of starting another. Exit status: 0 iff that job SUCCEEDED. Not covered: two different slots running at
# once (the CronJob's concurrencyPolicy: Forbid prevents that).
set -euo pipefail

name="$1"; shift
if [ "${1:-}" = "--" ]; then shift; fi
slot="${SLOT:-${JOB_NAME##*-}}"
if [ -z "$slot" ]; then echo "submit_slot.sh: set SLOT or JOB_NAME" >&2; exit 2; fi
id="${name}-${slot}"

if ray job status "$id" >/dev/null 2>&1; then
  echo "slot ${slot} already submitted as ${id}; following it"
elif ! ray job submit --submission-id "$id" --no-wait \
    --runtime-env cluster/runtime_env.yaml --working-dir . -- "$@"; then
  # Lost a race with another submitter of the same slot: fine if the job now exists.
  ray job status "$id" >/dev/null
fi

ray job logs --follow "$id" || true
python - "$id" <<'PY'
import sys

from ray.job_submission import JobStatus, JobSubmissionClient

status = JobSubmissionClient().get_job_status(sys.argv[1])  # address from RAY_ADDRESS
print(f"{sys.argv[1]}: {status}")
sys.exit(0 if status == JobStatus.SUCCEEDED else 1)
PY
