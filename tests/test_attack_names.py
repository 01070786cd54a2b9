"""The attack-name grammar (attacks/names.py): every built attack's label parses back to the same attack, budgets
reach the constructors, and every malformed name is one UnknownAttack naming what is wrong."""

from __future__ import annotations

import pytest
import torch

from attacks.catalog import entries
from attacks.names import UnknownAttack, format_name, parse_name, split_attack_list
from attacks.registry import make_attack
from audit.config import SUITES
from audit.plan.suites import suite_names
from defenses.errors import UserError

SOURCE = torch.nn.Identity()  # a stand-in base model for transfer attacks

ROUND_TRIP = [
    "apgd-ce",
    "apgd-dlr",
    "apgd-t",
    "fab",
    "fab-t",
    "square",
    "fgsm",
    "autoattack-standard",
    "autoattack-plus",
    "autoattack-rand",
    "spatial-grid",
    "stadv",
    "apgd-t+bpda-smooth-T0.03@iters=500,restarts=5",
    "square@queries=20000,restarts=3",
    "apgd-ce+eot20",
    "apgd-ce+bpda-identity",
    "apgd-ce+bpda-smooth",
    "apgd-ce+bpda-smooth-T1",
    "apgd-ce+bpda-smooth-T0.123456789",
    "apgd-t+bpda-identity+eot5@targets=3",
    "fab-t@iters=7,targets=2",
    "spatial-grid@angles=3,translations=1",
    "stadv+bpda-smooth-T0.1@iters=20,stages=2",
    "transfer-base:apgd-ce",
    "transfer-base:apgd-t@iters=50",
    "torchattacks:PGD",
    "torchattacks:PGD@alpha=0.01,steps=20",
    "foolbox:LinfPGD@rel_stepsize=0.1,steps=5",
    "square+eot4@queries=100",
    "spatial-grid@random=10",
]


@pytest.mark.parametrize("name", ROUND_TRIP)
def test_label_round_trips(name):
    attack = make_attack(name, transfer_source=SOURCE)
    assert attack.label == name, "these are written in canonical form"
    again = make_attack(attack.label, transfer_source=SOURCE)
    assert again.label == attack.label
    assert again.config() == attack.config() or name.startswith("transfer-base:")


def test_budgets_reach_the_constructor_and_the_label():
    attack = make_attack("apgd-t+bpda-smooth-T0.03@iters=500,restarts=5")
    assert (attack.n_iter, attack.n_restarts, attack.n_target_classes) == (500, 5, 9)
    assert (attack.surrogate, attack.temperature, attack.eot) == ("smooth", 0.03, 1)
    square = make_attack("square@restarts=3,queries=20000")
    assert (square.n_queries, square.n_restarts) == (20000, 3)
    assert square.label == "square@queries=20000,restarts=3"  # canonical key order: the table's
    assert make_attack("apgd-ce@iters=100").label == "apgd-ce", "a default budget is left out of the label"
    # A sub-attack configured in Python shows its budget: AutoAttack-plus's APGD-CE runs 5 restarts.
    from attacks.autoattack import AutoAttack

    assert [p.label for p in AutoAttack("plus").parts][:2] == ["apgd-ce@restarts=5", "apgd-dlr@restarts=5"]


def test_every_suite_name_parses_and_round_trips():
    from defenses.adapters import MeanSparseDefense, RandomNoise
    from defenses.models.registry import load_shipped
    from defenses.protocol import Undefended

    meansparse = MeanSparseDefense(load_shipped("demo-meansparse"))
    for defense in (Undefended(torch.nn.Linear(2, 2)), meansparse, RandomNoise(torch.nn.Linear(2, 2))):
        for suite in SUITES:
            for name in suite_names(suite, defense):
                assert format_name(parse_name(name)) == name
                assert make_attack(name, transfer_source=SOURCE).label == name


