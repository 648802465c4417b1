"""main.py's command line: errors raised on purpose are one line naming the fix; a bug keeps its traceback."""
import pytest

import main
from errors import InputError


def test_an_error_raised_on_purpose_is_one_line(monkeypatch, capsys):
    def bad_input():
        raise InputError("--something must be >= 1; use --something 2")

    monkeypatch.setattr(main, "main", bad_input)
    monkeypatch.delenv("MAIN_TRACEBACK", raising=False)
    assert main.cli() == 1
    err = capsys.readouterr().err
    assert err.startswith("error: --something must be >= 1; use --something 2\n") and "Traceback" not in err


@pytest.mark.parametrize("bug", [ValueError("a library's own ValueError"), TypeError("unsupported operand"),
                                 FileNotFoundError("a file the code itself expected"), KeyError("epoch")])
def test_a_bug_keeps_its_traceback(monkeypatch, bug):
    def buggy():
        raise bug

    monkeypatch.setattr(main, "main", buggy)
    with pytest.raises(type(bug)):
        main.cli()


def test_flags_checked_by_the_trainer_and_the_data_builder_are_reported_under_their_flag_names(capsys):
    with pytest.raises(SystemExit) as stop:
        main.parse_args(["--batch-size", "0", "--lr", "-1", "--test-fraction", "2", "--report-to", "wandb",
                         "--clean-text", "maybe", "--keep-embedding", "nan"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    for message in ("--batch-size must be >= 1", "--lr must be > 0", "--test-fraction must be between 0 and 1",
                    "--report-to must be one of none, tensorboard", "--clean-text must be one of auto, true, false",
                    "--keep-embedding must be >= 0"):
        assert message in err, message
