# Only names the cffi modules; everything else is in pyproject.toml. The DPDK shim is built only where
# pkg-config finds libdpdk (apt-get install dpdk-dev): without it the `dpdk:` source says what to install.
import shutil
import subprocess

from setuptools import setup

modules = ["native/build_udp.py:ffibuilder", "native/build_afxdp.py:ffibuilder"]
if shutil.which("pkg-config") and subprocess.run(["pkg-config", "--exists", "libdpdk"]).returncode == 0:
    modules.append("native/build_dpdk.py:ffibuilder")
setup(cffi_modules=modules)
