"""stAdv: spatially transformed adversarial examples (Xiao et al., ICLR 2018).

Each output pixel is resampled (bilinearly) from its own position plus a per-pixel flow vector. The attack
minimises the C&W margin loss plus tau times the total variation of the flow, so the flow stays smooth. The
threat model is a flow budget: every flow vector has Linf norm <= `max_flow` pixels. The attack returns the flow;
the judge clips it to the budget and re-applies it with `apply`, so what is scored is what the budget allows.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import nn

from attacks.base import AttackOutput
from attacks.catalog import register
from attacks.losses import margin as margins
from attacks.threat_model import ThreatModel
from attacks.transform import TransformAttack

log = logging.getLogger(__name__)


def identity_grid(height: int, width: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Pixel centres in grid_sample's normalised coordinates (align_corners=False): (1, H, W, 2) as (x, y)."""
    xs = (torch.arange(width, device=device, dtype=dtype) * 2 + 1) / width - 1
    ys = (torch.arange(height, device=device, dtype=dtype) * 2 + 1) / height - 1
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([grid_x, grid_y], dim=-1).unsqueeze(0)


def flow_warp(x: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """x_adv(p) = bilinear sample of x at p + flow(p).

    x: (n, C, H, W); flow: (n, 2, H, W) in pixels, channel 0 horizontal (right), channel 1 vertical (down).
    Border padding: a flow that points outside the image repeats the edge pixel instead of pulling in black,
    since pixels that move cannot create new intensities from outside the picture.
    """
    _, _, height, width = x.shape
    # In float64 (as in attacks.spatial): zero flow then returns x exactly, not blurred by ~1e-6.
    scale = torch.tensor([2.0 / width, 2.0 / height], device=x.device, dtype=torch.float64)
    grid = identity_grid(height, width, x.device, torch.float64) + flow.permute(0, 2, 3, 1).double() * scale
    out = F.grid_sample(x.double(), grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out.to(x.dtype)


def flow_total_variation(flow: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Xiao et al.'s L_flow: sum over pixels p and 4-neighbours q of sqrt(||flow(p) - flow(q)||^2 + eps).

    Each neighbouring pair appears twice in that sum (p->q and q->p), hence the factor 2 on the right and down
    differences. flow: (n, 2, H, W); returns (n,).
    """
    right = flow[:, :, :, 1:] - flow[:, :, :, :-1]
    down = flow[:, :, 1:, :] - flow[:, :, :-1, :]
    tv = (right.pow(2).sum(1) + eps).sqrt().flatten(1).sum(1) + (down.pow(2).sum(1) + eps).sqrt().flatten(1).sum(1)
    return 2 * tv


@register("stadv", {"iters": "steps", "stages": "stages"})
class StAdv(TransformAttack):
    """stAdv (Xiao et al. 2018): per-pixel flow, C&W margin loss + tau * TV(flow), Adam, projected on the budget.

    Args:
        max_flow: the budget, Linf per pixel on the 2-vector flow, in pixels (default 1).
        steps: optimisation steps (default 100).
        lr: Adam step size, in pixels (0.05: a 1-pixel budget is crossed in ~20 steps).
        tau: starting weight of the flow's total variation (paper: 0.05). kappa: margin floor of the C&W loss.
        tau_decay, stages: the steps run in `stages` equal stages; after each, tau is multiplied by `tau_decay`
            for the samples that are not adversarial yet (1.0 = the paper's fixed tau). Why: the TV sum runs over
            every pixel, so with tau = 0.05 it outweighs a margin of a few logits (on a small Fashion-MNIST CNN,
            78% clean, a fixed tau left 56% accuracy at max_flow = 1, the decayed one 1%). Lowering tau only where
            the attack has not succeeded yet is C&W's per-sample constant search, done in one pass.
        surrogate, temperature, eot: how gradients are taken (see `Attack`); gradients come from the model the
            judge passes in, so a defense's surrogate backward is used when one is set.
    Output params: the flow, float (n, 2 * H * W) (reshape to (n, 2, H, W)). Deterministic: starts at zero flow.
    Per sample, the best iterate is kept: adversarial beats not; among adversarial iterates the smallest max
    flow; otherwise the lowest margin.
    """

    name = "stadv"

    threat_kind = "flow"

    def __init__(
        self,
        max_flow: float = 1.0,
        steps: int = 100,
        lr: float = 0.05,
        tau: float = 0.05,
        kappa: float = 0.0,
        tau_decay: float = 0.1,
        stages: int = 5,
        surrogate: str = "exact",
        temperature: float | None = None,
        eot: int = 1,
        on_survivors: bool = False,
    ) -> None:
        super().__init__(surrogate, temperature, eot, on_survivors)
        if not max_flow > 0:
            raise ValueError(f"max_flow must be > 0, not {max_flow}")
        if steps < 0:
            raise ValueError(f"steps must be >= 0, not {steps}")
        self.max_flow = float(max_flow)
        self.steps = steps
        self.lr = lr
        self.tau = tau
        self.kappa = kappa
        self.tau_decay = tau_decay
        self.stages = max(1, stages)

    # -- the TransformAttack contract (what the judge uses) -------------------------------------------------
    def apply(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """Warp x (n, C, H, W) by the flattened flow params (n, 2*H*W); the same function the attack uses."""
        n, _, height, width = x.shape
        return flow_warp(x, params.to(device=x.device, dtype=x.dtype).reshape(n, 2, height, width))

    def clip_params(self, params: torch.Tensor) -> torch.Tensor:
        """Clamp every flow component into [-max_flow, max_flow]; NaN becomes zero flow."""
        return torch.nan_to_num(params.float(), nan=0.0).clamp(-self.max_flow, self.max_flow)

    def param_distance(self, params: torch.Tensor) -> torch.Tensor:
        """Largest flow component per sample, in pixels: (n,)."""
        return params.flatten(1).abs().amax(dim=1)

    # -- the attack -----------------------------------------------------------------------------------------
    def perturb(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel, seed: int
    ) -> AttackOutput:
        """x: (n, C, H, W) in [0, 1]; y: (n,). `threat` (an Lp ball) does not apply; the budget is `max_flow`."""
        n, _, height, width = x.shape
        x = x.detach()
        flow = torch.zeros(n, 2, height, width, device=x.device, dtype=x.dtype, requires_grad=True)
        optimizer = torch.optim.Adam([flow], lr=self.lr)
        best_flow = torch.zeros_like(flow).detach()
        best_margin = torch.full((n,), float("inf"), device=x.device)
        best_size = torch.full((n,), float("inf"), device=x.device)
        best_wrong = torch.zeros(n, dtype=torch.bool, device=x.device)
        tau = torch.full((n,), self.tau, device=x.device, dtype=x.dtype)
        stage_length = max(1, -(-self.steps // self.stages))
        losses = []

        def keep_best(current: torch.Tensor, logits: torch.Tensor) -> None:
            margin = margins(logits.detach(), y)
            wrong = logits.detach().argmax(1) != y
            size = current.flatten(1).abs().amax(1)
            better = torch.where(best_wrong, wrong & (size < best_size), wrong | (margin < best_margin))
            best_flow[better] = current[better]
            best_margin[better] = margin[better]
            best_size[better] = size[better]
            best_wrong[better] = wrong[better]

        for step in range(self.steps):
            if step and step % stage_length == 0:
                tau = torch.where(best_wrong, tau, tau * self.tau_decay)
            logits = model(flow_warp(x, flow))
            keep_best(flow.detach(), logits)
            adversarial = margins(logits, y).clamp_min(-self.kappa)
            # Per-sample losses are summed, so each sample's gradient is its own (samples do not compete).
            loss = (adversarial + tau * flow_total_variation(flow)).sum()
            # Gradient for the flow only: loss.backward() would also fill the defense's parameter gradients.
            (flow.grad,) = torch.autograd.grad(loss, flow)
            optimizer.step()
            with torch.no_grad():
                flow.nan_to_num_(nan=0.0).clamp_(-self.max_flow, self.max_flow)  # project onto the budget
            losses.append(float(loss.detach()) / max(n, 1))
        with torch.no_grad():
            keep_best(flow.detach(), model(flow_warp(x, flow)))
        log.debug("%s: %d/%d samples adversarial", self.label, int(best_wrong.sum()), n)
        params = best_flow.flatten(1)
        return AttackOutput(
            x_adv=self.apply(x, params).detach(),
            params=params,
            extra={"attack_margin": best_margin.cpu(), "tau": tau.cpu(), "loss_curve": losses},
        )
