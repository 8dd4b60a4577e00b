"""Synthetic fundus photographs with exact vessel masks, and the context a vessel model sees.

`synthetic_fundus` draws retina-like images: a circular field of view (FOV),
uneven illumination, a bright optic disc, a darker macula, and branching
vessel trees that leave the disc, curve, fork and thin out, with Gaussian
noise on top. The vessel mask is exact: a pixel is a vessel when its centre
lies within half the local vessel width of a vessel's centre line, which is
also where the image is darkened. Thin vessels are faint (their contrast
falls with width), so a good model must be uncertain about them: the data
reward calibration, as DRIVE does.

`fundus_context` turns any fundus image (synthetic, DRIVE, or the photograph
scikit-image ships) into the same normalized input: the green channel (the
one with the most vessel contrast) divided by its smoothed background,
standardized inside the FOV, plus the FOV itself as a second channel. The
FOV's edge band, darkened by blending with the black surround in real and
resized photographs, is filled from further inside so no ring appears there.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from jcnf._checks import check_int

# Sizes below are for a 64-pixel image and scale with the image size.
_REFERENCE_SIZE = 64.0
_FOV_RADIUS = 0.46          # of the image size
_DISC_OFFSET = 0.24         # disc centre from the image centre, of the size
_DISC_RADIUS = 0.075
_TRUNK_WIDTH = (2.2, 3.4)   # pixels at size 64
_MIN_WIDTH = 1.0            # vessels end below one pixel (at size 64)
_STEP = 1.0                 # centre-line step, pixels at size 64
_BRANCH_PROBABILITY = 0.06  # per step
_MAX_SEGMENTS = 4000        # per image: a hard stop for the recursion


def _grow_tree(rng: np.random.Generator, start: np.ndarray, angle: float, width: float, scale: float,
               centre: np.ndarray, fov_radius: float, segments: list) -> None:
    """Appends the segments (x0, y0, x1, y1, width) of one vessel and its branches."""
    stack = [(start.astype(np.float64), angle, width)]
    while stack and len(segments) < _MAX_SEGMENTS:
        position, angle, width = stack.pop()
        curvature = rng.normal(0.0, 0.02)
        for _ in range(int(200 * scale)):
            if width < _MIN_WIDTH * scale:
                break
            angle += curvature + rng.normal(0.0, 0.12)
            step = _STEP * scale * np.array([math.cos(angle), math.sin(angle)])
            following = position + step
            if np.linalg.norm(following - centre) > fov_radius:
                break
            segments.append((*position, *following, width))
            position = following
            width *= 0.993  # vessels thin slowly along their course
            if rng.uniform() < _BRANCH_PROBABILITY:
                side = rng.choice([-1.0, 1.0])
                stack.append((position.copy(), angle + side * rng.uniform(0.4, 1.1), width * rng.uniform(0.55, 0.8)))
                width *= 0.9
                angle -= side * rng.uniform(0.0, 0.25)


def _rasterize(segments: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact vessel mask and the vessels' distance and width maps from segments [n, 5].

    Returns:
      (mask [size, size] bool; distance-to-width ratio [size, size]: the
      smallest distance to a centre line divided by that vessel's half width,
      inf where no vessel is near; width [size, size] of that nearest vessel,
      0 where none is near).
    """
    ratio = np.full((size, size), np.inf)
    width_at = np.zeros((size, size))
    for x0, y0, x1, y1, width in segments:
        half = width / 2.0
        margin = 2.0 * half + 1.0  # the image's darkening reaches two half widths
        c0, c1 = int(max(0, math.floor(min(x0, x1) - margin))), int(min(size, math.ceil(max(x0, x1) + margin) + 1))
        r0, r1 = int(max(0, math.floor(min(y0, y1) - margin))), int(min(size, math.ceil(max(y0, y1) + margin) + 1))
        if c0 >= c1 or r0 >= r1:
            continue
        ys, xs = np.mgrid[r0:r1, c0:c1].astype(np.float64)
        dx, dy = x1 - x0, y1 - y0
        length2 = dx * dx + dy * dy
        t = np.clip(((xs - x0) * dx + (ys - y0) * dy) / max(length2, 1e-12), 0.0, 1.0)
        distance = np.hypot(xs - (x0 + t * dx), ys - (y0 + t * dy))
        local = distance / half
        window = ratio[r0:r1, c0:c1]
        closer = local < window
        window[closer] = local[closer]
        width_at[r0:r1, c0:c1][closer] = width
    return ratio <= 1.0, ratio, width_at


