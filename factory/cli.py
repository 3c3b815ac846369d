"""``factory`` command line: thin dispatch to the package's functions (no logic lives here).

    factory validate CONFIG            check a config file, print the resolved values
    factory run CONFIG [--set k=v]     the whole distillation run (same code as pipelines/distill.py)
    factory refresh CONFIG             incremental refresh against the latest snapshot
    factory train CONFIG --snapshot V  student SFT on a committed snapshot (local, or --submit to Ray Jobs)
    factory eval CONFIG [--checkpoint DIR]
    factory report SNAPSHOT_DIR        rebuild a snapshot's HTML report
    factory jobs [--address A] [--wait ID]
    factory rl CONFIG [--set k=v]      GRPO on the teacher with the factory's verifiers as rewards
    factory ablate CONFIG [--set k=v]  students under named data policies, compared with paired intervals
    factory tiny build [--out DIR]     build the tiny test models (default: into the cache)
    factory serve --model DIR          Gradio chat UI for a checkpoint
"""

from __future__ import annotations

import argparse
import json
import logging
import sys


def _config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="YAML config file")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a field, e.g. --set generation.sampling.n=2 (value parsed as YAML)")
    p.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                   help="show the run log on the console too (vLLM, Ray and worker output)")


def _load(args):
    from factory.config import load_config

    return load_config(args.config, tuple(args.overrides))


def _distill(args, incremental: bool) -> int:
    """``factory run`` / ``factory refresh`` in this process: the console shows stage lines and the
    summary; everything else goes to the run's log file (``--verbose`` shows it too). A failure prints
    one error line and the log's path, and exits 1."""
    from factory.config import ConfigError
    from factory.console import capture, error_summary, say
    from factory.flow import run_distill
    from factory.stages.ingest import PromptValidationError
    from factory.paths import run_log
    from factory.summary import render

    cfg = _load(args)
    with capture(str(run_log(cfg, args.command)), verbose=args.verbose) as log_path:
        say(f"distill-factory {args.command} {cfg.run.name} (full log: {log_path})")
        try:
            summary = run_distill(cfg, incremental=incremental)
        except (ConfigError, PromptValidationError):
            raise  # a bad config or prompt file: main prints it, exit code 2
        except Exception as error:
            logging.getLogger("factory").exception("%s failed", args.command)
            say(f"error: {error_summary(error)}")
            say(f"the run failed; the full log with the traceback: {log_path}")
            return 1
        for line in render(summary, log_path):
            say(line)
    return 0


def cmd_validate(args) -> int:
    """Any kind of config: a distillation config, or an RL or ablation config with the distillation config it names."""
    from factory.ablate.config import is_ablate_config, load_ablate_config
    from factory.config_paths import check_paths
    from factory.rl.config import is_rl_config, load_rl_config

    if is_ablate_config(args.config):
        from factory.ablate.config import eval_config

        ablate_cfg, cfg = load_ablate_config(args.config, tuple(args.overrides))
        print(json.dumps(ablate_cfg.model_dump(mode="json"), indent=2))
        cfg = eval_config(ablate_cfg, cfg)  # its held-out sets are checked as the evaluation's
    elif is_rl_config(args.config):
        rl_cfg, cfg = load_rl_config(args.config, tuple(args.overrides))
        print(json.dumps(rl_cfg.model_dump(mode="json"), indent=2))
    else:
        cfg = _load(args)
    problems, unchecked = check_paths(cfg)
    if problems:
        print(f"{args.config}: invalid config\n  " + "\n  ".join(problems), file=sys.stderr)
        return 2
    print(json.dumps(cfg.model_dump(mode="json"), indent=2))
    for line in unchecked:
        print(f"not checked here: {line}", file=sys.stderr)
    print(f"{args.config}: ok", file=sys.stderr)
    return 0


def cmd_rl(args) -> int:
    from factory.rl import rl_command

    return rl_command(args.config, tuple(args.overrides))


def cmd_ablate(args) -> int:
    from factory.ablate import ablate_command

    return ablate_command(args.config, tuple(args.overrides), verbose=getattr(args, "verbose", False))


def cmd_run(args) -> int:
    return _distill(args, incremental=False)


def cmd_refresh(args) -> int:
    cfg = _load(args)
    if args.submit:
        from factory.launch import submit

        if not args.slot:
            print("error: --submit needs --slot (the schedule slot makes the submission id)", file=sys.stderr)
            return 2
        extra = tuple(f"--set={o}" for o in args.overrides)
        job_id, new = submit("refresh", cfg, args.config, args.slot, address=args.address, extra_args=extra)
        print(json.dumps({"submission_id": job_id, "submitted": new}))
        return 0
    return _distill(args, incremental=True)


