"""ffvol: fit continuous fields (the occupancy of a shape, a volume, a CT or MRI reconstruction)
with Fourier-feature networks, from numpy arrays or files, and query them.

Every fit goes through the same library calls as the ``ffvol`` command line, with the same
settings (the keys of ``run.toml``), and writes the same run folder: a run made here can be
continued or exported with ``ffvol fit --resume`` / ``ffvol export``, and ``ffvol.open_run``
opens a run the command line made.

    >>> import ffvol
    >>> run = ffvol.fit_occupancy()              # the bundled Stanford bunny
    >>> run.metrics["iou_uniform"]
    >>> vertices, faces = run.mesh(resolution=128)
    >>> run(vertices)                            # inside probability at points (mesh units)

Settings: flat keywords name one setting of ``run.toml`` anywhere in it (``steps=200``,
``sigma=6.0``, ``lr=1e-3``, ``seed=3``); ``encoding="positional"`` and ``device="cuda"`` work
as the CLI's flags do; ``config=`` takes nested settings as a dict shaped like ``run.toml``,
or the path of a TOML file; ``preset=`` names a preset (``"fast"``, ``"paper"``).
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from . import _ffvol
from ._ffvol import FfvolError, Field

__version__ = _ffvol.__version__
__all__ = [
    "FfvolError",
    "Field",
    "Run",
    "fit",
    "fit_occupancy",
    "fit_volume",
    "fit_mri",
    "fit_ct",
    "open_run",
    "resume",
    "resolve_config",
]

PathLike = Union[str, "os.PathLike[str]"]
Progress = Union[bool, Callable[[int, int, float], Any]]


def resolve_config(
    job: str,
    *,
    preset: Optional[str] = None,
    config: Union[None, PathLike, Mapping[str, Any]] = None,
    **settings: Any,
) -> str:
    """The ``run.toml`` text a fit with these settings would use (validated), without fitting."""
    config_path, overlay = _split_config(config)
    return _ffvol.resolve(job, preset, config_path, json.dumps(overlay), json.dumps(settings))


class Run:
    """A run folder: its settings, metrics and loss curve, and its fitted field.

    Calling a run evaluates its field at points (see :class:`Field`)."""

    def __init__(self, path: PathLike, device: str = "cpu"):
        self.path = Path(path)
        if not (self.path / "run.toml").is_file():
            raise FfvolError(f"{self.path} is not a run folder (no run.toml)")
        self._device = device
        self._field: Optional[Field] = None

    def __repr__(self) -> str:
        return f"ffvol.Run({str(self.path)!r}, job={self.job!r})"

    @property
    def config_toml(self) -> str:
        """``run.toml`` as text."""
        return (self.path / "run.toml").read_text()

    @property
    def job(self) -> str:
        for line in self.config_toml.splitlines():
            if line.startswith("job"):
                return line.split("=", 1)[1].strip().strip('"')
        raise FfvolError(f"{self.path}/run.toml names no job")

    @property
    def metrics(self) -> dict:
        """``metrics.json`` (empty before the fit finished)."""
        p = self.path / "metrics.json"
        return json.loads(p.read_text()) if p.is_file() else {}

    @property
    def loss(self) -> np.ndarray:
        """The loss log (``loss.csv``) as a structured array with fields step, loss, lr."""
        p = self.path / "loss.csv"
        if not p.is_file():
            return np.zeros(0, dtype=[("step", "i8"), ("loss", "f8"), ("lr", "f8")])
        rows = np.genfromtxt(p, delimiter=",", names=True, dtype=None, encoding="utf-8")
        return np.atleast_1d(rows)

    @property
    def field(self) -> Field:
        """The fitted field (opened on first use, on the CPU unless the run was opened with
        ``device=``)."""
        if self._field is None:
            self._field = Field(str(self.path), self._device)
        return self._field

    def __call__(self, points: np.ndarray, space: str = "data") -> np.ndarray:
        """The field at ``points`` (n × 3, or n × 2 for a 2D CT run)."""
        return self.field(_points(points, self.field.dim), space)

    def grid(self, upsample: int = 1) -> np.ndarray:
        """The field on the data's voxel grid (``upsample`` times finer), indexed [x, y, z]."""
        return self.field.grid(upsample)

    def affine(self, upsample: int = 1) -> np.ndarray:
        """World-from-voxel affine of :meth:`grid` (what nibabel takes)."""
        return self.field.affine(upsample)

    def mesh(
        self, resolution: int = 256, level: Optional[float] = None, upsample: int = 1
    ) -> Tuple[np.ndarray, np.ndarray]:
        """A surface as (vertices float32 n×3, faces int64 m×3) in the data's coordinates:
        the 0.5-probability surface of an occupancy field on ``resolution``³ nodes, or the
        ``level`` iso-surface of a volume, MRI or CT field."""
        return self.field.mesh(resolution, level, upsample)

    def resume(self, progress: Progress = True, verbose: bool = False, **options: Any) -> "Run":
        """Continues this run from its checkpoint (after Ctrl-C), with its own settings."""
        self._field = None
        _run_fit("", self.path, True, progress, verbose, **options)
        return self


