"""`--quiet` silences every progress bar, also those of modules that imported tqdm before it was given, and puts
them back after the command (tests run commands in-process)."""

from tqdm.auto import tqdm

from audit.progress import progress_bars_off


def test_progress_bars_imported_before_the_switch_are_disabled_and_restored_after(capsys):
    assert not tqdm(range(2)).disable  # shown before (on stderr)
    with progress_bars_off():
        bar = tqdm(range(2), desc="must not show")
        assert bar.disable and list(bar) == [0, 1]
    assert "must not show" not in capsys.readouterr().err
    assert not tqdm(range(2)).disable


def test_quiet_commands_leave_progress_bars_on_for_the_next_one(tmp_path):
    from audit.cli import main

    assert main(["attacks", "--quiet"]) == 0
    assert not tqdm(range(2)).disable
