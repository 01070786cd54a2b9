"""The attack zoo: a threat model, attacks that propose points, and the judge that decides what they achieved.

from attacks import ThreatModel, judge, make_attack
record = judge(make_attack("apgd-ce+bpda-identity"), defense, x, y, ThreatModel("Linf", 0.1), seed=0)
"""

from attacks.base import Attack, AttackOutput
from attacks.judge import AttackRecord, judge, score
from attacks.registry import available, make_attack
from attacks.threat_model import ThreatModel
from attacks.transform import TransformAttack

__all__ = [
    "Attack",
    "AttackOutput",
    "AttackRecord",
    "ThreatModel",
    "TransformAttack",
    "available",
    "judge",
    "make_attack",
    "score",
]
