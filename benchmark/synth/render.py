"""Image formation: an apical sector with four chambers, speckle, attenuation, gain, quality, occlusion.

Everything is vectorised over (frames, rows, columns) in float32. Reflectivity is built from the
chambers (bright myocardium, dark blood, mid-grey surrounding tissue), then multiplied by a Rayleigh
speckle envelope that is spatially coarse (the resolution cell, wider laterally) and AR(1)-correlated
from frame to frame, depth attenuation left over after time-gain compensation, overall gain, and, when
the case is ambiguous, an acoustic shadow or a dropout over the lateral wall that blanks its anatomy and
dims the echo. Log compression maps the
echo amplitude to 8-bit grey.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from . import anatomy

RENDER_ANGLES = 360  # contour angle table used per pixel (1 degree)
SECTOR_HALF_ANGLE = np.radians(38.0)
BLOOD, MYOCARDIUM, TISSUE, THIN_WALL = 0.008, 0.5, 0.12, 0.4
COMPRESSION, ECHO_RANGE = 12.0, 1.1  # log compression: grey = 255 log(1 + k x) / log(1 + k ECHO_RANGE)
# The compression is applied as a lookup table over 4096 amplitude steps (much cheaper than log1p).
GREY_LEVELS = np.round(255.0 * np.log1p(COMPRESSION * np.linspace(0.0, ECHO_RANGE, 4096))
                       / np.log1p(COMPRESSION * ECHO_RANGE)).astype(np.uint8)
OCCLUSION_LEVEL = 0.04  # residual echo inside a shadow or dropout
OCCLUSION_MARGIN = 0.35  # cm added around the hidden segment's swept region


@dataclass(frozen=True)
class Quality:
    contrast: float  # scales reflectivity differences around the tissue level
    clutter: float  # additive haze (reverberation, near-field clutter)
    speckle_exponent: float  # >1 makes the speckle harsher
    temporal_correlation: float  # AR(1) coefficient of the speckle field between frames


QUALITIES = {
    "Good": Quality(contrast=1.0, clutter=0.004, speckle_exponent=1.0, temporal_correlation=0.75),
    "Medium": Quality(contrast=0.85, clutter=0.012, speckle_exponent=1.15, temporal_correlation=0.65),
    "Poor": Quality(contrast=0.7, clutter=0.03, speckle_exponent=1.3, temporal_correlation=0.55),
}


@dataclass(frozen=True)
class Scene:
    """One view of one patient, in everything the renderer needs; built by ``generate``."""

    height: int
    width: int
    px_per_cm: float
    apex_depth: float  # fraction of the sector radius
    apex_offset: float  # lateral offset of the apex, fraction of the sector radius
    tilt: float  # radians between the long axis and the vertical
    shape: anatomy.LVShape
    contraction: np.ndarray  # c per frame
    hidden_state: int
    plane: str  # "4CH" or "2CH"
    quality: str
    gain: float
    attenuation: float  # residual attenuation over the full depth (nepers)
    occlusion: str  # "", "shadow" or "dropout"
    noise_seed: int


class Geometry:
    """Pixel coordinates in the LV frame: ``u`` lateral (toward the lateral wall), ``v`` toward the apex."""

    def __init__(self, scene: Scene):
        self.scene = scene
        height, width = scene.height, scene.width
        self.radius_px = 0.97 * height
        self.origin = np.array([width / 2.0, -0.02 * height])
        self.apex = self.origin + self.radius_px * np.array([scene.apex_offset, scene.apex_depth])
        self.e_v = np.array([-np.sin(scene.tilt), -np.cos(scene.tilt)])
        self.e_u = np.array([np.cos(scene.tilt), -np.sin(scene.tilt)])
        if scene.plane == "2CH":
            self.e_u = -self.e_u  # the 2-chamber plane shows the LV from the other side: walls swap
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
        dx, dy = xs - self.apex[0], ys - self.apex[1]
        self.u = (dx * self.e_u[0] + dy * self.e_u[1]) / scene.px_per_cm  # cm
        self.v = (dx * self.e_v[0] + dy * self.e_v[1]) / scene.px_per_cm  # cm, apex at 0, negative inside
        tx, ty = xs - self.origin[0], ys - self.origin[1]
        self.depth = np.hypot(tx, ty) / self.radius_px  # 0 at the transducer, 1 at the sector's far edge
        self.bearing = np.arctan2(tx, ty)

    def sector(self) -> np.ndarray:
        edge = np.clip((SECTOR_HALF_ANGLE - np.abs(self.bearing)) / np.radians(1.5), 0, 1)
        return (edge * (self.depth < 1.0)).astype(np.float32)

    def to_pixels(self, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """LV-frame cm (v measured from the apex) to image x, y."""
        scale = self.scene.px_per_cm
        x = self.apex[0] + scale * (u * self.e_u[0] + v * self.e_v[0])
        y = self.apex[1] + scale * (u * self.e_u[1] + v * self.e_v[1])
        return x, y


def lv_contours(scene: Scene, angles: np.ndarray, state: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cavity and epicardial radii (T, K) in cm, and the centre's distance below the apex b(t) (T,)."""
    shape, c = scene.shape, scene.contraction
    cavity = anatomy.cavity_radius(shape, c, state, angles, scene.plane)
    diastolic = anatomy.cavity_radius(shape, np.zeros(1), 0, angles, scene.plane)
    epicardium = anatomy.epicardial_radius(shape, cavity, diastolic)
    return cavity, epicardium, shape.b0 * (1 - shape.kb * c)