def cmd_train(args) -> int:
    from factory.launch import train_command

    return train_command(_load(args), args.config, args.snapshot, submit_job=args.submit, address=args.address,
                         overrides=tuple(args.overrides))


def cmd_eval(args) -> int:
    from factory.evaluate import eval_command

    print(json.dumps(eval_command(_load(args), args.checkpoint), indent=2))
    return 0


def cmd_report(args) -> int:
    from factory.report import build_report

    print(build_report(args.snapshot))
    return 0


def cmd_jobs(args) -> int:
    from factory.launch import jobs_command

    return jobs_command(args.address, args.wait, args.timeout)


def cmd_tiny(args) -> int:
    from factory import tiny

    return tiny.main(["build"] + (["--out", args.out, "--seed", str(args.seed)] if args.out else []))


def cmd_serve(args) -> int:
    from factory.serve import serve

    serve(args.model, host=args.host, port=args.port, allow_remote=args.allow_remote, backend=args.backend)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="factory", description="distill-factory")
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, fn in (("validate", cmd_validate), ("run", cmd_run), ("rl", cmd_rl), ("ablate", cmd_ablate)):
        p = sub.add_parser(name)
        _config_args(p)
        p.set_defaults(fn=fn)
    p = sub.add_parser("refresh")
    _config_args(p)
    p.add_argument("--submit", action="store_true", help="submit as a Ray job, once per --slot")
    p.add_argument("--slot", default=None, help="schedule slot (e.g. 2026-11-29T06:00); same slot → same job")
    p.add_argument("--address", default=None, help="Ray dashboard address for --submit")
    p.set_defaults(fn=cmd_refresh)
    p = sub.add_parser("train")
    _config_args(p)
    p.add_argument("--snapshot", default="latest", help="snapshot version to train on")
    p.add_argument("--submit", action="store_true", help="submit as a Ray job instead of running here")
    p.add_argument("--address", default=None, help="Ray dashboard address for --submit")
    p.set_defaults(fn=cmd_train)
    p = sub.add_parser("eval")
    _config_args(p)
    p.add_argument("--checkpoint", default=None, help="student checkpoint to evaluate")
    p.set_defaults(fn=cmd_eval)
    p = sub.add_parser("report")
    p.add_argument("snapshot", help="snapshot directory")
    p.set_defaults(fn=cmd_report)
    p = sub.add_parser("jobs")
    p.add_argument("--address", default=None)
    p.add_argument("--wait", default=None, metavar="SUBMISSION_ID")
    p.add_argument("--timeout", type=float, default=3600.0)
    p.set_defaults(fn=cmd_jobs)
    p = sub.add_parser("tiny")
    p.add_argument("action", choices=["build"])
    p.add_argument("--out", default=None, help="output directory (default: the shared cache, seed 0)")
    p.add_argument("--seed", type=int, default=0, help="seed (only with --out)")
    p.set_defaults(fn=cmd_tiny)
    p = sub.add_parser("serve")
    p.add_argument("--model", required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--allow-remote", action="store_true", help="required to bind a non-loopback address")
    p.add_argument("--backend", choices=["auto", "vllm", "transformers"], default="auto")
    p.set_defaults(fn=cmd_serve)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.getLogger().setLevel(logging.DEBUG if args.verbose else logging.INFO)
    from factory.config import ConfigError
    from factory.stages.ingest import PromptValidationError

    try:
        return args.fn(args)
    except (ConfigError, PromptValidationError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def job_main(command: str, argv: list[str] | None = None) -> int:
    """Entry for ``pipelines/*.py``: ``--config FILE [--set k=v]... [other flags of the command]``,
    so ``ray job submit -- python pipelines/X.py --config C`` runs what ``factory COMMAND C`` runs."""
    argv = list(sys.argv[1:] if argv is None else argv)
    usage = f"usage: python pipelines/<job>.py --config CONFIG [--set k=v ...] (runs `factory {command}`)"
    if "-h" in argv or "--help" in argv:
        print(usage)
        return 0
    if "--config" not in argv:
        print(usage, file=sys.stderr)
        return 2
    at = argv.index("--config")
    config = argv[at + 1]
    rest = argv[:at] + argv[at + 2:]
    return main([command, config, *rest])


if __name__ == "__main__":
    sys.exit(main())
