"""Left-ventricular geometry over the cardiac cycle, and EF from the 2-D contour by area-length.

In the imaging plane the LV cavity is a prolate ellipse (semi-axes ``a`` across, ``b`` along the long
axis) that contracts with a normalised contraction ``c(phase)`` (0 at end-diastole, 1 at end-systole):

    a(t) = a0 (1 - ka c),   b(t) = b0 (1 - kb c)

An akinetic lateral segment (hidden state s = 1) keeps the wall at its end-diastolic position over a
window ``m(psi)`` of the contour angle ``psi`` (measured at the LV centre from the apex toward the lateral
wall):  r(psi, t) = r_ellipse(psi, t) + s m(psi) [r_ellipse(psi, 0) - r_ellipse(psi, t)].

Volumes use the clinical area-length formula on that contour, V = 8 A_4 A_2 / (3 pi L) with A the cavity
area and L = r(0) + r(pi) the apex-to-base length; single-plane (EchoNet) uses A_2 = A_4. For a pure
ellipse this is exactly the prolate-ellipsoid volume 4/3 pi a^2 b.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CONTOUR_SAMPLES = 1024  # angles for areas and tracings; the polar area converges to ~1e-6 relative
SEGMENT_START, SEGMENT_END, SEGMENT_TAPER = np.radians(15.0), np.radians(140.0), np.radians(15.0)
EDV_PER_BSA = 68.0  # mL/m^2 at BSA 1 (adult indexed EDV)
EDV_EXPONENT = 1.3  # allometric exponent: children have smaller indexed volumes
LONG_AXIS_SHORTENING = 0.22  # kb = 0.22 EF/100 (about 13% at EF 60)
# Contraction is quantised to 1/32: the wall then moves by at most ~0.1 pixel per step at 112 px, and
# the renderer draws the anatomy once per level instead of once per frame.
CONTRACTION_LEVELS = 32


@dataclass(frozen=True)
class LVShape:
    """End-diastolic semi-axes (cm), axis shortening fractions, wall thickness (cm), two-chamber width ratio."""

    a0: float
    b0: float
    ka: float
    kb: float
    wall: float
    two_chamber_ratio: float = 1.0


def contour_angles(samples: int = CONTOUR_SAMPLES) -> np.ndarray:
    return np.linspace(0.0, 2.0 * np.pi, samples, endpoint=False)


def contraction(phase: np.ndarray, systolic_fraction: float) -> np.ndarray:
    """c in [0, 1] over one beat: fast ejection, rapid early filling, diastasis, atrial kick."""
    phase = np.mod(phase, 1.0)
    systole = phase < systolic_fraction
    ejection = 0.5 - 0.5 * np.cos(np.pi * np.clip(phase / systolic_fraction, 0, 1))
    u = (phase - systolic_fraction) / (1.0 - systolic_fraction)
    early = _smoothstep(u / 0.3)  # E wave: 75% of filling in the first 30% of diastole
    atrial = _smoothstep((u - 0.8) / 0.2)  # A wave: the rest at the end
    filling = 1.0 - 0.75 * early - 0.25 * atrial
    return np.where(systole, ejection, filling)


def quantise(c: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(c) * CONTRACTION_LEVELS) / CONTRACTION_LEVELS


def systolic_fraction(heart_rate: float) -> float:
    """Systole takes a larger share of the beat at higher heart rates."""
    return float(np.clip(0.30 + 0.0012 * (heart_rate - 60.0), 0.28, 0.45))


def segment_window(angles: np.ndarray) -> np.ndarray:
    """m(psi): 1 on the lateral wall from apex to base (15-140 degrees), raised-cosine tapers at its ends, 0 elsewhere."""
    rise = _cosine_ramp((angles - SEGMENT_START) / SEGMENT_TAPER)
    fall = _cosine_ramp((SEGMENT_END - angles) / SEGMENT_TAPER)
    return rise * fall


def ellipse_radius(angles: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Polar radius of the ellipse (u/a)^2 + (v/b)^2 = 1 at angle psi from the +v (apex) direction."""
    a, b = np.asarray(a)[..., None], np.asarray(b)[..., None]
    return 1.0 / np.sqrt((np.sin(angles) / a) ** 2 + (np.cos(angles) / b) ** 2)


