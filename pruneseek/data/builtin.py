"""The built-in dataset: real photographs that ship inside installed packages (docs/design.md §8), no download.

Sources: scikit-image's ``skimage/data`` folder, scikit-learn's ``sklearn/datasets/images`` and
matplotlib's ``mpl-data/sample_data``. The split is fixed and disjoint (docs/design.md §8):

- ``held_out`` (the test set every reported number comes from): a portrait, a natural scene, a gray
  texture and a gray photograph of coins;
- ``validation`` (for anything that selects: a strategy's candidate race, tuning): a flower close-up and a
  gray micrograph;
- ``train`` (teacher training, calibration data of searches, recovery, retraining): the other thirteen.

``motorcycle_right`` is in none: it is the stereo twin of the training image ``motorcycle_left``, so
evaluating on it would leak training content. Synthetic pictures (logos, phantoms, chessboards, text
renderings) are left out of every split.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

from pruneseek.data.images import DataError

#: name → (package, folder inside the package, file name)
SOURCES: dict[str, tuple[str, str, str]] = {
    "astronaut": ("skimage", "data", "astronaut.png"),
    "chelsea": ("skimage", "data", "chelsea.png"),
    "coffee": ("skimage", "data", "coffee.png"),
    "hubble_deep_field": ("skimage", "data", "hubble_deep_field.jpg"),
    "ihc": ("skimage", "data", "ihc.png"),
    "motorcycle_left": ("skimage", "data", "motorcycle_left.png"),
    "motorcycle_right": ("skimage", "data", "motorcycle_right.png"),
    "retina": ("skimage", "data", "retina.jpg"),
    "rocket": ("skimage", "data", "rocket.jpg"),
    "color": ("skimage", "data", "color.png"),
    "brick": ("skimage", "data", "brick.png"),
    "grass": ("skimage", "data", "grass.png"),
    "gravel": ("skimage", "data", "gravel.png"),
    "camera": ("skimage", "data", "camera.png"),
    "cell": ("skimage", "data", "cell.png"),
    "coins": ("skimage", "data", "coins.png"),
    "moon": ("skimage", "data", "moon.png"),
    "china": ("sklearn", "datasets/images", "china.jpg"),
    "flower": ("sklearn", "datasets/images", "flower.jpg"),
    "grace_hopper": ("matplotlib", "mpl-data/sample_data", "grace_hopper.jpg"),
}
HELD_OUT = ("astronaut", "china", "gravel", "coins")
VALIDATION = ("flower", "cell")
#: In neither split: the stereo twin of a training image.
EXCLUDED = ("motorcycle_right",)
TRAIN = tuple(name for name in SOURCES if name not in HELD_OUT + VALIDATION + EXCLUDED)
_PIP = {"skimage": "scikit-image", "sklearn": "scikit-learn", "matplotlib": "matplotlib"}


def _package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            f"the built-in dataset needs the package {_PIP[package]} (for its bundled photographs); "
            f"install it: pip install {_PIP[package]}"
        )
    return Path(list(spec.submodule_search_locations)[0])


def builtin_path(name: str) -> Path:
    package, folder, filename = SOURCES[name]
    path = _package_dir(package) / folder / filename
    if not path.is_file():
        raise DataError(f"the built-in image {name} is missing from the installed {_PIP[package]} ({path}); reinstall it")
    return path


def builtin_images(split: str = "train") -> list[tuple[str, Path]]:
    """``(name, path)`` of the built-in photographs in ``split``: "train", "validation", "held_out" or "all"."""
    names = {"train": TRAIN, "validation": VALIDATION, "held_out": HELD_OUT, "all": tuple(SOURCES)}.get(split)
    if names is None:
        raise DataError(f"unknown split {split!r}; use 'train', 'validation', 'held_out' or 'all'")
    return [(name, builtin_path(name)) for name in names]