def _geometry(rng: np.random.Generator, size: int) -> dict:
    """One eye's layout: FOV centre and radius, the FOV mask [S, S], eye side, optic disc and macula."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    centre = np.array([size / 2.0, size / 2.0]) + rng.normal(0.0, 0.01 * size, 2)
    fov_radius = _FOV_RADIUS * size * rng.uniform(0.95, 1.03)
    side = rng.choice([-1.0, 1.0])  # left or right eye
    disc = centre + np.array([side * _DISC_OFFSET * size, rng.normal(0.0, 0.03 * size)])
    disc_radius = _DISC_RADIUS * size * rng.uniform(0.85, 1.2)
    macula = centre - np.array([side * 0.1 * size, 0.0]) + rng.normal(0.0, 0.02 * size, 2)
    return {"size": size, "xs": xs, "ys": ys, "centre": centre, "fov_radius": fov_radius,
            "fov": np.hypot(xs - centre[0], ys - centre[1]) <= fov_radius, "side": side, "disc": disc,
            "disc_radius": disc_radius, "macula": macula}


def _trunk_segments(rng: np.random.Generator, eye: dict) -> np.ndarray:
    """Centre-line segments [n, 5] (x0, y0, x1, y1, width) of the vessel trees leaving the optic disc."""
    scale = eye["size"] / _REFERENCE_SIZE
    side, disc, disc_radius = eye["side"], eye["disc"], eye["disc_radius"]
    segments: list = []
    # Trunks leave the disc up and down, arching towards the macula, plus
    # smaller ones towards the nasal side.
    base = math.pi if side > 0 else 0.0  # pointing towards the macula
    trunk_angles = [base - side * 1.25, base + side * 1.25, base - side * 2.3, base + side * 2.3]
    if rng.uniform() < 0.7:
        trunk_angles.append(base + math.pi + rng.normal(0.0, 0.4))
    for angle in trunk_angles:
        start = disc + 0.5 * disc_radius * np.array([math.cos(angle), math.sin(angle)])
        width = rng.uniform(*_TRUNK_WIDTH) * scale
        _grow_tree(rng, start, angle + rng.normal(0.0, 0.15), width, scale, eye["centre"], eye["fov_radius"],
                   segments)
    return np.asarray(segments, np.float64).reshape(-1, 5)


def _darkening(ratio: np.ndarray, width_map: np.ndarray, size: int) -> np.ndarray:
    """Relative darkening [S, S] of vessels with a Gaussian cross-section; thin ones are fainter."""
    # Thin vessels are fainter (partial-volume effect), which makes them uncertain.
    contrast = 0.55 * np.clip(width_map / (_TRUNK_WIDTH[1] * size / _REFERENCE_SIZE), 0.3, 1.0)
    return contrast * np.exp(-0.5 * (np.minimum(ratio, 10.0) / 1.0) ** 2)


def _render(rng: np.random.Generator, eye: dict, darkening: np.ndarray, noise_std: float) -> np.ndarray:
    """The RGB photograph [S, S, 3] of `eye` with vessels darkening it by `darkening` [S, S]."""
    xs, ys, centre, size = eye["xs"], eye["ys"], eye["centre"], eye["size"]
    macula, disc = eye["macula"], eye["disc"]
    # Background: reddish fundus, illumination falling off radially and
    # along a random gradient, a darker macula and a bright optic disc.
    radial = np.hypot(xs - centre[0], ys - centre[1]) / eye["fov_radius"]
    gradient_angle = rng.uniform(0.0, 2.0 * math.pi)
    gradient = ((xs - centre[0]) * math.cos(gradient_angle) + (ys - centre[1]) * math.sin(gradient_angle)) / size
    illumination = (1.0 - 0.35 * radial ** 2) * (1.0 + rng.uniform(0.2, 0.5) * gradient)
    illumination *= 1.0 - 0.25 * np.exp(-np.hypot(xs - macula[0], ys - macula[1]) ** 2 / (2 * (0.08 * size) ** 2))
    disc_profile = np.exp(-np.hypot(xs - disc[0], ys - disc[1]) ** 2 / (2 * eye["disc_radius"] ** 2))
    colour = np.array([0.78, 0.36, 0.16]) * rng.uniform(0.85, 1.15, 3)
    image = illumination[..., None] * colour + disc_profile[..., None] * np.array([0.2, 0.45, 0.35])
    image *= 1.0 - darkening[..., None] * np.array([0.45, 1.0, 0.8])
    image += rng.normal(0.0, noise_std, image.shape)
    return np.clip(image, 0.0, 1.0) * eye["fov"][..., None]


def synthetic_fundus(rng: np.random.Generator, num: int, size: int = 64, noise_std: float = 0.03
                     ) -> dict[str, np.ndarray]:
    """Draws `num` synthetic fundus images with exact vessel and FOV masks.

    Args:
      rng: a numpy Generator (the only source of randomness).
      num: number of images N.
      size: height and width S (>= 16).
      noise_std: standard deviation of the additive Gaussian pixel noise.

    Returns:
      {"image": [N, S, S, 3] float32 RGB in [0, 1] (black outside the FOV),
       "vessels": [N, S, S, 1] float32 in {0, 1} (0 outside the FOV),
       "fov": [N, S, S, 1] bool}.
    """
    check_int("num", num)
    check_int("size", size, 16)
    if not noise_std >= 0:
        raise ValueError(f"`noise_std` must be >= 0; got {noise_std}.")
    images, masks, fovs = [], [], []
    for _ in range(num):
        eye = _geometry(rng, size)
        mask, ratio, width_map = _rasterize(_trunk_segments(rng, eye), size)
        images.append(_render(rng, eye, _darkening(ratio, width_map, size), noise_std))
        masks.append(mask & eye["fov"])
        fovs.append(eye["fov"])
    return {"image": np.asarray(images, np.float32), "vessels": np.asarray(masks, np.float32)[..., None],
            "fov": np.asarray(fovs)[..., None]}


def _fill_from_interior(values: np.ndarray, interior: np.ndarray) -> np.ndarray:
    """`values` [H, W] with every pixel outside `interior` [H, W] set to its nearest interior pixel's value."""
    _, (rows, cols) = ndimage.distance_transform_edt(~interior, return_indices=True)
    return values[rows, cols]


