"""Budgets of the diagnostics: small by default so a full pass on a demo-sized model takes well under a minute."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DiagnosticsConfig:
    """How much work each check may do. Every count is an upper bound, capped by the number of samples given."""

    batch_size: int = 100
    # gradients.py
    fd_directions: int = 4  # random directions per sample for the finite-difference check
    fd_step: float = 0.01  # finite-difference step, in units of eps (per pixel for Linf, in norm for L2)
    # landscape.py
    landscape_samples: int = 8
    landscape_points: int = 21  # points on each 1-D profile over [-span * eps, +span * eps]
    landscape_span: float = 2.0
    landscape_random_directions: int = 2
    surface_points: int = 11  # the 2-D surface is surface_points x surface_points
    # sanity.py
    apgd_iterations: int = 20  # APGD-CE iterations for the unbounded attack and the eps sweep
    eps_multipliers: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0)
    more_steps: tuple[int, int] = (10, 100)  # APGD-CE iterations compared by `more-steps-help`
    more_steps_samples: int = 50
    random_draws: int = 5  # forward passes compared by `randomized` (AutoAttack uses 5)
    # ioaf.py
    unstable_samples: int = 50
    unstable_draws: int = 100  # uniform perturbations per sample (Pintor et al. use 100)
    pgd_steps: int = 50  # the tracking PGD loop behind silent success / incomplete optimization
    unconstrained_steps: int = 50
    # binarization.py
    binarization_samples: int = 10  # binarized points per audit (the paper uses a few hundred; this is a spot check)
    # attribution.py: APGD-CE runs 2 * groups + 2 times on these samples
    attribution_samples: int = 200  # capped by --diagnostics-n (50 by default)
    attribution_iters: int = 50
    attribution_max_groups: int = 8  # a deep model's MeanSparse layers in this many runs of consecutive layers
