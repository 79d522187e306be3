"""The one thing pyproject.toml cannot say: the top-level flows/ folder ships inside the package as loopml.flows.

Everything else (name, version, dependencies, the `loopml` command) is in pyproject.toml.
"""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["loopml", "loopml.*", "handlers", "handlers.*"]), "loopml.flows"],
    package_dir={"loopml.flows": "flows"},
)
