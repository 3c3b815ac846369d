"""Runs INSIDE the sandbox (stdlib only, started as ``python -I -S sandbox_harness.py FD``).

Reads a nonce line then the program source from stdin, executes the program as ``__main__`` and
reports on file descriptor FD: ``start <nonce>`` before running, then ``done <nonce>`` only if the
program ran to its end, or ``memory <nonce>`` on MemoryError. The parent counts a run as passed only
with ``done`` plus the nonce, so a program that exits early (``sys.exit(0)``, ``os._exit(0)``) before
its tests ran does not pass. A program that deliberately digs the nonce out of this process's memory
can forge a pass: this guards against accidents and shortcut-seeking models, not adversaries.
"""

import os
import sys
import traceback

MEMORY_EXIT = 3


def _quietly(action) -> None:
    """Run an output action that may fail once the output files hit their size limit."""
    try:
        action()
    except OSError:
        pass


def main() -> None:
    write, report_fd = os.write, int(sys.argv[1])
    nonce = sys.stdin.readline().strip()
    source = sys.stdin.read()
    sys.stdin = open(os.devnull)

    def report(word: str) -> None:
        write(report_fd, f"{word} {nonce}\n".encode())

    report("start")
    namespace = {"__name__": "__main__", "__builtins__": __builtins__}
    try:
        exec(compile(source, "main.py", "exec"), namespace)
    except MemoryError:
        report("memory")
        os._exit(MEMORY_EXIT)
    except SystemExit as stop:
        print(f"program exited (code {stop.code!r}) before its end", file=sys.stderr)
        os._exit(1)
    except BaseException as error:  # the traceback starts at the program, not at this harness
        _quietly(lambda: traceback.print_exception(type(error), error, error.__traceback__.tb_next))
        _quietly(sys.stderr.flush)
        os._exit(1)
    _quietly(sys.stdout.flush)
    _quietly(sys.stderr.flush)
    report("done")
    os._exit(0)


if __name__ == "__main__":
    main()
