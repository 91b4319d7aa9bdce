"""Box regression losses through 2-D Gaussians: KLD (SPEC §7) and GWD.

A rotated box becomes N(mu, Sigma) with mu = (cx, cy) and Sigma = R diag(w^2/4, h^2/4) R^T. Both
distances are the same for all four 5-tuples of a box, so the angle convention does not matter and
the boundary discontinuity of angle regression disappears.
"""

from __future__ import annotations

import torch


def box_to_gaussian(boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Boxes (..., 5) -> means (..., 2) and covariances (..., 2, 2)."""
    w, h, theta = boxes[..., 2], boxes[..., 3], boxes[..., 4]
    cos, sin = torch.cos(theta), torch.sin(theta)
    rot = torch.stack((cos, -sin, sin, cos), dim=-1).reshape(*theta.shape, 2, 2)
    diag = torch.diag_embed(torch.stack((w * w / 4, h * h / 4), dim=-1))
    return boxes[..., :2], rot @ diag @ rot.transpose(-1, -2)


def _inverse_2x2(m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    a, b, c, d = m[..., 0, 0], m[..., 0, 1], m[..., 1, 0], m[..., 1, 1]
    det = a * d - b * c
    inv = torch.stack((d, -b, -c, a), dim=-1).reshape(m.shape) / det[..., None, None]
    return inv, det


def kld_distance(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """d (...,) = dmu^T St^-1 dmu + tr(St^-1 Sp) + ln(|St| / |Sp|) - 2, for boxes (..., 5) (SPEC §7).

    This is twice KL(N_pred || N_target). Boxes need w, h > 0 (a zero side makes Sigma singular).
    """
    mu_p, sigma_p = box_to_gaussian(pred)
    mu_t, sigma_t = box_to_gaussian(target)
    inv_t, det_t = _inverse_2x2(sigma_t)
    det_p = sigma_p[..., 0, 0] * sigma_p[..., 1, 1] - sigma_p[..., 0, 1] * sigma_p[..., 1, 0]
    dmu = (mu_p - mu_t)[..., None]
    maha = (dmu.transpose(-1, -2) @ inv_t @ dmu)[..., 0, 0]
    trace = torch.diagonal(inv_t @ sigma_p, dim1=-2, dim2=-1).sum(-1)
    return maha + trace + torch.log(det_t) - torch.log(det_p) - 2


def kld_loss(pred: torch.Tensor, target: torch.Tensor, tau: float = 1.0) -> torch.Tensor:
    """Per-box KLD loss (...,): 1 - 1 / (tau + log1p(max(d, 1e-6))), SPEC §7 with tau = 1."""
    d = kld_distance(pred, target).clamp_min(1e-6)
    return 1 - 1 / (tau + torch.log1p(d))


def gwd_distance(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Squared 2-Wasserstein distance (...,) between the boxes' Gaussians.

    ||dmu||^2 + tr(Sp) + tr(St) - 2 tr((Sp^1/2 St Sp^1/2)^1/2); for 2x2 matrices the last trace is
    sqrt(tr(Sp St) + 2 sqrt(det(Sp St))).
    """
    mu_p, sigma_p = box_to_gaussian(pred)
    mu_t, sigma_t = box_to_gaussian(target)
    prod = sigma_p @ sigma_t
    det = (prod[..., 0, 0] * prod[..., 1, 1] - prod[..., 0, 1] * prod[..., 1, 0]).clamp_min(0)
    tr_prod = torch.diagonal(prod, dim1=-2, dim2=-1).sum(-1)
    cross = (tr_prod + 2 * det.sqrt()).clamp_min(0).sqrt()
    tr_p = torch.diagonal(sigma_p, dim1=-2, dim2=-1).sum(-1)
    tr_t = torch.diagonal(sigma_t, dim1=-2, dim2=-1).sum(-1)
    return (mu_p - mu_t).pow(2).sum(-1) + tr_p + tr_t - 2 * cross


def gwd_loss(pred: torch.Tensor, target: torch.Tensor, tau: float = 1.0) -> torch.Tensor:
    """Per-box GWD loss (...,): 1 - 1 / (tau + log1p(max(d, 1e-6))), the same normalisation as KLD."""
    d = gwd_distance(pred, target).clamp_min(1e-6)
    return 1 - 1 / (tau + torch.log1p(d))


GAUSSIAN_LOSSES = {"kld": kld_loss, "gwd": gwd_loss}

__all__ = ["GAUSSIAN_LOSSES", "box_to_gaussian", "gwd_distance", "gwd_loss", "kld_distance", "kld_loss"]