def contour_pixels(scene: Scene, frame: int, samples: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """The endocardial contour of one frame in image pixels (x, y), starting at the apex."""
    angles = anatomy.contour_angles(samples)
    cavity, _, centre = lv_contours(scene, angles, scene.hidden_state)
    u = cavity[frame] * np.sin(angles)
    v = cavity[frame] * np.cos(angles) - centre[frame]
    return Geometry(scene).to_pixels(u, v)


def render(scene: Scene, with_labels: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """Frames (T, H, W) uint8 and, when asked, labels (T, H, W) uint8: 1 LV cavity, 2 LV wall, 3 LA.

    The anatomy depends on time only through the contraction level, which ``generate`` quantises
    (``anatomy.CONTRACTION_LEVELS``), so it is drawn once per distinct level and gathered per frame.
    """
    geometry = Geometry(scene)
    quality = QUALITIES[scene.quality]
    levels, frame_level = np.unique(scene.contraction, return_inverse=True)
    reflect = np.full((len(levels), scene.height, scene.width), TISSUE, np.float32)
    labels = np.zeros(reflect.shape, np.uint8) if with_labels else None
    _draw_other_chambers(scene, geometry, levels, reflect, labels)
    _draw_left_ventricle(scene, geometry, levels, reflect, labels)
    clutter = quality.clutter * (1.0 + 2.0 * np.exp(-geometry.depth / 0.15))
    reflect = TISSUE + quality.contrast * (reflect - TISSUE) + clutter
    system = scene.gain * np.exp(-scene.attenuation * geometry.depth) * geometry.sector()
    if scene.occlusion:
        hidden = _occluded(scene, geometry)
        # Log compression turns a dimmed wall into a darker but equally contrasted one, so the wedge does
        # not only attenuate: its anatomy is replaced by featureless tissue echo, and no trace of the
        # segment's motion reaches the image (the oracle's posterior assumes exactly that).
        reflect = reflect * (1.0 - hidden) + TISSUE * hidden
        system = system * (1.0 - (1.0 - OCCLUSION_LEVEL) * hidden)
    echo = _speckle(scene, quality, np.random.default_rng(scene.noise_seed))
    echo *= reflect[frame_level]
    echo *= (system * (len(GREY_LEVELS) - 1) / ECHO_RANGE).astype(np.float32)
    np.minimum(echo, len(GREY_LEVELS) - 1, out=echo)
    frames = GREY_LEVELS[echo.astype(np.uint16)]
    return frames, (labels[frame_level] if with_labels else None)


def _draw_left_ventricle(scene, geometry, levels, reflect, labels) -> None:
    angles = anatomy.contour_angles(RENDER_ANGLES)
    level_scene = dataclasses.replace(scene, contraction=levels)
    cavity, epicardium, centre = lv_contours(level_scene, angles, scene.hidden_state)
    extent = scene.shape.b0 + scene.shape.wall + 0.3
    rows, cols = _bounding_box(geometry, -2 * extent, 0.5, extent)
    u = geometry.u[rows, cols][None]
    v = geometry.v[rows, cols][None] + centre[:, None, None].astype(np.float32)
    radius = np.hypot(u, v)
    index = (np.mod(np.arctan2(u, v), 2 * np.pi) * (RENDER_ANGLES / (2 * np.pi))).astype(np.int32) % RENDER_ANGLES
    level = np.arange(len(levels))[:, None, None]
    inside_cavity = radius < cavity.astype(np.float32)[level, index]
    inside_wall = (radius < epicardium.astype(np.float32)[level, index]) & ~inside_cavity
    box = reflect[:, rows, cols]
    box[inside_wall] = MYOCARDIUM
    box[inside_cavity] = BLOOD
    if labels is not None:
        label_box = labels[:, rows, cols]
        label_box[inside_wall] = 2
        label_box[inside_cavity] = 1


def _draw_other_chambers(scene, geometry, levels, reflect, labels) -> None:
    """RV and RA (4-chamber plane only) and LA as thin-walled ellipses that move with the cycle."""
    shape, c = scene.shape, levels.astype(np.float32)[:, None, None]
    a0, b0, wall = shape.a0, shape.b0, shape.wall
    base = 2 * b0 * (1 - shape.kb * c)  # apex-to-base distance per level
    atrial_axes = (0.85 * a0, 0.42 * b0)
    chambers = [("LA", 0.1 * a0, -(base + 0.5 * wall + atrial_axes[1]), atrial_axes, 1 + 0.25 * c)]
    if scene.plane == "4CH":
        rv_u = -(a0 + wall + 0.62 * a0 + 0.12)
        chambers += [("RV", rv_u, np.float32(-0.95 * b0), (0.62 * a0, 0.8 * b0), 1 - 0.2 * c),
                     ("RA", rv_u - 0.1 * a0, -(base + 0.5 * wall + 0.4 * b0), (0.75 * a0, 0.4 * b0), 1 + 0.2 * c)]
    thickness = 0.35 * wall
    cavities = []
    for name, centre_u, centre_v, (half_width, half_length), scale in chambers:
        half_width, half_length = half_width * np.sqrt(scale), half_length * np.sqrt(scale)
        reach_u, reach_v = float(half_width.max()) + thickness, float(half_length.max()) + thickness
        mid_v = np.asarray(centre_v, np.float32)
        rows, cols = _bounding_box(geometry, float(mid_v.min()) - reach_v, float(mid_v.max()) + reach_v,
                                   abs(centre_u) + reach_u)
        u, v = geometry.u[rows, cols][None], geometry.v[rows, cols][None]
        du2, dv2 = (u - centre_u) ** 2, (v - centre_v) ** 2
        box = reflect[:, rows, cols]
        box[du2 / (half_width + thickness) ** 2 + dv2 / (half_length + thickness) ** 2 < 1] = THIN_WALL
        cavities.append((name, rows, cols, du2 / half_width ** 2 + dv2 / half_length ** 2 < 1))
    for name, rows, cols, inside in cavities:  # after every wall, so a neighbour's wall never covers blood
        reflect[:, rows, cols][inside] = BLOOD
        if labels is not None and name == "LA":
            labels[:, rows, cols][inside] = 3


def _bounding_box(geometry: Geometry, v_low: float, v_high: float, u_half: float) -> tuple[slice, slice]:
    """Rows and columns covering |u| <= u_half, v_low <= v <= v_high (cm), clipped to the image."""
    inside = (np.abs(geometry.u) <= u_half) & (geometry.v >= v_low) & (geometry.v <= v_high)
    rows, cols = np.nonzero(inside.any(axis=1))[0], np.nonzero(inside.any(axis=0))[0]
    if not len(rows):
        return slice(0, 0), slice(0, 0)
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def _speckle(scene: Scene, quality: Quality, rng: np.random.Generator) -> np.ndarray:
    """Rayleigh envelope (mean 1) of a complex Gaussian field, coarse laterally, AR(1) over frames."""
    import cv2

    frames = len(scene.contraction)
    cell = max(2.0, scene.height / 56.0)  # axial resolution cell in pixels
    rows, cols = int(np.ceil(scene.height / cell)), int(np.ceil(scene.width / (1.7 * cell)))
    field = rng.standard_normal((frames, rows, cols, 2), dtype=np.float32).view(np.complex64)[..., 0]
    rho, innovation = np.float32(quality.temporal_correlation), np.float32(np.sqrt(1 - quality.temporal_correlation ** 2))
    for frame in range(1, frames):  # AR(1): unit variance at every frame, correlation rho to the previous
        field[frame] = rho * field[frame - 1] + innovation * field[frame]
    envelope = np.abs(field) / np.float32(np.sqrt(np.pi) / 2)
    if quality.speckle_exponent != 1.0:
        envelope **= np.float32(quality.speckle_exponent)
    resized = np.empty((frames, scene.height, scene.width), np.float32)
    for frame in range(frames):
        cv2.resize(envelope[frame], (scene.width, scene.height), dst=resized[frame], interpolation=cv2.INTER_LINEAR)
    return resized


def _occluded(scene: Scene, geometry: Geometry) -> np.ndarray:
    """1 in a wedge of beams over the lateral wall's swept region, from just above it (dropout: through it;
    shadow: to the far edge), 0 outside, soft at its edges. It covers the wall in both hidden states over
    the whole cycle."""
    angles = anatomy.contour_angles(RENDER_ANGLES)
    window = anatomy.segment_window(angles) > 0
    points_u, points_v = [], []
    for state in (0, 1):
        cavity, epicardium, centre = lv_contours(scene, angles, state)
        for radius in (cavity, epicardium):
            points_u.append((radius * np.sin(angles))[:, window].ravel())
            points_v.append((radius * np.cos(angles) - centre[:, None])[:, window].ravel())
    x, y = geometry.to_pixels(np.concatenate(points_u), np.concatenate(points_v))
    tx, ty = x - geometry.origin[0], y - geometry.origin[1]
    bearing, depth = np.arctan2(tx, ty), np.hypot(tx, ty) / geometry.radius_px
    margin = OCCLUSION_MARGIN * scene.px_per_cm / geometry.radius_px
    angular_margin = margin / max(depth.min(), 0.05)
    low, high = bearing.min() - angular_margin, bearing.max() + angular_margin
    near, far = depth.min() - margin, (depth.max() + margin if scene.occlusion == "dropout" else 10.0)
    soft = np.radians(1.0)
    # Fully occluded inside the box, with soft edges just outside it.
    inside = (np.clip(1 + (geometry.bearing - low) / soft, 0, 1) * np.clip(1 + (high - geometry.bearing) / soft, 0, 1)
              * np.clip(1 + (geometry.depth - near) / 0.02, 0, 1) * np.clip(1 + (far - geometry.depth) / 0.02, 0, 1))
    return inside.astype(np.float32)
