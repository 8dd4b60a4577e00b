"""Synthetic fundus images whose vessel label is a known, structured random draw: several annotators.

Human annotators of retinal vessels disagree in structured ways: a faint
capillary is marked by one and not by another as a whole, and where one
traces a vessel wider, the whole stretch is wider. `structured_fundus`
draws images with such a label distribution p(y | x), known exactly:

* The vessel trees of `jcnf.data.fundus` are cut into segments of a few
  pixels; each annotator draws every segment's width independently from
  `WIDTH_SCALES` times its own width (uniformly).
* Faint capillaries leave the trees; capillary k is present in an
  annotation with its own probability p_k, as a whole (with a drawn width
  too). The photograph shows it with a contrast proportional to p_k, so
  the image says how likely it is, not whether it is there.

An annotation is the union of the present segments' masks. Every segment
draws independently, so the label is a known mixture: its pixels are
dependent (a capillary's pixels appear together), and no product of
per-pixel marginals equals it. `exact_label_distribution` enumerates it on
a small crop.
"""

from __future__ import annotations

import math

import numpy as np

from jcnf._checks import check_int
from jcnf.data.fundus import _REFERENCE_SIZE, _darkening, _geometry, _rasterize, _render, _trunk_segments

WIDTH_SCALES = (0.7, 1.0, 1.4)  # an annotator's width of a segment, times the segment's own width
_PIECE_STEPS = 8                # centre-line steps per vessel segment (~8 pixels at size 64)
_CAPILLARY_STEPS = (10, 18)     # length of a capillary, pixels at size 64
_CAPILLARY_WIDTH = (1.2, 1.6)   # pixels at size 64
_CAPILLARY_CONTRAST = 1.6       # image darkening of a capillary, times its presence probability


def _pieces(segments: np.ndarray) -> list[np.ndarray]:
    """Splits centre-line steps [n, 5] into runs of consecutive, connected steps of at most `_PIECE_STEPS`."""
    pieces, current = [], []
    for step in segments:
        if current and (len(current) == _PIECE_STEPS or not np.allclose(current[-1][2:4], step[:2])):
            pieces.append(np.asarray(current))
            current = []
        current.append(step)
    if current:
        pieces.append(np.asarray(current))
    return pieces


def _capillary(rng: np.random.Generator, eye: dict, trunks: np.ndarray) -> np.ndarray:
    """Centre-line steps [n, 5] of one capillary leaving a random point of the trees at a random angle."""
    scale = eye["size"] / _REFERENCE_SIZE
    position = trunks[rng.integers(len(trunks)), 2:4].copy()
    angle, curvature = rng.uniform(0.0, 2.0 * math.pi), rng.normal(0.0, 0.08)
    width = rng.uniform(*_CAPILLARY_WIDTH) * scale
    steps = []
    for _ in range(int(rng.uniform(*_CAPILLARY_STEPS) * scale)):
        angle += curvature + rng.normal(0.0, 0.1)
        following = position + scale * np.array([math.cos(angle), math.sin(angle)])
        if np.linalg.norm(following - eye["centre"]) > eye["fov_radius"]:
            break
        steps.append((*position, *following, width))
        position = following
    return np.asarray(steps, np.float64).reshape(-1, 5)


def _check_presence(presence: np.ndarray) -> np.ndarray:
    presence = np.asarray(presence, np.float64)
    if presence.ndim != 1 or not np.all((presence >= 0.0) & (presence <= 1.0)):
        raise ValueError(f"`presence` must be a vector [parts] of probabilities in [0, 1]; got {presence}.")
    return presence


def vessel_scene(rng: np.random.Generator, size: int = 64, capillaries: int = 6,
                 presence_range: tuple[float, float] = (0.15, 0.85), noise_std: float = 0.03) -> dict:
    """One photograph and its label distribution, as segment masks and presence probabilities.

    Args:
      rng: a numpy Generator (the only source of randomness).
      size: height and width S (>= 16).
      capillaries: faint capillaries K (>= 0).
      presence_range: (low, high) in [0, 1]; each capillary's presence
        probability is uniform in it.
      noise_std: standard deviation of the photograph's pixel noise.

    Returns:
      {"image": [S, S, 3] float RGB in [0, 1], "fov": [S, S] bool,
       "part_masks": [J, len(WIDTH_SCALES), S, S] bool, segment j's mask at
       each width (inside the FOV), "presence": [J] probabilities (1 for the
       trees' segments), "capillary": [J] bool (the last K parts)}.
    """
    check_int("size", size, 16)
    check_int("capillaries", capillaries, 0)
    low, high = presence_range
    if not 0.0 <= low <= high <= 1.0:
        raise ValueError(f"`presence_range` must be (low, high) with 0 <= low <= high <= 1; got {presence_range}.")
    eye = _geometry(rng, size)
    trunks = _trunk_segments(rng, eye)
    tiny = [_capillary(rng, eye, trunks) for _ in range(capillaries)]
    probability = rng.uniform(low, high, capillaries)
    _, ratio, width_map = _rasterize(trunks, size)
    darkening = _darkening(ratio, width_map, size)
    for steps, p in zip(tiny, probability, strict=True):
        _, ratio, width_map = _rasterize(steps, size)
        darkening = np.maximum(darkening, _CAPILLARY_CONTRAST * p * _darkening(ratio, width_map, size))
    image = _render(rng, eye, darkening, noise_std)
    parts = _pieces(trunks) + tiny
    masks = np.zeros((len(parts), len(WIDTH_SCALES), size, size), bool)
    for j, steps in enumerate(parts):
        for w, width_scale in enumerate(WIDTH_SCALES):
            masks[j, w] = _rasterize(steps * np.array([1, 1, 1, 1, width_scale]), size)[0] & eye["fov"]
    return {"image": image, "fov": eye["fov"], "part_masks": masks,
            "presence": np.concatenate([np.ones(len(parts) - capillaries), probability]),
            "capillary": np.arange(len(parts)) >= len(parts) - capillaries}


