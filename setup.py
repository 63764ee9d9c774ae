# Only names the cffi modules; everything else is in pyproject.toml.
from setuptools import setup

setup(cffi_modules=["native/build_udp.py:ffibuilder", "native/build_afxdp.py:ffibuilder"])
