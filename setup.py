"""Package discovery only; everything else about the package is in pyproject.toml.

pyproject.toml cannot both *find* the code packages and *map* the
repository's ``config/`` folder to the data package ``metergw_data``, so the
list is made here: every package under protocols, drivers, gateway and
simulator (new ones are picked up without editing a list), plus the data.
"""

from pathlib import Path

from setuptools import find_packages, setup

# Each data folder (profiles/, examples/, sim/, ...) is a package of its own to
# setuptools, or it warns that the folder's files may be left out.
DATA_FOLDERS = sorted(
    d.name for d in Path("config").iterdir() if d.is_dir() and not d.name.startswith("__")
)

setup(
    packages=[
        *find_packages(include=["protocols*", "drivers*", "gateway*", "simulator*"]),
        "metergw_data",
        *(f"metergw_data.{name}" for name in DATA_FOLDERS),
    ],
    package_dir={"metergw_data": "config"},
)