def annotate(rng: np.random.Generator, part_masks: np.ndarray, presence: np.ndarray, num: int) -> np.ndarray:
    """`num` independent annotations [num, H, W] bool: each part present with its probability, at a uniform width.

    Args:
      rng: numpy Generator.
      part_masks: [J, widths, H, W] bool, each part's mask at each width.
      presence: [J] presence probabilities in [0, 1].
      num: annotations to draw.
    """
    presence = _check_presence(presence)
    check_int("num", num)
    if part_masks.ndim != 4 or part_masks.shape[0] != presence.shape[0]:
        raise ValueError(f"`part_masks` must have shape [{presence.shape[0]}, widths, H, W]; got {part_masks.shape}.")
    present = rng.uniform(size=(num, presence.shape[0])) < presence
    width = rng.integers(0, part_masks.shape[1], (num, presence.shape[0]))
    parts = np.arange(presence.shape[0])
    return np.stack([np.any(part_masks[parts, width[i]] & present[i, :, None, None], axis=0) for i in range(num)])


def exact_label_distribution(part_masks: np.ndarray, presence: np.ndarray, max_labels: int = 1 << 16
                             ) -> tuple[np.ndarray, np.ndarray]:
    """Every distinct annotation of `annotate`'s distribution and its probability, by enumeration.

    Parts are folded in one at a time and equal labels merged, so the work
    grows with the number of distinct labels, not of configurations: use it
    on a crop (part_masks[..., rows, cols]) a few segments cross.

    Args:
      part_masks: [J, widths, H, W] bool.
      presence: [J] presence probabilities in [0, 1].
      max_labels: the most distinct labels allowed along the way.

    Returns:
      labels [C, H, W] bool and their probabilities [C] (summing to 1).
    """
    presence = _check_presence(presence)
    if part_masks.ndim != 4 or part_masks.shape[0] != presence.shape[0]:
        raise ValueError(f"`part_masks` must have shape [{presence.shape[0]}, widths, H, W]; got {part_masks.shape}.")
    shape = part_masks.shape[2:]
    labels = {np.zeros(shape, bool).tobytes(): 1.0}
    for masks, p in zip(part_masks, presence, strict=True):
        if not masks.any():
            continue
        options = [(np.zeros(shape, bool), 1.0 - p)] + [(mask, p / len(masks)) for mask in masks]
        options = [(mask, weight) for mask, weight in options if weight > 0]  # certain parts: no empty label
        folded: dict[bytes, float] = {}
        for key, probability in labels.items():
            label = np.frombuffer(key, bool).reshape(shape)
            for mask, weight in options:
                union = (label | mask).tobytes()
                folded[union] = folded.get(union, 0.0) + probability * weight
        if len(folded) > max_labels:
            raise ValueError(f"the crop has more than `max_labels`={max_labels} distinct labels; use a smaller crop.")
        labels = folded
    keys = list(labels)
    return (np.stack([np.frombuffer(key, bool).reshape(shape) for key in keys]),
            np.array([labels[key] for key in keys]))


def structured_fundus(rng: np.random.Generator, num: int, size: int = 64, annotators: int = 3,
                      capillaries: int = 6, presence_range: tuple[float, float] = (0.15, 0.85),
                      noise_std: float = 0.03) -> dict[str, np.ndarray]:
    """Draws `num` photographs, each with `annotators` independent annotations of its label distribution.

    Args:
      rng: numpy Generator.
      num: images N.
      size: height and width S (>= 16).
      annotators: annotations A per image (>= 2: one to score against, a second to compare with).
      capillaries: faint capillaries K per image.
      presence_range: (low, high) in [0, 1] of the capillaries' presence probabilities.
      noise_std: standard deviation of the pixel noise.

    Returns:
      {"image": [N, S, S, 3] float32, "fov": [N, S, S, 1] bool,
       "vessels": [N, A, S, S, 1] float32 in {0, 1},
       "capillary_presence": [N, K] the capillaries' presence probabilities,
       "capillary_cores": [N, K, S, S] bool, the pixels of capillary k at its
       narrowest width that no other part covers at its widest: an annotation
       holds the capillary exactly when it marks these pixels}.
    """
    check_int("num", num)
    check_int("annotators", annotators, 2)
    out = {"image": [], "fov": [], "vessels": [], "capillary_presence": [], "capillary_cores": []}
    for _ in range(num):
        scene = vessel_scene(rng, size, capillaries, presence_range, noise_std)
        masks, capillary = scene["part_masks"], scene["capillary"]
        widest = masks[:, -1]
        cores = []
        for j in np.flatnonzero(capillary):
            others = np.any(np.delete(widest, j, axis=0), axis=0)
            cores.append(masks[j, 0] & ~others)
        out["image"].append(scene["image"])
        out["fov"].append(scene["fov"][..., None])
        out["vessels"].append(annotate(rng, masks, scene["presence"], annotators)[..., None])
        out["capillary_presence"].append(scene["presence"][capillary])
        out["capillary_cores"].append(np.asarray(cores, bool).reshape(capillaries, size, size))
    return {"image": np.asarray(out["image"], np.float32), "fov": np.asarray(out["fov"]),
            "vessels": np.asarray(out["vessels"], np.float32),
            "capillary_presence": np.asarray(out["capillary_presence"]),
            "capillary_cores": np.asarray(out["capillary_cores"])}
