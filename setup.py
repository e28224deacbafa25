"""The compiled half of the ingest hot path, built by `pip install` (see pyproject.toml).

Everything else about the package is declared in pyproject.toml; this file only
names the Cython extensions, each a twin of a pure-Python module that stays the
reference (and runs when MEDIASERVER_NO_EXTENSIONS is set).
"""

from Cython.Build import cythonize
from setuptools import Extension, setup

setup(
    ext_modules=cythonize(
        [
            Extension("rtmp._chunk_reader", ["rtmp/_chunk_reader.pyx"]),
            Extension("mediaserver._coded_frames", ["mediaserver/_coded_frames.pyx"]),
            Extension("hls._fmp4", ["hls/_fmp4.pyx"]),
            Extension("hls._plain_frames", ["hls/_plain_frames.pyx"]),
        ],
        compiler_directives={"language_level": "3"},
    )
)
