"""Type stubs of the native module ffvol._ffvol (see ffvol/__init__.py for the public API)."""

from os import PathLike
from typing import Any, Callable, Optional, Tuple, Union

import numpy as np
import numpy.typing as npt

__version__: str

class FfvolError(Exception):
    """An error from ffvol, carrying its message (a bad file, a bad setting, a diverged fit)."""

def resolve(
    job: str,
    preset: Optional[str] = None,
    config_path: Optional[Union[str, PathLike[str]]] = None,
    overlay_json: str = "{}",
    flat_json: str = "{}",
    unset: list[str] = ...,
) -> str: ...
def data_stem(path: Union[str, PathLike[str]]) -> str: ...
def run_folder(stem: str, output: Optional[Union[str, PathLike[str]]] = None, force: bool = False) -> str: ...
def write_mesh(path: Union[str, PathLike[str]], vertices: npt.NDArray[np.float32], faces: npt.NDArray[np.int64]) -> None: ...
def write_volume(path: Union[str, PathLike[str]], data: npt.NDArray[np.float32], affine: npt.NDArray[np.float64]) -> None: ...
def fit(
    run_toml: str,
    output: Union[str, PathLike[str]],
    resume: bool = False,
    progress: Optional[Callable[[int, int, float], Any]] = None,
    log: bool = True,
    max_memory: Optional[int] = None,
    chunk: Optional[int] = None,
    stop_after: Optional[int] = None,
) -> Tuple[str, int]: ...

class Field:
    """A fitted field opened from a run folder."""

    job: str
    dim: int
    def __init__(self, run: Union[str, PathLike[str]], device: str = "cpu", threads: int = 0) -> None: ...
    def __call__(self, points: npt.NDArray[np.float32], space: str = "data") -> npt.NDArray[np.float32]: ...
    def grid(self, upsample: int = 1) -> npt.NDArray[np.float32]: ...
    def mesh(
        self, resolution: int = 256, level: Optional[float] = None, upsample: int = 1
    ) -> Tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]: ...
    def affine(self, upsample: int = 1) -> npt.NDArray[np.float64]: ...
