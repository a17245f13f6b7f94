"""Camera post-processing per Conditions: exposure gain, Gaussian blur, additive noise."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from lnn_nav.sim.world import Conditions


@dataclass(frozen=True)
class CameraEffects:
    """Sensor imperfections applied to rendered uint8 RGB, in this order: exposure, blur, noise.

    ``exposure`` multiplies intensities (1 = unchanged); ``blur_sigma`` is the
    Gaussian blur standard deviation in pixels (0 = off; motion and focus
    blur lumped together); ``noise_std`` is additive zero-mean Gaussian noise
    in [0, 1] intensity units (0 = off). The noise is drawn from the ``rng``
    passed in, so an env seeded once reproduces its images.
    """

    exposure: float = 1.0
    blur_sigma: float = 0.0
    noise_std: float = 0.0

    def __post_init__(self) -> None:
        if self.exposure <= 0:
            raise ValueError(f"exposure must be > 0, got {self.exposure}")
        if self.blur_sigma < 0 or self.noise_std < 0:
            raise ValueError(f"blur_sigma and noise_std must be >= 0, got {self.blur_sigma}, {self.noise_std}")

    @classmethod
    def from_conditions(cls, conditions: Conditions) -> CameraEffects:
        return cls(conditions.exposure, conditions.camera_blur, conditions.camera_noise)

    @property
    def is_identity(self) -> bool:
        return self.exposure == 1.0 and self.blur_sigma == 0.0 and self.noise_std == 0.0

    def __call__(self, rgb: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """Apply to uint8 images ``[..., H, W, C]``; returns a new uint8 array of the same shape.

        ``rng`` is required when ``noise_std > 0``.
        """
        rgb = np.asarray(rgb)
        if rgb.dtype != np.uint8 or rgb.ndim < 3:
            raise ValueError(f"expected uint8 images shaped [..., H, W, C], got {rgb.dtype} {rgb.shape}")
        if self.is_identity:
            return rgb.copy()
        if self.noise_std > 0 and rng is None:
            raise ValueError("noise_std > 0 needs an rng (numpy Generator) so the noise is reproducible")
        h, w, c = rgb.shape[-3:]
        img = rgb.reshape(-1, h, w, c).astype(np.float32)
        if self.exposure != 1.0:
            img *= self.exposure
        if self.blur_sigma > 0:
            # 3-sigma kernel, odd size; channels go through cv2 together as one image.
            k = 2 * int(np.ceil(3.0 * self.blur_sigma)) + 1
            for i in range(len(img)):
                img[i] = cv2.GaussianBlur(img[i], (k, k), self.blur_sigma, borderType=cv2.BORDER_REFLECT_101).reshape(
                    h, w, c
                )
        if self.noise_std > 0:
            assert rng is not None  # checked on entry: noise_std > 0 without an rng raises
            img += rng.normal(0.0, self.noise_std * 255.0, img.shape).astype(np.float32)
        return np.clip(img + 0.5, 0, 255).astype(np.uint8).reshape(rgb.shape)


def apply_camera_effects(rgb: np.ndarray, conditions: Conditions, rng: np.random.Generator | None = None) -> np.ndarray:
    """:class:`CameraEffects` of ``conditions`` applied to ``rgb``."""
    return CameraEffects.from_conditions(conditions)(rgb, rng)
