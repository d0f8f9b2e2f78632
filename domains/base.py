"""The domain contract: ``Sample``, ``DomainDataset``, the ``Domain`` adapter base class, its errors
and its registry.

A domain adapter reads one dataset's native on-disk format and turns it into ``Sample`` objects
(one labelling unit each: an image or a patch of a huge image). Everything downstream (protocol,
methods, metrics, leaderboards) sees only samples; nothing downstream reads files.

Adapters register with ``@register_domain("name")``; third-party packages add theirs through the
``labelbudget.domains`` entry-point group.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from benchmark.registry import Registry

# ----------------------------------------------------------------------------------------- errors


class LabelbudgetError(Exception):
    """Base class of every error this project raises on purpose (caught by the CLI)."""


class DatasetNotFoundError(LabelbudgetError, FileNotFoundError):
    """A dataset root, split or file that should exist does not. The message says how to fix it."""


class EmptySplitError(DatasetNotFoundError):
    """A split with no usable sample: every one was skipped (``problems``, what a lenient load
    recorded) or there were none. The message names the first problem."""

    def __init__(self, message: str, problems: list | None = None) -> None:
        self.problems = list(problems or [])
        self.message = message
        shown = message
        if self.problems:
            shown += f"; {len(self.problems)} problem(s), the first: {self.problems[0]}"
        super().__init__(shown)

    def __reduce__(self):
        return (type(self), (self.message, self.problems))


class AnnotationError(LabelbudgetError, ValueError):
    """A malformed annotation: names the file, the 1-based line (0 when not line-based) and why."""

    def __init__(self, path: str | Path, line: int, reason: str) -> None:
        self.path = str(path)
        self.line = int(line)
        self.reason = cut(reason)
        where = f"{self.path}:{self.line}" if self.line else self.path
        super().__init__(f"{where}: {self.reason}")

    def __reduce__(self):  # picklable: a worker process's error reaches the launcher intact
        return (type(self), (self.path, self.line, self.reason))


class SpecError(LabelbudgetError, ValueError):
    """An invalid benchmark matrix, CLI option or domain option."""


def cut(text: str, limit: int = 300) -> str:
    """``text`` shortened to about ``limit`` characters (a 10 MB bad line is not echoed whole into an
    error message); the cut says how long the original was."""
    text = str(text)
    if len(text) <= limit:
        return text
    return f"{text[: limit - 60]} … [cut: {len(text)} characters in all]"


def check_relative(name: str, path: str | Path, line: int, what: str) -> str:
    """``name`` (a file name, id or relative path read from an annotation file) when it stays inside
    its dataset root: relative, no ``..`` component, no NUL; else ``AnnotationError``. Symlinks inside
    the root are followed like any file (they are the user's own layout)."""
    s = str(name)
    parts = s.replace("\\", "/").split("/")
    if (
        not s
        or "\x00" in s
        or s.startswith(("/", "\\", "~"))
        or ".." in parts
        or (len(s) > 1 and s[1] == ":")
    ):
        raise AnnotationError(
            path, line, f"{what} {cut(s, 120)!r} must be a relative path inside the dataset root"
        )
    return s


def inside(path: Path, root: Path) -> bool:
    """Whether ``path`` resolves (symlinks followed) to a place inside ``root``."""
    try:
        Path(path).resolve().relative_to(Path(root).resolve())
    except ValueError:
        return False
    return True


# ----------------------------------------------------------------------------------------- sample


def _as(arr: Any, shape_tail: tuple[int, ...], dtype: Any) -> np.ndarray:
    a = np.asarray(arr, dtype=dtype)
    if a.size == 0:
        a = a.reshape((0, *shape_tail))
    return a


@dataclass
class Sample:
    """One labelling unit (an image, or a patch/window of a larger image) with its objects.

    Boxes are ``xyxy`` in pixels of this sample (continuous coordinates: a box covering pixel columns
    0..9 is x1=0, x2=10). ``ignore`` objects (crowds, groups, ignore regions) are never positives;
    ``difficult`` is 0, 1 or 2 (2 = truncated by a patch border). Metrics derive their own ignore
    masks from these fields; nothing is dropped here to suit a metric.
    """

    id: str
    group: str
    width: int
    height: int
    boxes: np.ndarray  # (N, 4) float32 xyxy
    labels: np.ndarray  # (N,) int64 class indices into Domain.classes
    difficult: np.ndarray | None = None  # (N,) int64
    ignore: np.ndarray | None = None  # (N,) bool
    polygons: np.ndarray | None = None  # (N, 8) float32, oriented corners, or None
    visible_boxes: np.ndarray | None = None  # (N, 4) float32 or None
    occlusion: np.ndarray | None = None  # (N,) float32 or None
    meta: dict[str, Any] = field(default_factory=dict)
    image_path: str | None = None
    window: tuple[int, int, int, int] | None = None  # (x, y, w, h) inside image_path, or None

    def __post_init__(self) -> None:
        self.boxes = _as(self.boxes, (4,), np.float32).reshape(-1, 4)
        n = len(self.boxes)
        self.labels = _as(self.labels, (), np.int64).reshape(-1)
        self.difficult = (
            np.zeros(n, np.int64) if self.difficult is None else _as(self.difficult, (), np.int64).reshape(-1)
        )
        self.ignore = np.zeros(n, bool) if self.ignore is None else _as(self.ignore, (), bool).reshape(-1)
        if self.polygons is not None:
            self.polygons = _as(self.polygons, (8,), np.float32).reshape(-1, 8)
        if self.visible_boxes is not None:
            self.visible_boxes = _as(self.visible_boxes, (4,), np.float32).reshape(-1, 4)
        if self.occlusion is not None:
            self.occlusion = _as(self.occlusion, (), np.float32).reshape(-1)
        for name in ("labels", "difficult", "ignore", "polygons", "visible_boxes", "occlusion"):
            v = getattr(self, name)
            if v is not None and len(v) != n:
                raise ValueError(f"sample {self.id}: {name} has {len(v)} rows for {n} boxes")

    def label_free(self) -> LabelFreeSample:
        """This sample as methods and strategies may see it while it is unlabelled (no objects)."""
        return LabelFreeSample(self)

    @property
    def num_objects(self) -> int:
        """Objects a labeller draws (ignore regions included: they cost a click too)."""
        return int(len(self.boxes))

    @property
    def num_positive(self) -> int:
        assert self.ignore is not None
        return int((~self.ignore).sum())

    def read_image(self) -> np.ndarray:
        """The pixels as an ``(H, W, 3)`` uint8 array (grayscale is replicated to three channels,
        16-bit is scaled to 8-bit).

        Read with rasterio (GDAL): a ``window`` is read as a raster window, so a patch of a huge PNG or
        GeoTIFF never decodes the whole scene (a tiled GeoTIFF reads only the tiles under the window).
        """
        if self.image_path is None:
            raise DatasetNotFoundError(f"sample {self.id} has no image file")
        path = Path(self.image_path)
        if not path.is_file():
            raise DatasetNotFoundError(f"image of sample {self.id} is missing: {path}")
        arr = read_raster(path, self.window)
        if arr.shape[:2] != (self.height, self.width):
            raise AnnotationError(
                path,
                0,
                f"image is {arr.shape[1]}x{arr.shape[0]} but its annotation says {self.width}x{self.height}",
            )
        return arr


def read_raster(path: str | Path, window: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """``(H, W, 3)`` uint8 pixels of an image file, or of the window ``(x, y, w, h)`` of it, read with
    rasterio; a corrupt or unreadable file raises ``AnnotationError(path, 0, ...)``."""
    import warnings

    import rasterio
    from rasterio.enums import ColorInterp
    from rasterio.errors import NotGeoreferencedWarning, RasterioError
    from rasterio.windows import Window

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(path) as ds:
                bands = [1, 2, 3] if ds.count >= 3 else [1]  # RGB(A) -> RGB; gray(+alpha) -> gray
                win = None if window is None else Window(*window)
                data = ds.read(bands, window=win)
                if ds.count < 3 and ds.colorinterp[0] == ColorInterp.palette:
                    lut = np.zeros((256, 3), np.uint8)
                    for k, rgba in ds.colormap(1).items():
                        lut[k] = rgba[:3]
                    return np.ascontiguousarray(lut[data[0]])
    except (RasterioError, OSError) as exc:
        raise AnnotationError(path, 0, f"unreadable or corrupt image ({exc})") from exc
    return _to_uint8_rgb(np.moveaxis(data, 0, -1))


def raster_info(path: str | Path) -> tuple[int, int, dict[str, Any]]:
    """``(width, height, geo)`` of an image read from its header with rasterio (no pixel decode);
    ``geo`` holds ``crs`` (WKT/EPSG string) and ``transform`` (the 6 affine coefficients) for a
    georeferenced raster such as a GeoTIFF, and is empty otherwise."""
    import warnings

    import rasterio
    from rasterio.errors import NotGeoreferencedWarning, RasterioError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(path) as ds:
                geo: dict[str, Any] = {}
                if ds.crs is not None:
                    geo["crs"] = ds.crs.to_string()
                    geo["transform"] = [float(v) for v in tuple(ds.transform)[:6]]
                return int(ds.width), int(ds.height), geo
    except (RasterioError, OSError) as exc:
        raise AnnotationError(path, 0, f"unreadable or corrupt image ({exc})") from exc


def image_size(path: str | Path) -> tuple[int, int]:
    """``(width, height)`` of an image file from its header (no pixel decode): Pillow, or rasterio for
    what Pillow cannot open (huge or GDAL-only rasters). A missing, empty, truncated-header or corrupt
    file raises ``AnnotationError(path, 0, ...)``."""
    import warnings

    from PIL import Image

    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                w, h = im.size
    except Image.DecompressionBombError:
        w, h, _ = raster_info(path)
    except (OSError, SyntaxError, ValueError) as exc:
        try:  # formats only GDAL reads
            w, h, _ = raster_info(path)
        except AnnotationError:
            raise AnnotationError(path, 0, f"unreadable or corrupt image ({cut(str(exc), 160)})") from None
    if w < 1 or h < 1:
        raise AnnotationError(path, 0, f"image header says {w}x{h}")
    return int(w), int(h)


def _to_uint8_rgb(a: np.ndarray) -> np.ndarray:
    if a.dtype == np.uint16:
        a = (a >> 8).astype(np.uint8)
    elif a.dtype != np.uint8:
        a = np.clip(a, 0, 255).astype(np.uint8)
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    elif a.shape[2] == 4:
        a = a[:, :, :3]
    elif a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    return np.ascontiguousarray(a)


class HiddenLabelError(LabelbudgetError, AttributeError):
    """A method or strategy reached for the labels of a sample whose labels it must not see."""


LABEL_FIELDS = frozenset(
    {"boxes", "labels", "difficult", "ignore", "polygons", "visible_boxes", "occlusion", "num_objects",
     "num_positive"}
)  # fmt: skip
_VISIBLE_FIELDS = ("id", "group", "width", "height", "meta", "image_path", "window")


class LabelFreeSample:
    """What methods and strategies see of an unlabelled (or test) sample: its id, group, size, meta,
    where its pixels are and ``read_image()``; never its objects. Reading ``boxes``, ``labels`` or any
    other label field raises ``HiddenLabelError`` naming the sample, so a hidden label cannot be used by
    mistake. Made by ``Sample.label_free()``; the protocol hands these to ``TrainContext.unlabelled``
    and ``QueryContext.unlabelled``."""

    __slots__ = ("id", "group", "width", "height", "meta", "image_path", "window", "_read", "_frozen")

    def __init__(self, sample: Sample) -> None:
        for k in _VISIBLE_FIELDS:
            object.__setattr__(self, k, getattr(sample, k))
        object.__setattr__(self, "meta", dict(sample.meta))
        object.__setattr__(self, "_read", sample.read_image)
        object.__setattr__(self, "_frozen", True)

    def read_image(self) -> np.ndarray:
        return self._read()

    def __getattr__(self, name: str) -> Any:  # only reached for names not set above
        if name in LABEL_FIELDS:
            raise HiddenLabelError(
                f"sample {self.id!r} is unlabelled: its {name} are hidden from methods and strategies "
                "(labels are revealed only through the labelled set)"
            )
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"a label-free view is read-only (tried to set {name!r})")

    def __repr__(self) -> str:
        return f"LabelFreeSample(id={self.id!r}, {self.width}x{self.height})"

    def __copy__(self) -> LabelFreeSample:
        return self  # read-only: a copy is the same view

    def __deepcopy__(self, memo: dict) -> LabelFreeSample:
        return self

    def __reduce__(self) -> tuple:
        return _label_free_view, (self._read.__self__,)


def _label_free_view(sample: Sample) -> LabelFreeSample:
    return LabelFreeSample(sample)


# ---------------------------------------------------------------------------------------- dataset


@dataclass
class LoadReport:
    """What a strict or lenient load repaired or skipped: nothing is dropped silently."""

    problems: list[AnnotationError] = field(default_factory=list)
    repairs: Counter = field(default_factory=Counter)
    skipped: Counter = field(default_factory=Counter)

    def problem(self, err: AnnotationError, lenient: bool, what: str) -> None:
        """Raise ``err`` in strict mode; in lenient mode record it and count ``what`` as skipped."""
        if not lenient:
            raise err
        self.problems.append(err)
        self.skipped[what] += 1

    def summary(self) -> str:
        parts = [f"{k}: {v} skipped" for k, v in sorted(self.skipped.items())]
        parts += [f"{k}: {v} repaired" for k, v in sorted(self.repairs.items())]
        return "; ".join(parts) if parts else "no problems"


class DomainDataset(Sequence[Sample]):
    """The samples of one split of one domain, with a content hash (``version``).

    Checks its own contract at construction: unique ids, label indices inside the class list,
    finite boxes. ``version`` hashes the sorted ids and the annotation files' bytes, so a changed
    dataset makes old results stale instead of mixing with new ones.
    """

    def __init__(
        self,
        domain: str,
        split: str,
        classes: Sequence[str],
        samples: Iterable[Sample],
        annotation_digest: str = "",
        report: LoadReport | None = None,
        options: dict[str, Any] | None = None,
    ) -> None:
        self.domain = domain
        self.split = split
        self.classes = tuple(classes)
        self.samples = list(samples)
        self.report = report or LoadReport()
        self.options = dict(options or {})
        self._index = {s.id: i for i, s in enumerate(self.samples)}
        if len(self._index) != len(self.samples):
            dup = [k for k, v in Counter(s.id for s in self.samples).items() if v > 1]
            raise AnnotationError(domain, 0, f"duplicate sample ids in split {split!r}: {dup[:5]}")
        nc = len(self.classes)
        for s in self.samples:
            if len(s.labels) and (s.labels.min() < 0 or s.labels.max() >= nc):
                raise AnnotationError(
                    s.image_path or domain, 0, f"sample {s.id}: label index outside 0..{nc - 1}"
                )
            if not np.isfinite(s.boxes).all():
                raise AnnotationError(s.image_path or domain, 0, f"sample {s.id}: non-finite box coordinates")
        h = hashlib.sha256()
        h.update("\n".join(sorted(self._index)).encode())
        h.update(annotation_digest.encode())
        self.version = h.hexdigest()[:16]
        self._images: dict[str, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i):  # type: ignore[override]
        return self.samples[i]

    def __iter__(self) -> Iterator[Sample]:
        return iter(self.samples)

    @property
    def ids(self) -> list[str]:
        return [s.id for s in self.samples]

    def by_id(self, sid: str) -> Sample:
        try:
            return self.samples[self._index[sid]]
        except KeyError:
            raise KeyError(f"no sample {sid!r} in {self.domain}/{self.split}") from None

    def __contains__(self, sid: object) -> bool:
        return sid in self._index

    def unit_of(self, sid: str) -> str:
        """The labelling unit of a sample: ``meta["unit"]`` when several samples share one annotation
        (the three fog renderings of a Foggy Cityscapes frame under ``beta = "all"``), else its id.
        Budgets count units and the protocol reveals a unit's samples together."""
        return str(self.by_id(sid).meta.get("unit", sid))

    def unit_members(self) -> dict[str, list[str]]:
        """Unit -> its sample ids, in the dataset's order."""
        out: dict[str, list[str]] = {}
        for s in self.samples:
            out.setdefault(str(s.meta.get("unit", s.id)), []).append(s.id)
        return out

    def unit_boxes(self, ids: list[str]) -> int:
        """Annotated boxes of the units of ``ids``, each unit counted once (its samples share one
        annotation, so labelling it costs its boxes once)."""
        seen: dict[str, int] = {}
        for sid in ids:
            seen.setdefault(self.unit_of(sid), self.by_id(sid).num_objects)
        return sum(seen.values())

    def image(self, sid: str) -> np.ndarray:
        """Pixels of one sample, decoded once and kept in memory (synthetic and patch datasets are
        small; a real DOTA patch is 3 MB)."""
        img = self._images.get(sid)
        if img is None:
            img = self.by_id(sid).read_image()
            self._images[sid] = img
        return img

    def class_counts(self) -> np.ndarray:
        counts = np.zeros(len(self.classes), np.int64)
        for s in self.samples:
            assert s.ignore is not None
            np.add.at(counts, s.labels[~s.ignore], 1)
        return counts


def check_images(ds: DomainDataset, deep: bool = False, lenient: bool = False) -> int:
    """``data check``: read every image header of ``ds`` (size against the annotation; a patch's window
    inside its file) and, with ``deep``, decode every image file (and every sonar mask) once. A missing,
    empty, truncated or corrupt file is an ``AnnotationError``; with ``lenient`` it is recorded in
    ``ds.report`` (counted as ``images``). Returns the number of files read."""
    files: dict[str, tuple[int, int] | None] = {}
    n = 0

    def header(path: str) -> tuple[int, int] | None:
        nonlocal n
        if path not in files:
            n += 1
            try:
                files[path] = image_size(path)
                if deep:
                    read_raster(path)
            except AnnotationError as err:
                files[path] = None
                ds.report.problem(err, lenient, "images")
        return files[path]

    for s in ds:
        frame_bytes = getattr(s, "frame_bytes", None)
        if frame_bytes is not None:  # a video frame (Caltech .seq): its JPEG header, or all of it
            try:
                if deep:
                    s.read_image()
                else:
                    import io

                    from PIL import Image

                    with Image.open(io.BytesIO(frame_bytes())) as im:
                        fw, fh = im.size
                    if (fw, fh) != (s.width, s.height):
                        raise AnnotationError(
                            str(s.image_path),
                            0,
                            f"frame of {s.id} is {fw}x{fh}, the header says {s.width}x{s.height}",
                        )
            except (OSError, SyntaxError) as exc:
                ds.report.problem(
                    AnnotationError(str(s.image_path), 0, f"frame of {s.id} is not a readable JPEG ({exc})"),
                    lenient,
                    "images",
                )
            except AnnotationError as err:
                ds.report.problem(err, lenient, "images")
            continue
        if s.image_path is None:
            continue
        if not Path(s.image_path).is_file():
            ds.report.problem(
                AnnotationError(s.image_path, 0, f"image of sample {s.id} is missing"), lenient, "images"
            )
            continue
        size = header(s.image_path)
        if size is None:
            continue
        fw, fh = size
        if s.window is None:
            if (fw, fh) != (s.width, s.height):
                ds.report.problem(
                    AnnotationError(
                        s.image_path,
                        0,
                        f"image is {fw}x{fh} but the annotation of {s.id} says {s.width}x{s.height}",
                    ),
                    lenient,
                    "images",
                )
        else:
            x, y, w, h = s.window
            if x < 0 or y < 0 or x + w > fw or y + h > fh:
                ds.report.problem(
                    AnnotationError(
                        s.image_path, 0, f"window {s.window} of {s.id} reaches outside the {fw}x{fh} image"
                    ),
                    lenient,
                    "images",
                )
        mask = s.meta.get("mask_path") if isinstance(s.meta, dict) else None
        if mask:
            msize = header(str(mask))
            if msize is not None and msize != (fw, fh):
                ds.report.problem(
                    AnnotationError(
                        str(mask), 0, f"mask is {msize[0]}x{msize[1]} but the image is {fw}x{fh}"
                    ),
                    lenient,
                    "images",
                )
    return n


def digest_files(paths: Iterable[Path]) -> str:
    """sha256 over the names and bytes of annotation files (sorted), for ``DomainDataset.version``."""
    h = hashlib.sha256()
    for p in sorted(Path(x) for x in paths):
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()


# ----------------------------------------------------------------------------------------- domain


@dataclass(frozen=True)
class MetricSpec:
    """One official metric of a domain. ``protocol`` names the evaluator in ``benchmark.metrics``
    and ``key`` the number it returns; the first metric of a domain is its primary one."""

    name: str
    higher_is_better: bool
    protocol: str
    key: str
    description: str = ""


class Domain(ABC):
    """Base class of a domain adapter. Subclasses set the class attributes and implement
    ``load`` and ``verify``; ``synthesize`` runs the synthetic writer registered under the domain's
    name (``@register_synthetic("<name>")`` in ``domains/synthetic/<name>.py``).

    Options (DOTA ``version``, fog ``beta``, pedestrian ``format``, …) are passed as keyword
    arguments; unknown options are a ``SpecError`` that lists the known ones.
    """

    name: ClassVar[str] = "?"
    classes: ClassVar[tuple[str, ...]] = ()
    box_type: ClassVar[str] = "hbb"  # "hbb" or "obb"
    label_unit: ClassVar[str] = "image"
    # COCO category id of each class (a dataset read from a COCO file keeps the file's ids); None: label + 1
    coco_category_ids: tuple[int, ...] | None = None
    splits: ClassVar[tuple[str, ...]] = ("pool", "test")
    metrics: ClassVar[tuple[MetricSpec, ...]] = ()
    default_options: ClassVar[dict[str, Any]] = {}
    synthetic_sizes: ClassVar[tuple[str, ...]] = ("tiny", "small", "medium")
    # bump when the synthetic generator's output changes, so caches are rebuilt
    synthetic_version: ClassVar[str] = "1"

    def __init__(self, **options: Any) -> None:
        unknown = set(options) - set(self.default_options)
        if unknown:
            known = ", ".join(sorted(self.default_options)) or "none"
            raise SpecError(
                f"domain {self.name!r} has no option(s) {sorted(unknown)}; known options: {known}"
            )
        self.options = {**self.default_options, **options}

    # --- to implement -------------------------------------------------------------------------
    @abstractmethod
    def load(self, root: str | Path, split: str, lenient: bool = False) -> DomainDataset:
        """Read one split (``pool``, ``test`` or ``source``) from ``root``."""

    @abstractmethod
    def verify(self, root: str | Path) -> None:
        """Raise ``DatasetNotFoundError`` naming what is missing under ``root``."""

    @classmethod
    def synthesize(cls, root: str | Path, seed: int = 0, size: str = "small", progress: bool = True) -> Path:
        """Write the synthetic dataset, in this domain's native format, under ``root``: the writer
        registered under the domain's name (``SYNTHETIC_WRITERS``, found by name, so this layer never
        imports the generators, which import the format code they write)."""
        return SYNTHETIC_WRITERS.get(cls.name)(Path(root), seed=seed, size=size, progress=progress)

    # --- shared helpers -----------------------------------------------------------------------
    def available_splits(self, root: str | Path) -> tuple[str, ...]:
        """The splits present under ``root`` (default: all of ``splits``; an adapter whose splits are
        optional files narrows this)."""
        return tuple(self.splits)

    @property
    def primary_metric(self) -> MetricSpec:
        return self.metrics[0]

    def check_split(self, split: str) -> None:
        if split not in self.splits:
            raise SpecError(f"domain {self.name!r} has no split {split!r}; splits: {', '.join(self.splits)}")

    def class_index(self, name: str) -> int | None:
        try:
            return self.classes.index(name)
        except ValueError:
            return None


DOMAINS: Registry[type[Domain]] = Registry("domain", "labelbudget.domains", ("domains",))


def register_domain(name: str):
    """Class decorator: ``@register_domain("dota")``."""
    return DOMAINS.register(name)


def get_domain(name: str, **options: Any) -> Domain:
    return DOMAINS.get(name)(**options)


SyntheticWriter = Callable[..., Path]  # (root, seed=0, size="small", progress=True) -> root
# the synthetic generators: ``domains/synthetic/<name>.py`` registers the writer of domain ``<name>``
SYNTHETIC_WRITERS: Registry[SyntheticWriter] = Registry(
    "synthetic writer", "labelbudget.synthetic", ("domains.synthetic",)
)


def register_synthetic(name: str):
    """Decorator: ``@register_synthetic("dota")`` on ``write_dataset(root, seed, size, progress)``."""
    return SYNTHETIC_WRITERS.register(name)