@pytest.mark.parametrize("base", sorted(entries()))
def test_every_registered_attack_and_budget_key_round_trips(base):
    """Walk the registry: every attack, plain and with each of its budget keys set away from the default, is
    labelled with a name that builds the same attack again."""
    entry = entries()[base]
    names = [base] + [f"{base}@{key}={0.5 if key in entry.fractional else 3}" for key in entry.budget]
    for name in names:
        attack = make_attack(name, transfer_source=SOURCE)
        again = make_attack(attack.label, transfer_source=SOURCE)
        assert again.label == attack.label and again.config() == attack.config(), name


BAD = [
    ("apgd-ce+eot0", "at least one draw"),
    ("apgd-ce+eot-2", "at least one draw"),
    ("apgd-ce+bpda-smooth-T-1", "positive number"),
    ("apgd-ce+bpda-smooth-T0", "positive number"),
    ("apgd-ce+bpda-smooth-Tinf", "positive number"),
    ("apgd-ce+bpda-smooth-Tx", "positive number"),
    ("apgd-ce+eot3+eot4", "more than one +eot"),
    ("apgd-ce+bpda-identity+bpda-identity", "more than one +bpda"),
    ("apgd-ce+bpda-magic", "unknown modifier"),
    ("square+bpda-smooth-T0.1", "takes no gradients"),
    ("spatial-grid+bpda-identity", "takes no gradients"),
    ("apgd-ce@iters=0", "positive whole number"),
    ("apgd-ce@iters=-5", "positive whole number"),
    ("apgd-ce@iters=2.5", "whole number"),
    ("apgd-ce@iters=lots", "not a number"),
    ("apgd-ce@iters=3,iters=4", "given twice"),
    ("apgd-ce@targets=3", "no budget 'targets'"),
    ("fgsm@iters=3", "takes no budget"),
    ("apgd-ce@", "nothing after @"),
    ("apgd-ce@iters", "not KEY=VALUE"),
    ("apgd-ce@=3", "not KEY=VALUE"),
    ("+eot3", "no attack before"),
    ("", "empty attack name"),
    ("apgd-cee", "did you mean apgd-ce"),
    ("torchattacks:PGDD", "did you mean PGD"),
    ("torchattack:PGD", "did you mean torchattacks"),
    ("foolbox:LinfPDG", "did you mean LinfPGD"),
    ("torchattacks:PGD@steps=0", "must be positive"),
    ("torchattacks:PGD@steps=2.5", "whole number"),
    ("torchattacks:PGD@eps=0.3", "eps from --eps"),
    ("torchattacks:PGD@random_start=1", "not a number"),
    ("transfer-base:", "takes one attack"),
    ("transfer-base:transfer-base:apgd-ce", "takes one attack"),
    ("transfer-base:apgd-ce+eot0", "at least one draw"),
    ("transfer-base:spatial-grid", "takes an Lp attack"),  # found by the slow fuzz run: an AttributeError mid-run
    ("transfer-base:stadv@iters=2", "takes an Lp attack"),
]


@pytest.mark.parametrize("name, words", BAD, ids=[b[0] or "empty" for b in BAD])
def test_bad_names_are_one_line_user_errors(name, words):
    with pytest.raises(UnknownAttack) as error:
        make_attack(name, transfer_source=SOURCE)
    message = str(error.value)
    assert isinstance(error.value, UserError)
    assert words in message and "\n" not in message, message


def test_transfer_without_a_base_model_is_a_user_error():
    with pytest.raises(UnknownAttack, match="no base model"):
        make_attack("transfer-base:apgd-ce")


@pytest.mark.parametrize(
    "text, names",
    [
        ("apgd-ce,square", ["apgd-ce", "square"]),
        ("apgd-ce,square@queries=20000,restarts=3,fgsm", ["apgd-ce", "square@queries=20000,restarts=3", "fgsm"]),
        ("apgd-t@iters=5,restarts=2", ["apgd-t@iters=5,restarts=2"]),
        (" apgd-ce , fgsm ", ["apgd-ce", "fgsm"]),
    ],
)
def test_attack_lists_split_between_names_not_budgets(text, names):
    assert split_attack_list(text) == names


@pytest.mark.parametrize("text", ["", "apgd-ce,,fgsm", "apgd-ce,"])
def test_empty_names_in_a_list_are_refused(text):
    with pytest.raises(UnknownAttack, match="empty name"):
        split_attack_list(text)