def open_run(path: PathLike, device: str = "cpu") -> Run:
    """Opens a run folder made by ``ffvol fit`` or by this package."""
    return Run(path, device)


def resume(path: PathLike, progress: Progress = True, verbose: bool = False, **options: Any) -> Run:
    """Continues the run in ``path`` (as ``ffvol fit --resume``)."""
    return Run(path).resume(progress=progress, verbose=verbose, **options)


def fit(
    job: str,
    *,
    output: Optional[PathLike] = None,
    force: bool = False,
    preset: Optional[str] = None,
    config: Union[None, PathLike, Mapping[str, Any]] = None,
    progress: Progress = True,
    verbose: bool = False,
    max_memory: Optional[int] = None,
    chunk: Optional[int] = None,
    stop_after: Optional[int] = None,
    **settings: Any,
) -> Run:
    """Fits ``job`` ("occupancy", "volume", "mri", "ct") with its inputs given as settings
    (paths), as ``ffvol fit JOB`` does. The ``fit_*`` functions also take arrays."""
    return _fit(job, {}, "run", output, force, preset, config, progress, verbose,
                max_memory, chunk, stop_after, settings)


def fit_occupancy(
    mesh: Union[None, PathLike, Tuple[np.ndarray, np.ndarray], Any] = None,
    *,
    output: Optional[PathLike] = None,
    force: bool = False,
    preset: Optional[str] = None,
    config: Union[None, PathLike, Mapping[str, Any]] = None,
    progress: Progress = True,
    verbose: bool = False,
    max_memory: Optional[int] = None,
    stop_after: Optional[int] = None,
    **settings: Any,
) -> Run:
    """Fits the occupancy of a closed mesh: a path (PLY, OBJ, STL), a (vertices, faces) pair of
    arrays, or any object with ``vertices`` and ``faces`` (a ``trimesh.Trimesh``). With no mesh,
    the bundled Stanford bunny."""
    stage = {}
    stem = "bunny"
    if mesh is not None:
        if isinstance(mesh, (str, os.PathLike)):
            stage["mesh"] = str(Path(mesh).resolve())
            stem = _stem(mesh)
        else:
            if hasattr(mesh, "vertices") and hasattr(mesh, "faces"):
                v, f = mesh.vertices, mesh.faces
            else:
                v, f = mesh
            stage["mesh"] = ("mesh", np.asarray(v), np.asarray(f))
            stem = "mesh"
    return _fit("occupancy", stage, stem, output, force, preset, config, progress, verbose,
                max_memory, None, stop_after, settings)


def fit_volume(
    volume: Union[None, PathLike, np.ndarray] = None,
    affine: Optional[np.ndarray] = None,
    *,
    output: Optional[PathLike] = None,
    force: bool = False,
    preset: Optional[str] = None,
    config: Union[None, PathLike, Mapping[str, Any]] = None,
    progress: Progress = True,
    verbose: bool = False,
    max_memory: Optional[int] = None,
    chunk: Optional[int] = None,
    stop_after: Optional[int] = None,
    **settings: Any,
) -> Run:
    """Fits a volume: a path (NIfTI, .npy, .mat, a DICOM series) or an array indexed
    [x, y, z] with its 4×4 world-from-voxel ``affine`` (nibabel's ``img.affine``; identity when
    omitted). With no volume, the bundled MNI152 crop."""
    stage, stem = {}, "volume"
    if volume is not None:
        stage["volume"], stem = _volume_input(volume, affine, "volume")
    return _fit("volume", stage, f"{stem}-volume", output, force, preset, config, progress,
                verbose, max_memory, chunk, stop_after, settings)


