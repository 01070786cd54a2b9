"""`--quiet` silences every progress bar, also those of modules that imported tqdm before it was given."""
from tqdm.auto import tqdm

from audit.progress import disable_progress_bars


def test_progress_bars_imported_before_the_switch_are_disabled(capsys):
    # conftest puts tqdm's default and TQDM_DISABLE back after every test (this one's switch included)
    assert not tqdm(range(2)).disable  # shown before (on stderr)
    disable_progress_bars()
    bar = tqdm(range(2), desc="must not show")
    assert bar.disable and list(bar) == [0, 1]
    assert "must not show" not in capsys.readouterr().err
