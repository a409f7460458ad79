"""Labels come from the rendered geometry: EF measured on the traced contour and on the video pixels."""
import numpy as np
import pandas as pd
import pytest

from benchmark.synth.generate import generate


@pytest.fixture(scope="module")
def noiseless(tmp_path_factory):
    # No label noise and no hidden wall: the label is exactly the area-length EF of the traced frames.
    return generate("echonet_pediatric", 16, tmp_path_factory.mktemp("synth") / "noiseless", seed=3,
                    ambiguous_fraction=0.0, label_noise=0.0) / "A4C"


def _traced(folder):
    files = pd.read_csv(folder / "FileList.csv")
    tracings = pd.read_csv(folder / "VolumeTracings.csv", dtype={"Frame": str})
    tracings = tracings[tracings["Frame"].str.isdigit()]  # "No Systolic" rows have no points
    for name, ef in zip(files["FileName"], files["EF"]):
        frames = {int(f): rows for f, rows in tracings[tracings["FileName"] == name].groupby("Frame")}
        if len(frames) == 2:
            yield name, ef, frames


def _area_length(area, length):
    return 8 * area ** 2 / (3 * np.pi * length)


def _ef(volumes):
    small, large = sorted(volumes)
    return 100 * (large - small) / large


def test_traced_contours_give_the_label(noiseless):
    # A 42-point polygon inscribed in the contour loses < 0.5% of its area; EF moves by far less.
    for name, ef, frames in _traced(noiseless):
        volumes = []
        for rows in frames.values():
            x, y = rows["X"].to_numpy(), rows["Y"].to_numpy()
            area = 0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1)))
            length = np.hypot(x[0] - x[len(x) // 2], y[0] - y[len(y) // 2])  # apex to base
            volumes.append(_area_length(area, length))
        assert abs(_ef(volumes) - ef) < 0.5, name


def _segment_cavity(image, x, y):
    """Dark LV cavity around the traced centre: Otsu threshold near the LV, speckle bridges opened."""
    import cv2
    from scipy import ndimage

    smooth = cv2.GaussianBlur(image, (0, 0), 1.0)
    rows = slice(int(max(y.min() - 15, 0)), int(y.max() + 15))
    cols = slice(int(max(x.min() - 15, 0)), int(x.max() + 15))
    threshold, _ = cv2.threshold(smooth[rows, cols], 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    components, _ = ndimage.label(ndimage.binary_opening(smooth < threshold, np.ones((3, 3))))
    cavity = ndimage.binary_fill_holes(components == components[int(round(y.mean())), int(round(x.mean()))])
    ys, xs = np.nonzero(cavity)
    points = np.stack([xs, ys], 1) - [xs.mean(), ys.mean()]
    axis = np.linalg.eigh(points.T @ points)[1][:, -1]
    projection = points @ axis
    return _area_length(cavity.sum(), projection.max() - projection.min() + 1)


def test_ef_measured_on_the_rendered_cavity_matches_the_label(noiseless):
    import decord

    errors = []
    for name, ef, frames in _traced(noiseless):
        video = decord.VideoReader(str(noiseless / "Videos" / name))
        volumes = [_segment_cavity(video[frame].asnumpy()[..., 0], rows["X"].to_numpy(), rows["Y"].to_numpy())
                   for frame, rows in frames.items()]
        errors.append(_ef(volumes) - ef)
    errors = np.abs(errors)
    # Segmenting a speckled, JPEG-compressed 112-px frame misplaces the boundary by about a pixel: on an
    # end-systolic cavity 6-12 px wide that is a few EF points, i.e. the size of the default label noise
    # (3). On Poor-quality videos (15%) the hazy cavity defeats this crude threshold segmenter now and then
    # (outliers of 10-50 points, where it leaks through the wall), so the test bounds the median and the
    # share within 5 points, not the maximum. Over seeds 0-6 the median was 1.1-2.1 and the share 0.69-1.
    assert len(errors) >= 12
    assert np.median(errors) <= 3.0, errors
    assert np.mean(errors <= 5.0) >= 0.65, errors


def test_tracings_outline_the_dark_cavity_inside_the_bright_wall(noiseless):
    import cv2
    import decord

    for name, _, frames in _traced(noiseless):
        video = decord.VideoReader(str(noiseless / "Videos" / name))
        for frame, rows in frames.items():
            image = video[frame].asnumpy()[..., 0].astype(float)
            cavity = np.zeros(image.shape, np.uint8)
            polygon = np.round(np.stack([rows["X"], rows["Y"]], 1) * 8).astype(np.int32)
            cv2.fillPoly(cavity, [polygon], 1, shift=3)
            inner = cv2.erode(cavity, np.ones((3, 3), np.uint8)).astype(bool)
            wall = (cv2.dilate(cavity, np.ones((7, 7), np.uint8)) - cv2.dilate(cavity, np.ones((3, 3), np.uint8))) > 0
            assert image[inner].mean() + 20 < image[wall].mean(), (name, frame)