def fit_mri(
    volume: Union[None, PathLike, np.ndarray] = None,
    affine: Optional[np.ndarray] = None,
    *,
    kspace: Union[None, PathLike, np.ndarray] = None,
    mask: Union[None, PathLike, np.ndarray] = None,
    output: Optional[PathLike] = None,
    force: bool = False,
    preset: Optional[str] = None,
    config: Union[None, PathLike, Mapping[str, Any]] = None,
    progress: Progress = True,
    verbose: bool = False,
    max_memory: Optional[int] = None,
    chunk: Optional[int] = None,
    stop_after: Optional[int] = None,
    **settings: Any,
) -> Run:
    """Reconstructs a volume from undersampled k-space: measured ``kspace`` (complex, centred,
    [x, y, z]) with its ``mask`` (nonzero = measured), or k-space simulated from ``volume``
    through a mask (``mask=`` or the ``sampling=`` setting). ``volume`` is also the reference
    for PSNR when k-space is given."""
    stage: dict = {}
    stem = "run"
    unset = []
    if volume is not None:
        stage["volume"], stem = _volume_input(volume, affine, "volume")
    if kspace is not None:
        if isinstance(kspace, (str, os.PathLike)):
            stage["kspace"] = str(Path(kspace).resolve())
            stem = stem if volume is not None else _stem(kspace)
        else:
            k = np.asarray(kspace)
            if k.ndim != 3 or not np.iscomplexobj(k):
                raise ValueError(f"kspace must be a complex [x, y, z] array, got {k.dtype} {k.shape}")
            stage["kspace"] = ("kspace", k.astype(np.complex64))
        if volume is None:
            unset.append("volume")
    if mask is not None:
        if isinstance(mask, (str, os.PathLike)):
            stage["mask"] = str(Path(mask).resolve())
        else:
            m = np.asarray(mask)
            if m.ndim != 3:
                raise ValueError(f"mask must be an [x, y, z] array, got shape {m.shape}")
            stage["mask"] = ("mask", m.astype(np.float32))
    return _fit("mri", stage, f"{stem}-mri", output, force, preset, config, progress, verbose,
                max_memory, chunk, stop_after, settings, unset)


def fit_ct(
    projections: Union[PathLike, np.ndarray],
    geometry: Union[None, PathLike, str, Mapping[str, Any]] = None,
    *,
    truth: Union[None, PathLike, np.ndarray] = None,
    output: Optional[PathLike] = None,
    force: bool = False,
    preset: Optional[str] = None,
    config: Union[None, PathLike, Mapping[str, Any]] = None,
    progress: Progress = True,
    verbose: bool = False,
    max_memory: Optional[int] = None,
    chunk: Optional[int] = None,
    stop_after: Optional[int] = None,
    **settings: Any,
) -> Run:
    """Reconstructs from CT projections (line integrals, float [views, rows, cols] or
    [views, cols] in 2D, or a path) with their scan ``geometry``: a geometry TOML path, a
    spec such as ``"paper-ct:256:20"``, or a dict shaped like the geometry TOML. ``truth``
    (array [x, y(, z)] or path) gives PSNR/SSIM."""
    stage: dict = {}
    if isinstance(projections, (str, os.PathLike)):
        stage["projections"] = str(Path(projections).resolve())
        stem = _stem(projections)
    else:
        stage["projections"] = ("projections", np.asarray(projections, dtype=np.float32))
        stem = "projections"
    if geometry is None:
        stage["geometry"] = stage["projections"] if isinstance(stage["projections"], str) else None
        if stage["geometry"] is None:
            raise ValueError("projections given as an array need their geometry")
    elif isinstance(geometry, Mapping):
        stage["geometry"] = ("geometry", dict(geometry))
    elif isinstance(geometry, str) and geometry.startswith("paper-ct"):
        stage["geometry"] = geometry
    else:
        stage["geometry"] = str(Path(geometry).resolve())
    if truth is not None:
        if isinstance(truth, (str, os.PathLike)):
            stage["truth"] = str(Path(truth).resolve())
        else:
            stage["truth"] = ("truth", np.asarray(truth, dtype=np.float32))
    return _fit("ct", stage, stem, output, force, preset, config, progress, verbose,
                max_memory, chunk, stop_after, settings)


# -------------------------------------------------------------------------------------------
# internals


def _stem(path: PathLike) -> str:
    return _ffvol.data_stem(str(path))


def _volume_input(volume, affine, name):
    if isinstance(volume, (str, os.PathLike)):
        if affine is not None:
            raise ValueError("affine goes with an array; a file carries its own")
        return str(Path(volume).resolve()), _stem(volume)
    a = np.asarray(volume)
    if a.ndim != 3:
        raise ValueError(f"{name} must be a 3D array [x, y, z], got shape {a.shape}")
    if np.iscomplexobj(a):
        raise ValueError(f"{name} must be real")
    aff = np.eye(4) if affine is None else np.asarray(affine, dtype=np.float64)
    if aff.shape != (4, 4):
        raise ValueError(f"affine must be 4×4, got {aff.shape}")
    return (name, a.astype(np.float32, copy=False), aff), "array"


