"""The paired gain's interval (Tango's score interval, written by hand in audit/stats.py: no library we use has it)."""

import numpy as np
import pytest

from audit.stats import paired_difference_interval

Z95 = 1.959963984540054


def test_reproduces_the_published_reference_value():
    # Cavo et al. 2012 as tabulated in Fagerland, Lydersen & Laake's book (R package contingencytables, whose tests
    # print "estimate = -0.0621 (95% CI -0.1240 to -0.0054)"): n12 = 6, n21 = 16, N = 161.
    low, high = paired_difference_interval(6, 16, 161)
    assert low == pytest.approx(-0.1240, abs=5e-5) and high == pytest.approx(-0.0054, abs=5e-5)


@pytest.mark.parametrize(
    "b, c, n", [(12, 0, 200), (20, 8, 1000), (3, 11, 1000), (9, 9, 100), (30, 12, 840), (10, 5, 500), (2, 6, 100)]
)
def test_zero_is_excluded_exactly_when_mcnemars_score_test_rejects(b, c, n):
    low, high = paired_difference_interval(b, c, n)
    assert low < (b - c) / n < high
    rejects = abs(b - c) / np.sqrt(b + c) > Z95
    assert (not low <= 0 <= high) == rejects


def test_no_discordant_pair_still_gives_an_interval_of_width_about_4_over_n():
    for n in (10, 100, 1000):
        low, high = paired_difference_interval(0, 0, n)
        assert low == pytest.approx(-high) and n * high / (1 - high) == pytest.approx(Z95**2)
    assert paired_difference_interval(10, 0, 10) == (pytest.approx(0.4449, abs=1e-4), 1.0)


def test_coverage_is_near_95_percent():
    rng = np.random.default_rng(0)  # recorded seed
    n, p_only_first, p_only_second = 300, 0.06, 0.03
    truth = p_only_first - p_only_second
    counts = rng.multinomial(n, [p_only_first, p_only_second, 1 - p_only_first - p_only_second], size=2000)
    covered = [low <= truth <= high for low, high in (paired_difference_interval(b, c, n) for b, c, _ in counts)]
    assert 0.93 < np.mean(covered) < 0.97


def test_paired_counts_discordant_samples_and_leaves_out_missing_pairs():
    from scipy.stats import binomtest

    from audit.stats import paired

    a = [True, True, False, None, True, False, True]
    b = [True, False, True, True, False, False, None]
    counts = paired(a, b)
    assert (counts.only_a, counts.only_b, counts.paired) == ([1, 4], [2], 5)
    assert counts.p_two_sided() == pytest.approx(binomtest(2, 3, 0.5).pvalue)
    assert counts.p_a_beats_b() == pytest.approx(binomtest(2, 3, 0.5, alternative="greater").pvalue)
    assert paired(b, a).only_a == [2]
    with pytest.raises(ValueError):
        paired([True], [True, False])  # unpaired lengths are an error, not a silent truncation
