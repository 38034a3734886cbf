"""Optimized BLAS for MLX's Linux CPU backend: find it, load it before mlx, say which is used.
Knows nothing of models; never imports mlx (docs/architecture.md says why this works)."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

# Debian / Ubuntu multiarch paths of libopenblas0-pthread, then the loader's search.
_CANDIDATES = (
    "/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0",
    "/usr/lib/aarch64-linux-gnu/openblas-pthread/libopenblas.so.0",
    "/usr/lib64/libopenblasp.so.0",
    "/usr/lib64/libopenblas.so.0",
)
_SYMBOL = b"cblas_sgemm"


def find_optimized_blas() -> str | None:
    """Path of an installed OpenBLAS, or None."""
    for path in _CANDIDATES:
        if Path(path).exists():
            return path
    return ctypes.util.find_library("openblas")


def preload(setting: str = "auto") -> str | None:
    """Load the optimized BLAS globally so MLX binds to it; returns its path or None.

    `setting` is 'auto', 'off' or a library path. Must run before the first
    `import mlx` in the process; afterwards it only reports (and warns) because
    libmlx has already bound its BLAS symbols.
    """
    if sys.platform != "linux" or setting == "off":
        return None
    path = find_optimized_blas() if setting == "auto" else setting
    if "mlx.core" in sys.modules:
        in_use = blas_in_use()
        active = path is not None and in_use == os.path.realpath(path)
        if path and not active:
            log.warning(
                "mlx was imported before the engine started, so MLX keeps %s; "
                "start the Engine first or set LD_PRELOAD=%s",
                in_use,
                path,
            )
        return path if active else None
    if path is None:
        log.info(
            "no optimized BLAS found (Debian: libopenblas0-pthread); MLX uses its "
            "bundled reference BLAS and dense float32 matmuls are much slower"
        )
        return None
    if not Path(path).exists() and os.sep in path:
        raise FileNotFoundError(f"WORKBENCH_BLAS={path!r}: no such library")
    ctypes.CDLL(path, mode=os.RTLD_GLOBAL | os.RTLD_NOW)
    log.info("optimized BLAS loaded for MLX: %s", path)
    return path


class _DlInfo(ctypes.Structure):
    _fields_ = [
        ("dli_fname", ctypes.c_char_p),
        ("dli_fbase", ctypes.c_void_p),
        ("dli_sname", ctypes.c_char_p),
        ("dli_saddr", ctypes.c_void_p),
    ]


def blas_in_use() -> str:
    """Which library serves MLX's dense float32 matmuls in this process.

    macOS: 'accelerate'. Linux: the path of the library that provides
    cblas_sgemm in the global scope (what libmlx binds to first), else the
    bundled reference BLAS.
    """
    if sys.platform == "darwin":
        return "accelerate"
    if sys.platform != "linux":
        return "unknown"
    process = ctypes.CDLL(None)
    try:
        address = ctypes.cast(getattr(process, _SYMBOL.decode()), ctypes.c_void_p).value
    except AttributeError:
        address = None
    if address:
        info = _DlInfo()
        if process.dladdr(ctypes.c_void_p(address), ctypes.byref(info)) and info.dli_fname:
            return os.path.realpath(info.dli_fname.decode())
    return "reference (bundled with mlx)"


def describe_blas() -> str:
    """Short name for reports: 'openblas', 'accelerate', 'reference' or the file name."""
    in_use = blas_in_use()
    if in_use.startswith("reference"):
        return "reference"
    name = Path(in_use).name
    return "openblas" if "openblas" in name else name


def thread_control() -> tuple[Callable[[], int], Callable[[int], None]] | None:
    """OpenBLAS's (get, set) of its thread count when OpenBLAS serves this process's BLAS
    (loaded globally: preload or LD_PRELOAD), else None (Accelerate, the bundled BLAS, a GPU)."""
    if sys.platform != "linux":
        return None
    process = ctypes.CDLL(None)
    try:
        get, put = process.openblas_get_num_threads, process.openblas_set_num_threads
    except AttributeError:
        return None
    get.restype, get.argtypes = ctypes.c_int, []
    put.restype, put.argtypes = None, [ctypes.c_int]
    return get, put
