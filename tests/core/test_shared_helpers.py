"""What the car and the cloud share from carlink/: CLI number types, the strict schema base and
its error messages, JSON log lines, and the error that names a missing extra."""

from __future__ import annotations

import argparse
import io
import json
import logging
import sys

import pytest
from pydantic import Field, ValidationError

from carlink.cli_types import fraction, non_negative_float, non_negative_int, positive_float, positive_int
from carlink.extras import MissingExtraError, import_extra
from carlink.logs import configure_json_logging, event
from carlink.validation import StrictModel, problems


@pytest.mark.parametrize(
    "parse, good, bad",
    [
        (positive_int, {"1": 1, "250": 250}, ["0", "-1", "1.5", "x"]),
        (non_negative_int, {"0": 0, "7": 7}, ["-1", "2.0", ""]),
        (positive_float, {"0.5": 0.5, "3": 3.0}, ["0", "-0.1", "nan", "inf", "abc"]),
        (non_negative_float, {"0": 0.0, "12.5": 12.5}, ["-3", "nan", "-inf"]),
        (fraction, {"0": 0.0, "1": 1.0, "0.25": 0.25}, ["1.01", "-0.5", "nan"]),
    ],
)
def test_cli_number_types_accept_their_range_only(parse, good, bad):
    for text, value in good.items():
        assert parse(text) == value and type(parse(text)) is type(value)
    for text in bad:
        with pytest.raises(argparse.ArgumentTypeError, match=f"^expected .*, got '?{text}'?$"):
            parse(text)


def test_cli_number_type_errors_name_the_option(capsys):
    parser = argparse.ArgumentParser(prog="carlink replay")
    parser.add_argument("--max-frames", type=positive_int)
    with pytest.raises(SystemExit):
        parser.parse_args(["--max-frames", "0"])
    assert "argument --max-frames: expected an integer >= 1, got 0" in capsys.readouterr().err


class _Task(StrictModel):
    name: str
    deadline_ms: float = Field(gt=0)


class _Doc(StrictModel):
    tasks: list[_Task]


def test_strict_model_refuses_unknown_keys_and_is_frozen():
    doc = _Doc.model_validate({"tasks": [{"name": "FRONT", "deadline_ms": 100}]})
    with pytest.raises(ValidationError):
        doc.tasks[0].deadline_ms = 5  # type: ignore[misc]
    with pytest.raises(ValidationError):
        _Doc.model_validate({"tasks": [], "taks": []})


def test_problems_name_the_key_and_the_item():
    raw = {"tasks": [{"name": "FRONT", "deadline_ms": 100}, {"name": "SIDE_LEFT", "deadline_ms": -1, "weight": 2}],
           "extra": 1}
    with pytest.raises(ValidationError) as err:
        _Doc.model_validate(raw)
    assert sorted(problems(err.value, raw)) == [
        "extra: unknown key",
        "tasks[1] 'SIDE_LEFT'.deadline_ms: Input should be greater than 0",
        "tasks[1] 'SIDE_LEFT'.weight: unknown key",
    ]
    # Without the document: the bare key path; a missing key in plain words.
    with pytest.raises(ValidationError) as err:
        _Doc.model_validate({"tasks": [{"deadline_ms": 1}]})
    assert problems(err.value) == ["tasks[0].name: required key is missing"]


def test_json_log_lines_carry_fields_and_key_value_words():
    stream = io.StringIO()
    configure_json_logging("carlink.test_logs", logging.INFO, stream)
    logger = logging.getLogger("carlink.test_logs.part")
    event(logger, logging.WARNING, "refused", code="UNAUTHENTICATED", peer="ipv4:127.0.0.1:5")
    logger.info("stopped frames=%d emitted=%d", 12, 11)
    logger.debug("below the level")
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert (first["level"], first["logger"], first["event"]) == ("warning", "carlink.test_logs.part", "refused")
    assert first["code"] == "UNAUTHENTICATED" and first["peer"] == "ipv4:127.0.0.1:5"
    assert second["event"] == "stopped frames=12 emitted=11" and (second["frames"], second["emitted"]) == ("12", "11")


def test_json_logs_without_a_stream_follow_stderr_as_it_is_at_each_record(monkeypatch):
    # A stderr replaced and closed after configuration (a test's capture, a wrapper) gets no writes:
    # the next record goes to the stderr of its time, without "I/O operation on closed file".
    first, second = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stderr", first)
    configure_json_logging("carlink.test_stderr", logging.INFO)
    logger = logging.getLogger("carlink.test_stderr")
    logger.info("one")
    first.close()
    monkeypatch.setattr(sys, "stderr", second)
    logger.info("two")
    assert json.loads(second.getvalue())["event"] == "two"


def test_a_missing_extra_names_the_install_command():
    assert import_extra("json", "baselines", "x") is json
    with pytest.raises(MissingExtraError, match=r"the thing needs the Python package 'no_such_pkg_xyz'.*"
                                                r"pip install 'carlink\[baselines\]'"):
        import_extra("no_such_pkg_xyz.sub", "baselines", "the thing")
