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


def test_relay_forwards_each_new_phase_and_rate_limits_progress(capsys):
    import logging

    from factory.console import relay

    logger = logging.getLogger("factory.test_relay")
    with relay("factory.test_relay", every_s=3600):
        logger.info("build 1/2: teacher: training")
        logger.info("teacher: 1/10 loss 1.0")
        logger.info("teacher: 2/10 loss 0.9")  # same prefix, within the interval: log only
        logger.info("build 2/2: reward: training")
    logger.info("after the block")
    assert capsys.readouterr().out.splitlines() == ["build 1/2: teacher: training", "teacher: 1/10 loss 1.0",
                                                    "build 2/2: reward: training"]
