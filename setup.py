"""Build steps that pyproject.toml cannot express: Cython kernels and protobuf generation.

Generated code lands in ``shanakht/v1/`` (ignored by git) and is never edited by hand.
"""

from __future__ import annotations

from pathlib import Path

from Cython.Build import cythonize
from setuptools import Extension, find_packages, setup

ROOT = Path(__file__).parent.resolve()
PROTO_ROOT = ROOT / "proto"


def generate_protos() -> None:
    """Run grpcio-tools' protoc over proto/ into the package tree."""
    import grpc_tools
    from grpc_tools import protoc

    include = Path(grpc_tools.__file__).parent / "_proto"
    for proto in sorted(PROTO_ROOT.rglob("*.proto")):
        args = [
            "protoc",
            f"-I{PROTO_ROOT}",
            f"-I{include}",
            f"--python_out={ROOT}",
            f"--pyi_out={ROOT}",
            f"--grpc_python_out={ROOT}",
            str(proto),
        ]
        if protoc.main(args) != 0:
            raise RuntimeError(f"protoc failed on {proto}")


# Generated on every build (wheel, sdist, editable alike); protoc is quick and idempotent.
generate_protos()

setup(
    packages=find_packages(include=["shanakht", "shanakht.*", "cli", "transport", "matcher", "matcher.*", "enrollment", "enrollment.*", "native", "console"]),
    py_modules=["server"],
    package_data={"enrollment": ["*.toml", "calibration/*.toml"], "native": ["*.pyx"],
                  "console": ["templates/*.html", "static/*", "locale/*.pot", "locale/*/LC_MESSAGES/*.po", "babel.cfg"]},
    ext_modules=cythonize(
        [
            Extension("native.topk", ["native/topk.pyx"], extra_compile_args=["-O3"]),
            Extension("native.minutiae", ["native/minutiae.pyx"], extra_compile_args=["-O3"]),
            Extension("native.cylinders", ["native/cylinders.pyx"], extra_compile_args=["-O3"]),
            Extension("native.rescore", ["native/rescore.pyx"], extra_compile_args=["-O3"]),
            Extension("native.denormals", ["native/denormals.pyx"]),
        ],
        compiler_directives={"language_level": "3"},
    ),
)
