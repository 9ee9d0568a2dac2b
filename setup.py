"""Which folder is which `splat.*` package; the rest of the build configuration is in pyproject.toml.

One namespace, `splat.*`: `splat/` holds the public API and CLI, the top-level folders hold its
subsystems (renderer/ is `splat.renderer`, ...). Nothing installs a top-level `datasets`, `train`, ...
module. Every package below each folder is found here, so a new subpackage cannot be left out of
the wheel; tests/test_package.py checks that the built wheel holds every module.
"""

from setuptools import find_packages, setup

PACKAGE_DIR = {
    "splat": "splat",
    "splat.renderer": "renderer",
    "splat.fields": "fields",
    "splat.train": "train",
    "splat.datasets": "datasets",
    "splat.viewer": "viewer",
    "splat.scenes": "scenes",
}

setup(
    package_dir=PACKAGE_DIR,
    packages=[
        f"{name}.{sub}" if sub else name for name, folder in PACKAGE_DIR.items() for sub in ["", *find_packages(folder)]
    ],
)