def fundus_context(image: np.ndarray, fov: np.ndarray, background_sigma: float = 0.1, rim: float = 0.01
                   ) -> np.ndarray:
    """The normalized model input of fundus images: [N, H, W, 2] float32 (vesselness-ready green, FOV).

    The green channel is divided by its smoothed background (a Gaussian blur
    of width `background_sigma` times the image size), which removes uneven
    illumination; the result is standardized inside each image's FOV and set
    to 0 outside it.

    The FOV's outermost band (`rim`) is not trusted: in a real photograph
    (and in any resized one) the pixels along the FOV's edge blend with the
    black surround, so they are darker than their neighbours, as a vessel is,
    and a model would mark a ring there. Those pixels and everything outside
    the FOV take the value of their nearest pixel further inside before the
    blur and the division, so the FOV's edge makes neither a dark band nor a
    step in the background.

    Args:
      image: RGB images [N, H, W, 3], float in [0, 1] (or uint8, scaled here).
      fov: field-of-view masks [N, H, W, 1] (bool or {0, 1}).
      background_sigma: blur width of the background, as a fraction of the
        image's height.
      rim: width of the FOV's edge band that is replaced, as a fraction of the
        image's height (at least one pixel; 0 keeps every FOV pixel).

    Returns:
      [N, H, W, 2] float32: channel 0 the normalized green, channel 1 the FOV.
    """
    image = np.asarray(image)
    fov = np.asarray(fov)
    if image.ndim != 4 or image.shape[-1] != 3:
        raise ValueError(f"`image` must have shape [batch, height, width, 3]; got shape {image.shape}.")
    if fov.shape != image.shape[:3] + (1,):
        raise ValueError(f"`fov` must have shape {image.shape[:3] + (1,)} (the image's, one channel); "
                         f"got shape {fov.shape}.")
    if not 0.0 <= rim < 0.5:
        raise ValueError(f"`rim` must be in [0, 0.5) (a fraction of the image height); got {rim}.")
    if image.dtype == np.uint8:
        image = image.astype(np.float64) / 255.0
    fov = fov[..., 0].astype(bool)
    rim_pixels = 0 if rim == 0 else max(1, round(rim * image.shape[1]))
    outputs = []
    for green, inside in zip(image[..., 1].astype(np.float64), fov, strict=False):
        if not inside.any():
            raise ValueError("`fov` selects no pixel of an image; every image needs a non-empty field of view.")
        # The FOV eroded by `rim_pixels` with a 3x3 square, so a pixel touching
        # the outside only diagonally (cut by the edge at a corner) counts as
        # edge too; beyond the image is outside. A FOV too thin to keep any
        # pixel falls back to the whole FOV.
        interior = (ndimage.binary_erosion(inside, np.ones((3, 3), bool), iterations=rim_pixels, border_value=0)
                    if rim_pixels else inside)
        filled = _fill_from_interior(green, interior if interior.any() else inside)
        background = ndimage.gaussian_filter(filled, background_sigma * green.shape[0], mode="nearest")
        ratio = filled / np.maximum(background, 1e-3)
        values = ratio[inside]
        normalized = (ratio - values.mean()) / max(values.std(), 1e-6)
        outputs.append(np.where(inside, normalized, 0.0))
    return np.stack([np.asarray(outputs), fov.astype(np.float64)], axis=-1).astype(np.float32)