def _split_config(config):
    if config is None:
        return None, {}
    if isinstance(config, (str, os.PathLike)):
        return str(config), {}
    if isinstance(config, Mapping):
        return None, dict(config)
    raise TypeError("config= takes a dict shaped like run.toml or the path of a TOML file")


def _stage(value, folder: Path) -> str:
    """An input given as arrays, written into the run folder in the form the CLI reads, so the
    run can be resumed and exported from its folder alone."""
    kind = value[0]
    folder.mkdir(parents=True, exist_ok=True)
    if kind == "mesh":
        path = folder / "input_mesh.ply"
        _ffvol.write_mesh(str(path), np.ascontiguousarray(value[1], dtype=np.float32),
                          np.ascontiguousarray(value[2], dtype=np.int64))
    elif kind == "volume":
        path = folder / "input_volume.nii"
        _ffvol.write_volume(str(path), value[1], value[2])
    elif kind == "geometry":
        path = folder / "input_geometry.toml"
        path.write_text(_toml(value[1]))
    else:
        path = folder / f"input_{kind}.npy"
        np.save(path, value[1])
    return str(path.resolve())


def _toml(d: Mapping[str, Any], prefix: str = "") -> str:
    """A small TOML writer for geometry dicts (scalars, lists, nested tables)."""
    scalars, tables = [], []
    for k, v in d.items():
        if isinstance(v, Mapping):
            tables.append((k, v))
        else:
            scalars.append(f"{k} = {_toml_value(v)}")
    out = "\n".join(scalars) + ("\n" if scalars else "")
    for k, v in tables:
        name = f"{prefix}{k}"
        out += f"\n[{name}]\n" + _toml(v, name + ".")
    return out


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        f = float(v)
        if not math.isfinite(f):
            raise ValueError(f"geometry value {f} is not finite")
        return repr(f)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple, np.ndarray)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} as TOML")


def _points(points, dim: int) -> np.ndarray:
    p = np.asarray(points, dtype=np.float32)
    if p.ndim == 1 and p.shape[0] == dim:
        p = p[None, :]
    return np.ascontiguousarray(p)


def _fit(job, stage, stem, output, force, preset, config, progress, verbose, max_memory, chunk,
         stop_after, settings, unset=()):
    folder = Path(_ffvol.run_folder(stem, None if output is None else str(output), force))
    config_path, overlay = _split_config(config)
    for key, value in stage.items():
        overlay[key] = value if isinstance(value, str) else _stage(value, folder)
    overlay["output"] = str(folder)
    for key in unset:
        settings.pop(key, None)
    text = _ffvol.resolve(job, preset, config_path, json.dumps(overlay), json.dumps(settings),
                          list(unset))
    _run_fit(text, folder, False, progress, verbose, max_memory=max_memory, chunk=chunk,
             stop_after=stop_after)
    return Run(folder)


class _Printer:
    """Progress without tqdm: one line rewritten in a terminal, a line every tenth otherwise."""

    def __init__(self):
        self.tty = sys.stderr.isatty()
        self.shown = -1

    def __call__(self, step, steps, loss):
        if self.tty:
            sys.stderr.write(f"\rstep {step}/{steps}  loss {loss:.4e}")
            if step >= steps:
                sys.stderr.write("\n")
            sys.stderr.flush()
        else:
            tenth = step * 10 // max(steps, 1)
            if tenth != self.shown or step == steps:
                self.shown = tenth
                print(f"step {step}/{steps}  loss {loss:.4e}", file=sys.stderr, flush=True)

    def close(self):
        pass


class _Tqdm:
    def __init__(self, tqdm):
        self.tqdm = tqdm
        self.bar = None

    def __call__(self, step, steps, loss):
        if self.bar is None:
            self.bar = self.tqdm(total=steps, initial=step - 1, unit="step")
        self.bar.update(step - self.bar.n)
        self.bar.set_postfix(loss=f"{loss:.4e}", refresh=False)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def _progress(progress):
    if progress is False or progress is None:
        return None
    if callable(progress) and progress is not True:
        return progress
    try:
        from tqdm.auto import tqdm  # in Jupyter, a widget; in a terminal, a bar

        return _Tqdm(tqdm)
    except ImportError:
        return _Printer()


def _run_fit(text, folder, resume, progress, verbose, max_memory=None, chunk=None,
             stop_after=None):
    cb = _progress(progress)
    try:
        state, step = _ffvol.fit(text, str(folder), resume, cb, verbose, max_memory, chunk,
                                 stop_after)
    finally:
        if hasattr(cb, "close"):
            cb.close()
    if state == "interrupted":
        raise KeyboardInterrupt(
            f"stopped at step {step}; checkpoint written. Continue with "
            f"ffvol.resume({str(folder)!r}) or `ffvol fit --resume {folder}`"
        )