def cavity_radius(shape: LVShape, c: np.ndarray, state: int, angles: np.ndarray, plane: str = "4CH") -> np.ndarray:
    """r(psi, t) in cm, shape (T, len(angles)). The lateral segment lies in the four-chamber plane only."""
    c = np.asarray(c, float)
    width = shape.a0 * (shape.two_chamber_ratio if plane == "2CH" else 1.0)
    radius = ellipse_radius(angles, width * (1 - shape.ka * c), shape.b0 * (1 - shape.kb * c))
    if state and plane == "4CH":
        diastolic = ellipse_radius(angles, width, shape.b0)
        radius = radius + segment_window(angles) * (diastolic - radius)
    return radius


def epicardial_radius(shape: LVShape, cavity: np.ndarray, diastolic_cavity: np.ndarray) -> np.ndarray:
    """The wall thickens by half of the endocardial inward motion (an akinetic wall does not thicken)."""
    return cavity + shape.wall + 0.5 * (diastolic_cavity - cavity)


def polar_area(radius: np.ndarray) -> np.ndarray:
    return 0.5 * np.mean(radius ** 2, axis=-1) * 2.0 * np.pi


def area_length_volume(area_4ch: np.ndarray, length: np.ndarray, area_2ch: np.ndarray | None = None) -> np.ndarray:
    """V = 8 A4 A2 / (3 pi L); single plane when ``area_2ch`` is None."""
    other = area_4ch if area_2ch is None else area_2ch
    return 8.0 * area_4ch * other / (3.0 * np.pi * length)


def volumes(shape: LVShape, c: np.ndarray, state: int, biplane: bool) -> np.ndarray:
    """LV volume (mL) at the contraction levels ``c`` with the segment in ``state``."""
    angles = contour_angles()
    radius = cavity_radius(shape, c, state, angles)
    length = radius[:, 0] + radius[:, CONTOUR_SAMPLES // 2]
    area_2ch = polar_area(cavity_radius(shape, c, 0, angles, "2CH")) if biplane else None
    return area_length_volume(polar_area(radius), length, area_2ch)


def ejection_fraction(edv: float, esv: float) -> float:
    return 100.0 * (edv - esv) / edv


def ef_by_state(shape: LVShape, c_ed: float, c_es: float, biplane: bool) -> tuple[float, float]:
    """EF (from the traced ED and ES frames) if the hidden segment moves normally (s=0) or is akinetic (s=1)."""
    results = []
    for state in (0, 1):
        edv, esv = volumes(shape, np.array([c_ed, c_es]), state, biplane)
        results.append(ejection_fraction(edv, esv))
    return results[0], results[1]


def design_shape(lean_bsa: float, ef_visible: float, rng: np.random.Generator) -> LVShape:
    """An LV whose EDV scales with lean body size and whose all-segments-normal EF is ``ef_visible``."""
    edv = EDV_PER_BSA * lean_bsa ** EDV_EXPONENT * float(np.exp(rng.normal(0, 0.12)))
    elongation = float(rng.uniform(1.7, 2.1))  # b0 / a0
    a0 = (3.0 * edv / (4.0 * np.pi * elongation)) ** (1.0 / 3.0)
    kb = float(np.clip(LONG_AXIS_SHORTENING * ef_visible / 100.0 + rng.normal(0, 0.01), 0.01, 0.3))
    # (1 - ka)^2 (1 - kb) = 1 - EF/100 makes the prolate ellipsoid eject exactly ef_visible at c = 1.
    ka = 1.0 - np.sqrt((1.0 - ef_visible / 100.0) / (1.0 - kb))
    return LVShape(a0=a0, b0=elongation * a0, ka=float(ka), kb=kb, wall=0.45 * a0,
                   two_chamber_ratio=float(rng.uniform(0.9, 1.1)))


def traced_frames(c: np.ndarray, frames_per_beat: float) -> tuple[int, int]:
    """ED = least contracted frame of the first beat, ES = most contracted frame after it in that beat."""
    beat = max(2, int(np.ceil(frames_per_beat)))
    ed = int(np.argmin(c[:beat]))
    es = ed + 1 + int(np.argmax(c[ed + 1: ed + beat]))
    return ed, es


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _cosine_ramp(x: np.ndarray) -> np.ndarray:
    return 0.5 - 0.5 * np.cos(np.pi * np.clip(x, 0.0, 1.0))
