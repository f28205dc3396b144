"""Build the native OpenMP kernel (native/*.c) as the ash.native._kernel extension."""

import glob

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "ash.native._kernel",
            sources=sorted(glob.glob("native/*.c")),
            include_dirs=["native"],
            extra_compile_args=["-O3", "-fopenmp", "-std=c11", "-Wall", "-Wextra"],
            extra_link_args=["-fopenmp"],
        )
    ]
)
