"""Per-image appearance compensation for captures with auto-exposure and white balance (phones).

Each training image gets a colour affine, rendered' = A @ rendered + b (A 3x3, b 3, identity at
the start), optimised with the scene, so exposure changes between photos are explained by the
photo rather than baked into the Gaussians' colours. Test images have no affine of their own:
evaluation renders the scene as it is (identity), as gsplat's appearance optimisation and the
exposure compensation of hierarchical 3DGS do.
"""

from __future__ import annotations

import torch

LR = 1e-3  # Adam; per-image colour drifts are small, a slow rate keeps them from taking the scene's colours
LR_FINAL = 1e-4


class AppearanceCompensation:
    def __init__(self, n_images: int, device: torch.device):
        eye = torch.eye(3, 4, device=device).expand(n_images, 3, 4).contiguous()
        self.affine = torch.nn.Parameter(eye)  # (n_images, 3, 4): [A | b] per dataset frame
        self.optimizer = torch.optim.Adam([self.affine], lr=LR, eps=1e-15)

    def apply(self, image: torch.Tensor, index: int) -> torch.Tensor:
        """image (H, W, 3) of dataset frame `index` as that photo's exposure shows it."""
        m = self.affine[index]
        return image @ m[:, :3].T + m[:, 3]

    def step(self, progress: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = LR * (LR_FINAL / LR) ** progress
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def state_dict(self) -> dict:
        return {"affine": self.affine.detach().cpu(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        with torch.no_grad():
            self.affine.copy_(state["affine"].to(self.affine.device))
        self.optimizer.load_state_dict(state["optimizer"])
