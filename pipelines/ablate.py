"""Ray job entrypoint: `factory ablate` as a submitted job.

    ray job submit --working-dir . -- python pipelines/ablate.py --config configs/cluster/ablate-qwen-1.5b.yaml [--set k=v ...]

Runs exactly the code `factory ablate CONFIG` runs; inside a submitted job it joins the job's cluster.
"""

import sys
from pathlib import Path

# A submitted job runs from its uploaded working dir, where the package may not be installed.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from factory.cli import job_main  # noqa: E402

if __name__ == "__main__":
    sys.exit(job_main("ablate"))
