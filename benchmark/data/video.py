"""Reading echo videos by file type, always as (T, H, W, C) uint8 with frames upright.

``.avi``: Motion-JPEG AVIs (EchoNet) decode exactly the requested frames' JPEG packets; other codecs go
through decord (``get_batch``), which decodes the requested frames and short gaps between them.
CAMUS volumes (``.mhd`` MetaImage, ``.nii``/``.nii.gz`` NIfTI) are small half cycles read whole;
SimpleITK and nibabel are optional (the ``camus`` extra) and imported only when such a file is read.
"""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Sequence

import numpy as np

from benchmark.errors import BenchmarkError

NIFTI_SUFFIXES = (".nii", ".nii.gz")
HEADER_BYTES = 65536  # AVI stream headers sit in the first few kB (OpenCV pads them to ~5.6 kB)
SEEK_COST_IN_FRAMES = 8  # decord 0.6, 112x112 MJPG: a seek costs ~3-5 ms, decoding a frame ~0.4 ms


class VideoReadError(BenchmarkError):
    """A video that cannot be decoded (missing, truncated, empty or of an unknown type)."""


def suffix_of(path: str | Path) -> str:
    name = Path(path).name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else Path(name).suffix


class Video:
    """An opened video: ``len(video)`` frames, ``video.read(indices)`` decodes just those frames.

    ``reverse``: the file stores the frames last to first; indices count in time order all the same.
    """

    def __init__(self, path: str | Path, reverse: bool = False):
        self.path = Path(path)
        self.reverse = reverse
        suffix = suffix_of(self.path)
        if not self.path.is_file():
            raise VideoReadError(f"no video file at {self.path}")
        if suffix == ".avi":
            mjpeg = MjpegAvi.open(self.path)
            self._reader = mjpeg if mjpeg is not None else DecordReader(self.path)
        elif suffix == ".mhd":
            self._reader = Volume(read_metaimage(self.path))
        elif suffix in NIFTI_SUFFIXES:
            self._reader = Volume(read_nifti(self.path))
        else:
            raise VideoReadError(f"{self.path}: unknown video type {suffix!r}; expected .avi, .mhd, .nii or .nii.gz")

    def __len__(self) -> int:
        return len(self._reader)

    def read(self, indices: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
        """Frames ``indices`` (all when None) as a (T, H, W, C) uint8 array."""
        indices = np.arange(len(self)) if indices is None else np.asarray(indices, dtype=np.int64)
        if indices.size and (indices.min() < 0 or indices.max() >= len(self)):
            raise VideoReadError(f"{self.path}: frame {int(indices.max())} requested of {len(self)}")
        try:
            return self._reader.read(len(self) - 1 - indices if self.reverse else indices)
        except VideoReadError:
            raise
        except Exception as error:  # decoders raise their own types on damaged streams
            raise VideoReadError(f"{self.path}: cannot decode frames: {_one_line(error)}") from None


class Volume:
    """A sequence already in memory (CAMUS volumes are a few MB)."""

    def __init__(self, frames: np.ndarray):
        self.frames = frames

    def __len__(self) -> int:
        return self.frames.shape[0]

    def read(self, indices: np.ndarray) -> np.ndarray:
        return self.frames[indices]


class MjpegAvi:
    """Motion-JPEG AVI (EchoNet's format), decoded one JPEG packet per requested frame.

    Every MJPG frame is an independent JPEG, so a frame is decoded by locating its packet in the file
    and decoding that image alone: no seek and no decoding of frames in between. This is several times
    faster than decord for clips spread over the video (decord seeks before each non-consecutive frame).
    Pixels agree with decord's (FFmpeg) decode within 2 grey levels.
    """

    def __init__(self, path: Path, data: bytes, packets: list[tuple[int, int]]):
        self.path = path
        self.data = data
        self.packets = packets

    @classmethod
    def open(cls, path: Path) -> "MjpegAvi | None":
        """The reader, or None when the file is not a Motion-JPEG AVI (then decord reads it)."""
        with open(path, "rb") as file:
            head = file.read(HEADER_BYTES)
            stream = _mjpeg_stream_number(head)
            if stream is None:
                return None
            data = head + file.read()
        return cls(path, data, _video_packets(data, stream))

    def __len__(self) -> int:
        return len(self.packets)

    def read(self, indices: np.ndarray) -> np.ndarray:
        import cv2

        rgb_flag = getattr(cv2, "IMREAD_COLOR_RGB", None)  # OpenCV >= 4.10 decodes straight to RGB
        frames = []
        for index in indices:
            offset, size = self.packets[index]
            packet = np.frombuffer(self.data, np.uint8, size, offset)
            image = cv2.imdecode(packet, rgb_flag if rgb_flag is not None else cv2.IMREAD_COLOR)
            if image is None:
                raise VideoReadError(f"{self.path}: frame {index} is not a decodable JPEG")
            frames.append(image if rgb_flag is not None else cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
        if not frames:
            return np.zeros((0, 0, 0, 3), dtype=np.uint8)
        return np.stack(frames)


def _chunks(data: bytes, start: int, end: int):
    """(id, data offset, size) of the RIFF chunks in ``data[start:end]``; stops at a chunk cut short."""
    position = start
    while position + 8 <= end:
        chunk_id = data[position:position + 4]
        size = int.from_bytes(data[position + 4:position + 8], "little")
        if position + 8 + size > len(data):
            return
        yield chunk_id, position + 8, size
        position += 8 + size + (size & 1)


def _mjpeg_stream_number(data: bytes) -> int | None:
    """The stream number of the Motion-JPEG video stream declared in the AVI header, or None."""
    if data[:4] != b"RIFF" or data[8:12] != b"AVI ":
        return None
    stream, position = 0, data.find(b"strh")
    while position >= 0:
        kind, handler = data[position + 8:position + 12], data[position + 12:position + 16]
        if kind == b"vids":
            return stream if handler.upper() == b"MJPG" else None
        stream, position = stream + 1, data.find(b"strh", position + 4)
    return None


def _video_packets(data: bytes, stream: int) -> list[tuple[int, int]]:
    """(offset, size) of each frame's JPEG in the ``movi`` list; an empty packet repeats the previous frame."""
    wanted = (f"{stream:02d}dc".encode(), f"{stream:02d}db".encode())
    packets: list[tuple[int, int]] = []

    def walk(start: int, end: int) -> None:
        for chunk_id, offset, size in _chunks(data, start, end):
            if chunk_id == b"LIST":
                walk(offset + 4, offset + size)  # 'movi' itself, or 'rec ' groups inside it
            elif chunk_id in wanted:
                if size == 0 and packets:
                    packets.append(packets[-1])
                elif size:
                    packets.append((offset, size))

    for chunk_id, offset, size in _chunks(data, 12, len(data)):
        if chunk_id == b"LIST" and data[offset:offset + 4] == b"movi":
            walk(offset + 4, offset + size)
    # A file cut inside 'movi' declares a longer list than remains: walk what is there.
    if not packets:
        movi = data.find(b"movi")
        if movi >= 8 and data[movi - 8:movi - 4] == b"LIST":
            walk(movi + 4, len(data))
    return packets


class DecordReader:
    """Any other AVI through decord; short gaps between requested frames are decoded through."""

    def __init__(self, path: Path):
        import decord

        try:
            self.reader = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)
        except Exception as error:
            raise VideoReadError(f"{path}: cannot open: {_one_line(error)}") from None

    def __len__(self) -> int:
        return len(self.reader)

    def read(self, indices: np.ndarray) -> np.ndarray:
        decoded = covering_runs(indices)
        frames = self.reader.get_batch(decoded.tolist()).asnumpy()
        return frames[np.searchsorted(decoded, indices)]


def covering_runs(indices: np.ndarray, max_gap: int = SEEK_COST_IN_FRAMES) -> np.ndarray:
    """The sorted frames to decode for ``indices``: gaps of up to ``max_gap`` frames are decoded through.

    decord decodes consecutive frames sequentially but seeks before any other frame, and a seek costs
    about as much as decoding ten 112x112 frames; decoding a short gap is cheaper than jumping over it.
    """
    needed = np.unique(indices)
    if needed.size < 2:
        return needed
    gaps = np.diff(needed) - 1
    filled = [np.arange(start + 1, stop) for start, stop, gap in zip(needed[:-1], needed[1:], gaps)
              if 0 < gap <= max_gap]
    return np.union1d(needed, np.concatenate(filled)) if filled else needed


def read_video(path: str | Path, indices: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
    return Video(path).read(indices)


def check_video(path: str | Path) -> tuple[str | None, int]:
    """Why a video is unusable ("missing video", "zero frames", "truncated video: ...",
    "unreadable video: ...") or None, and its frame count (0 when unusable).

    Cheap: the file is opened, its frame count compared with what an AVI header declares, and its first
    and last frames decoded. Together these catch files cut short at any point. The count is what traced
    frames are checked against, here where the video is first opened rather than in stage 1.
    """
    path = Path(path)
    if not path.is_file():
        return "missing video", 0
    declared = avi_header_frames(path) if suffix_of(path) == ".avi" else None
    if declared == 0:
        return "zero frames", 0
    try:
        video = Video(path)
        if declared is not None and len(video) < declared:
            return f"truncated video: header declares {declared} frames, {len(video)} present", 0
        if len(video) == 0:
            return "zero frames", 0
        video.read([0, len(video) - 1])
    except VideoReadError as error:
        return f"unreadable video: {error}", 0
    except Exception as error:  # any decoder failure on a damaged file
        return f"unreadable video: {_one_line(error)}", 0
    return None, len(video)


def video_files(path: str | Path) -> list[Path]:
    """The files whose bytes make up a video: the file itself and, for a MetaImage header (``.mhd``), the data
    files its last line, ``ElementDataFile``, names: one file (CAMUS 2019 keeps its pixels in a ``.raw`` beside
    the header), ``LOCAL`` (they follow the header in the same file), ``LIST`` (one file per following line)
    or a numbered pattern (``slice%03d.raw 1 10 1``: first, last, step).

    SimpleITK reads whatever file a header names, so each must be a regular file beside the header, named
    without a folder (``_beside``): ``/dev/zero`` would read as a video of zeros and never end when hashed,
    ``../patient0002/...`` would pass another patient's pixels off as this one's. The header is read as MetaIO
    reads it (``METAIO_FIELD``), and one without ``ElementDataFile`` in its first ``HEADER_BYTES`` is refused: a line
    past what is read here would be read by SimpleITK unchecked. A VideoReadError names the header."""
    path = Path(path)
    if suffix_of(path) != ".mhd":
        return [path]
    with open(path, "rb") as stream:
        lines = stream.read(HEADER_BYTES).decode("latin-1").split("\n")
    for number, line in enumerate(lines):
        match = METAIO_FIELD.fullmatch(line.strip())
        if match is None or match["key"] != "ElementDataFile":
            continue
        value = match["value"]
        words = value.split()
        if not words or words == ["LOCAL"]:
            return [path]
        if words[0] == "LIST":
            return [path, *(_beside(path, name.strip()) for name in lines[number + 1:] if name.strip())]
        numbers = [int(word) for word in words[1:4] if word.lstrip("-").isdigit()]
        if "%" in words[0] and len(numbers) >= 2:
            first, last, step = (*numbers, 1)[:3]
            try:
                return [path, *(_beside(path, words[0] % index) for index in range(first, last + 1, step or 1))]
            except (TypeError, ValueError):  # not a pattern of one number: the name is taken as it is
                pass
        return [path, _beside(path, value)]
    raise VideoReadError(f"{path}: no ElementDataFile line in its first {HEADER_BYTES} bytes, so its pixels cannot "
                         "be checked: not a MetaImage header as CAMUS writes them")


# A MetaImage header line as MetaIO (SimpleITK's reader) parses it: lines end at \n alone, the key is followed by
# ``=`` or ``:``, and any further separators and spaces before the value are skipped.
METAIO_FIELD = re.compile(r"(?P<key>\w+)\s*[=:][\s=:]*(?P<value>.*)")


def _beside(header: Path, name: str) -> Path:
    """The data file ``name`` of a MetaImage ``header``, if it is a regular file in the header's own folder."""
    if not name or name in (".", "..") or Path(name).name != name or "\\" in name:
        raise VideoReadError(f"{header}: its ElementDataFile {name!r} is not a file name beside the header; a "
                             "MetaImage's pixels must lie in its own folder")
    data = header.parent / name
    if not data.is_file():
        raise VideoReadError(f"{header}: its ElementDataFile {name!r} is missing or not a regular file")
    return data


def avi_header_frames(path: Path) -> int | None:
    """The frame count an AVI's main header declares (``dwTotalFrames``), or None if there is no header.

    decord cannot even open an AVI without frames, so this tells "zero frames" apart from damage.
    """
    with open(path, "rb") as stream:
        head = stream.read(4096)
    position = head.find(b"avih")
    if not head.startswith(b"RIFF") or position < 0 or len(head) < position + 28:
        return None
    # avih chunk: id, size, then dwMicroSecPerFrame, dwMaxBytesPerSec, dwPaddingGranularity, dwFlags, dwTotalFrames
    return int.from_bytes(head[position + 24:position + 28], "little")


# ------------------------------------------------------------------------------------ readers
def read_metaimage(path: str | Path) -> np.ndarray:
    sitk = _import_optional("SimpleITK", path)
    video_files(path)  # an .mhd's pixels must be files beside it: SimpleITK reads any file a header names
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
        pixel = sitk.Image([1] * reader.GetDimension(), reader.GetPixelID(), reader.GetNumberOfComponents())
        _check_volume(path, reader.GetSize(), pixel.GetSizeOfPixelComponent() * reader.GetNumberOfComponents())
        array = sitk.GetArrayFromImage(reader.Execute())
    except RuntimeError as error:
        raise VideoReadError(f"{path}: cannot read MetaImage: {_one_line(error)}") from None
    return _as_frames(array, path)


def read_nifti(path: str | Path) -> np.ndarray:
    """NIfTI through nibabel, or SimpleITK where only that is installed; both give upright frames."""
    try:
        import nibabel  # noqa: F401
    except ImportError:
        return read_nifti_simpleitk(path)
    return read_nifti_nibabel(path)


def read_nifti_simpleitk(path: str | Path) -> np.ndarray:
    # SimpleITK returns the buffer as (z, y, x) = (T, H, W): already upright.
    return read_metaimage(path)


def read_nifti_nibabel(path: str | Path) -> np.ndarray:
    nibabel = _import_optional("nibabel", path)
    try:
        image = nibabel.load(str(path))
        _check_volume(path, image.shape, image.get_data_dtype().itemsize)
        array = np.asarray(image.dataobj)
    except VideoReadError:
        raise
    except Exception as error:  # nibabel raises several types for damaged or truncated files
        raise VideoReadError(f"{path}: cannot read NIfTI: {_one_line(error)}") from None
    # nibabel indexes (x, y, t): transposing gives SimpleITK's upright (t, y, x) order.
    return _as_frames(array.transpose(2, 1, 0) if array.ndim == 3 else array, path)


# The most a video volume may declare. SimpleITK and nibabel allocate what a header declares before reading a
# byte, and a compressed file of a few kB can declare terabytes; CAMUS's largest sequences are tens of MB.
MAX_VOLUME_BYTES = 2 * 1024**3


def _check_volume(path, shape: Sequence[int], value_bytes: int) -> None:
    size = math.prod(int(extent) for extent in shape) * value_bytes
    if size > MAX_VOLUME_BYTES:
        raise VideoReadError(f"{path}: its header declares {' x '.join(map(str, shape))} values of {value_bytes} "
                             f"byte(s), {size / 1024**3:.1f} GiB, past the {MAX_VOLUME_BYTES // 1024**3} GiB a video "
                             "may hold: a damaged or crafted file (nothing was read)")


def _as_frames(array: np.ndarray, path) -> np.ndarray:
    if array.ndim == 2:  # a single still frame
        array = array[None]
    if array.ndim != 3:
        raise VideoReadError(f"{path}: expected a (T, H, W) grey sequence, got shape {array.shape}")
    if array.dtype != np.uint8:
        array = np.clip(array, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(array[..., None])


def _import_optional(module: str, path):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise BenchmarkError(f"reading {path} needs {module}, which is not installed. "
                             "Install the CAMUS extra: pip install -e \".[camus]\"") from None


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())[:300] or type(error).__name__