def random_crops(rng: np.random.Generator, arrays: dict[str, np.ndarray], crop: int, num: int
                 ) -> dict[str, np.ndarray]:
    """`num` random square crops [num, crop, crop, ...] taken at the same places from every array.

    Args:
      rng: numpy Generator.
      arrays: {name: [N, H, W, ...]} with equal N, H, W.
      crop: crop size (<= H and W).
      num: number of crops.
    """
    if not arrays:
        raise ValueError("`arrays` must be a non-empty dict of [N, H, W, ...] arrays; got an empty dict.")
    check_int("crop", crop)
    check_int("num", num)
    shapes = {name: array.shape[:3] for name, array in arrays.items()}
    first = next(iter(shapes.values()))
    if any(shape != first for shape in shapes.values()):
        raise ValueError(f"`arrays` must share [N, H, W]; got {shapes}.")
    count, height, width = first
    if not 1 <= crop <= min(height, width):
        raise ValueError(f"`crop` must be in [1, {min(height, width)}] (the images' size); got {crop}.")
    index = rng.integers(0, count, num)
    rows = rng.integers(0, height - crop + 1, num)
    cols = rng.integers(0, width - crop + 1, num)
    return {name: _windows(array, crop)[index, rows, cols] for name, array in arrays.items()}


def _windows(array: np.ndarray, crop: int) -> np.ndarray:
    """Every crop x crop window of [N, H, W, ...] as a view [N, H - crop + 1, W - crop + 1, crop, crop, ...].

    Fancy-indexing this view by (image, row, column) gathers whole windows
    in one copy, faster than one slice per crop or one index per pixel.
    """
    view = np.lib.stride_tricks.sliding_window_view(array, (crop, crop), axis=(1, 2))
    # sliding_window_view puts the window axes last; move them behind the positions.
    return np.moveaxis(view, (-2, -1), (3, 4))
