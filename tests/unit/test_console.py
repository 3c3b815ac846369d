"""The console's one-line error summary names the innermost error, whatever wraps it."""

from __future__ import annotations

from factory.console import error_summary


def _chained() -> RuntimeError:
    try:
        try:
            raise KeyError("x")
        except KeyError as inner:
            raise RuntimeError("outer failed") from inner
    except RuntimeError as error:
        return error


def test_a_plain_error_is_its_first_line():
    assert error_summary(ValueError("bad value\nsecond line")) == "ValueError: bad value"


def test_a_chained_error_keeps_the_outer_message_when_the_inner_has_none():
    assert error_summary(_chained()) == "RuntimeError: outer failed"


def test_an_error_whose_text_embeds_a_remote_traceback_names_the_remote_error():
    remote = ('The actor died because of an error raised in its creation task, \x1b[36mray::MapWorker\x1b[39m\n'
              '  File "udf.py", line 64, in __init__\n    tokenizer = load()\n'
              "ValueError: Couldn't instantiate the backend tokenizer\n(1) a tokenizers file")

    class ActorDiedError(Exception):
        pass

    assert error_summary(ActorDiedError(remote)) == "ActorDiedError: ValueError: Couldn't instantiate the backend tokenizer"


def test_relay_shows_every_phase_and_one_progress_line_a_minute(capsys):
    import logging

    from factory.console import relay

    logger = logging.getLogger("factory.test_relay")
    records = [(0, "build 1/2: teacher: training"), (1, "teacher: 1/10"), (30, "teacher: 5/10"), (61, "teacher: 9/10"),
               (62, "build 2/2: reward: training"), (63, "after the block")]
    with relay("factory.test_relay", phases=r"^build \d/\d: "):
        for at, message in records[:-1]:
            record = logger.makeRecord(logger.name, logging.INFO, __file__, 0, message, (), None)
            record.created = 1000.0 + at
            logger.handle(record)
    logger.info(records[-1][1])
    assert capsys.readouterr().out.splitlines() == ["build 1/2: teacher: training", "teacher: 9/10",
                                                    "build 2/2: reward: training"]
