"""Ray job entrypoint: `factory rl` as a submitted job.

    ray job submit --working-dir . -- python pipelines/rl.py --config configs/cluster/grpo-1.5b.yaml [--set k=v ...]

Runs exactly the code `factory rl CONFIG` runs (:func:`factory.rl.rl_command`); inside a submitted job it
joins the job's cluster.
"""

import argparse
import sys
from pathlib import Path

# A submitted job runs from its uploaded working dir, where the package may not be installed.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from factory.rl import rl_command  # noqa: E402

if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="pipelines/rl.py", description="GRPO on the teacher (runs `factory rl`)")
    parser.add_argument("--config", required=True, help="RL config (YAML)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sys.exit(rl_command(args.config, tuple(args.overrides)))
