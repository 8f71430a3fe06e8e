"""Video files with PyAV: probing, decoding and encoding (the pipeline that stylizes them is fastnst.video.pipeline).

PyAV (the ``av`` wheel, which carries its own FFmpeg; ``pip install -e ".[video]"``) decodes and
encodes. The output has the input's frame rate, frame count and timestamps (variable frame rates
survive), its size (or ``max_size``; frames stored turned, with a rotation in the container as phones
record portrait video, are turned upright), and the input's audio stream copied packet for packet when the
output container can hold it (else re-encoded with the container's usual audio codec, at a sample rate
and channel layout that encoder takes; the result says so). Video is H.264
yuv420p (``crf``, ``preset``) unless ``codec`` says otherwise (VP9 for .webm). yuv420p needs even
sizes: an odd width or height loses its last column or row (``max_size`` rounds to even instead).

Safety as for images: the writer works under a temporary name and renames when complete; a corrupt,
truncated or empty video, a file without a video stream, or an interrupt leaves no file under the
final name and no temporary file behind.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from fastnst.imageio import IMAGE_EXTENSIONS as _IMAGE_EXTENSIONS
from fastnst.video.codecs import (  # noqa: F401 (re-exported: the container module's public names)
    _AUDIO_COPY,
    _AUDIO_MAX_CHANNELS,
    _AUDIO_REENCODE,
    _CRF_CODECS,
    _MUXERS,
    _PRESET_CODECS,
    _STANDARD_LAYOUTS,
    DEFAULT_CRF,
    DEFAULT_PRESET,
    KEEP_CONTAINERS,
    WRITE_EXTENSIONS,
    X264_PRESETS,
    _audio_rate,
    check_encoder_settings,
    require_av,
)

__all__ = [
    "DEFAULT_CRF",
    "FrameReader",
    "DEFAULT_PRESET",
    "KEEP_CONTAINERS",
    "VIDEO_EXTENSIONS",
    "VideoError",
    "VideoInfo",
    "VideoWriter",
    "WRITE_EXTENSIONS",
    "X264_PRESETS",
    "check_encoder_settings",
    "estimated_frames",
    "is_video_file",
    "is_video_input",
    "output_size",
    "probe_video",
    "read_frames",
    "require_av",
    "video_output_extension",
]

StrPath = str | os.PathLike
Progress = Callable[[int, int | None], None]

VIDEO_EXTENSIONS: frozenset[str] = frozenset({".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi"})
# Demuxers that open still images: such files are images, not videos.
_IMAGE_DEMUXERS = ("image2", "_pipe", "gif", "apng", "webp", "png", "bmp", "tiff")


class VideoError(Exception):
    """A video that cannot be read or written; the message starts with the file name."""


# ----------------------------------------------------------------------------------------------
# Probing
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VideoInfo:
    path: Path
    container: str
    codec: str
    width: int
    height: int
    fps: Fraction | None  # average frame rate from the header (None if unknown)
    frames: int | None  # frame count from the header (None if unknown)
    rotation: int  # degrees counter-clockwise the frames are turned for display (0, 90, 180, 270)
    duration: float | None  # seconds of video (None if unknown)
    audio_codec: str | None  # None without an audio stream


def _open_input(path: Path):
    av = require_av()
    if not path.exists():
        raise VideoError(f"{path}: file not found")
    if path.is_dir():
        raise VideoError(f"{path}: is a directory")
    if path.stat().st_size == 0:
        raise VideoError(f"{path}: empty file")
    try:
        return av.open(str(path), "r")
    except av.error.FFmpegError as exc:
        raise VideoError(f"{path}: not a readable video ({_reason(exc)})") from None


def _video_stream(container):
    """The video stream to stylize: FFmpeg's choice of the best one (a one-frame thumbnail track loses
    to the real video), never an attached picture (a cover); None when there is no other."""
    av = require_av()
    candidates = [s for s in container.streams.video if not s.disposition & av.stream.Disposition.attached_pic]
    if not candidates:
        return None
    best = container.streams.best("video")
    return best if best in candidates else candidates[0]


def _no_video(path: Path, container) -> VideoError:
    sound = " (audio only)" if container.streams.audio else ""
    return VideoError(f"{path}: no video stream{sound}")


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return text.split(": '", 1)[0].strip() or type(exc).__name__


def _stream_duration(stream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    return None


def _quarter_turns(path: Path) -> int:
    """Counter-clockwise quarter turns (0-3) that display the video upright: phones record portrait
    video as landscape frames with a rotation in the container's display matrix. Read from the first
    decoded frame (0 when there is none or it cannot be read; the real reading reports errors)."""
    av = require_av()
    try:
        with av.open(str(path), "r") as container:
            stream = _video_stream(container)
            for frame in container.decode(stream) if stream is not None else ():
                return round((getattr(frame, "rotation", 0) or 0) / 90) % 4
    except (av.error.FFmpegError, OSError):
        pass
    return 0


def probe_video(path: StrPath) -> VideoInfo:
    """Container facts of a video file; VideoError when it cannot be opened or has no video stream."""
    path = Path(path)
    with _open_input(path) as container:
        v = _video_stream(container)
        if v is None:
            raise _no_video(path, container)
        duration = _stream_duration(v)
        if duration is None and container.duration:
            duration = container.duration / 1_000_000
        audio = container.streams.audio[0].codec_context.name if container.streams.audio else None
        turns = _quarter_turns(path)
        w, h = v.codec_context.width, v.codec_context.height
        return VideoInfo(
            path=path,
            container=container.format.name,
            codec=v.codec_context.name,
            width=h if turns % 2 else w,  # as displayed
            height=w if turns % 2 else h,
            fps=v.average_rate or v.guessed_rate or None,
            frames=v.frames or None,
            rotation=90 * turns,
            duration=duration,
            audio_codec=audio,
        )


def estimated_frames(stream) -> int | None:
    """Frames expected from duration x frame rate, when the header gives no count (for progress)."""
    duration = _stream_duration(stream)
    if duration is None and stream.container is not None and stream.container.duration:
        duration = stream.container.duration / 1_000_000
    rate = stream.average_rate or stream.guessed_rate
    return max(1, round(duration * float(rate))) if duration and rate else None


def is_video_file(path: StrPath) -> bool:
    """True if the file's content is a video container with a video stream (probed: the extension
    does not matter; still images and GIF-like single pictures are not videos)."""
    try:
        av = require_av()
    except ImportError:
        return Path(path).suffix.lower() in VIDEO_EXTENSIONS
    try:
        with av.open(str(path), "r") as container:
            if _video_stream(container) is None:
                return False
            name = container.format.name
            if any(part in name for part in _IMAGE_DEMUXERS):
                return False
            return True
    except (av.error.FFmpegError, OSError, ValueError):
        return False


def is_video_input(path: StrPath) -> bool:
    """How a batch tells videos from images: an image extension is an image (cheap, as before); a video
    extension is a video (so a broken one gets the video reader's error, not "not an image");
    anything else is probed for a video stream."""
    ext = Path(path).suffix.lower()
    if ext in _IMAGE_EXTENSIONS:
        return False
    return ext in VIDEO_EXTENSIONS or is_video_file(path) or _is_audio_file(path)


def _is_audio_file(path: StrPath) -> bool:
    """A sound file (.mp3, .m4a, ...) named as an input goes to the video reader, whose "no video
    stream (audio only)" says more than the image reader's "not an image file"."""
    try:
        av = require_av()
        with av.open(str(path), "r") as container:
            return bool(container.streams.audio) and not any(part in container.format.name for part in _IMAGE_DEMUXERS)
    except (ImportError, av.error.FFmpegError, OSError, ValueError):
        return False


def video_output_extension(src: StrPath) -> str:
    """The extension of a stylized video's default output name (see KEEP_CONTAINERS)."""
    ext = Path(src).suffix.lower()
    return ext if ext in KEEP_CONTAINERS else ".mp4"


def output_size(width: int, height: int, max_size: int | None = None, even: bool = True) -> tuple[int, int]:
    """The (width, height) frames are stylized and written at: shrunk so the long side is at most
    ``max_size`` (never enlarged), and even for 4:2:0 chroma (odd sizes lose their last row/column)."""
    w, h = width, height
    if max_size is not None and max(w, h) > max_size:
        scale = max_size / max(w, h)
        w, h = max(2, round(w * scale)), max(2, round(h * scale))
    if even:
        w, h = max(2, w - w % 2), max(2, h - h % 2)
    return w, h


# ----------------------------------------------------------------------------------------------
# Decoding
# ----------------------------------------------------------------------------------------------


@dataclass
class _Frame:
    rgb: np.ndarray  # (H, W, 3) uint8
    pts: int | None
    time_base: Fraction | None


def read_frames(path: StrPath, size: tuple[int, int] | None = None, threads: int = 1) -> Iterator[np.ndarray]:
    """The frames of a video as (H, W, 3) uint8 RGB arrays, scaled to ``size`` = (width, height).

    Raises VideoError for a file that is not a readable video, is corrupt, truncated or has no frames.
    """
    reader = FrameReader(Path(path), size, threads)
    try:
        for frame in reader.frames():
            yield frame.rgb
    finally:
        reader.close()


class FrameReader:
    """Demuxes one input: video frames (decoded, RGB, scaled) and the audio packets (for copying)."""

    def __init__(self, path: Path, size: tuple[int, int] | None, threads: int, keep_audio: bool = False) -> None:
        self.path = path
        self.container = _open_input(path)
        try:
            self.video = _video_stream(self.container)
            if self.video is None:
                raise _no_video(path, self.container)
            ctx = self.video.codec_context
            ctx.thread_count = max(0, threads)  # 0 = FFmpeg's choice (one per core)
            ctx.thread_type = "AUTO"
            if not ctx.width or not ctx.height:
                raise VideoError(f"{path}: video stream without a frame size (corrupt header?)")
            # Frames are turned upright (a phone's portrait video), so sizes here are as displayed.
            self.turns = _quarter_turns(path)
            self.source_size = (ctx.height, ctx.width) if self.turns % 2 else (ctx.width, ctx.height)
            self.size = size or self.source_size
            self.audio = self.container.streams.audio[0] if keep_audio and self.container.streams.audio else None
            # Where the file's streams end (all of them are demuxed, even those not kept): that tells a
            # cut file from one whose picture stops before its sound (see check_truncated).
            self.data_end: float | None = None  # seconds
            self.decoded = 0
        except BaseException:
            self.container.close()
            raise

    def close(self) -> None:
        self.container.close()

    def _convert(self, frame) -> np.ndarray:
        w, h = self.size if self.turns % 2 == 0 else self.size[::-1]  # before turning upright
        fw, fh = frame.width, frame.height
        if (w, h) == (fw, fh) or (w, h) == (fw - fw % 2, fh - fh % 2):
            rgb = frame.to_ndarray(format="rgb24")
            rgb = rgb[:h, :w] if (w, h) != (fw, fh) else rgb
        else:  # scaled by swscale (area averaging when shrinking: no aliasing, as PIL's antialiased resize)
            rgb = frame.reformat(width=w, height=h, format="rgb24", interpolation="AREA").to_ndarray()
        return np.ascontiguousarray(np.rot90(rgb, self.turns)) if self.turns else rgb

    def packets(self) -> Iterator[tuple[str, object]]:
        """("video", _Frame) and ("audio", packet) items in file order."""
        av = require_av()
        try:
            for packet in self.container.demux():
                if packet.pts is not None and packet.time_base is not None:
                    end = float((packet.pts + (packet.duration or 0)) * packet.time_base)
                    self.data_end = end if self.data_end is None else max(self.data_end, end)
                if packet.stream.index != self.video.index:
                    if self.audio is not None and packet.stream.index == self.audio.index and packet.dts is not None and packet.size:
                        yield "audio", packet
                    continue
                for frame in packet.decode():
                    self.decoded += 1
                    yield "video", _Frame(self._convert(frame), frame.pts, frame.time_base)
        except av.error.FFmpegError as exc:
            raise VideoError(f"{self.path}: corrupt video data after {self.decoded} frames ({_reason(exc)})") from None
        if self.decoded == 0:
            raise VideoError(f"{self.path}: no decodable video frames")

    def frames(self) -> Iterator[_Frame]:
        last_pts = None
        for kind, item in self.packets():
            if kind == "video":
                last_pts = item.pts
                yield item
        self.check_truncated(last_pts)

    def check_truncated(self, last_pts: int | None) -> None:
        """A file that ends well before the duration its header declares was cut short (a partial
        download or copy). Irregular timing (dropped frames, as in tree.avi) is fine: only the time
        the last frame reaches counts, not the number of frames."""
        declared = _stream_duration(self.video)
        if last_pts is None or self.video.time_base is None:
            return
        if declared is None and self.container.duration:
            # WebM (and some Matroska) declare only the whole file's duration, the longest stream's:
            # it is cut short when none of its streams (picture, sound, ...) gets near it.
            declared = self.container.duration / 1_000_000
            start = (self.container.start_time or 0) / 1_000_000
            reached = max(float(last_pts * self.video.time_base), self.data_end or 0.0) - start
            what = "the file ends"
        elif declared is not None:
            reached = float((last_pts - (self.video.start_time or 0)) * self.video.time_base)
            what = "frames end"
        if declared is None or declared <= 0:
            return
        frame_time = 1 / float(self.video.average_rate) if self.video.average_rate else 0.0
        if reached + 2 * frame_time < 0.9 * declared:
            raise VideoError(
                f"{self.path}: truncated video: {what} at {reached:.2f} s of the {declared:.2f} s its header declares"
            )


# ----------------------------------------------------------------------------------------------
# Encoding
# ----------------------------------------------------------------------------------------------


class VideoWriter:
    """Encodes RGB frames (and copies audio packets) into one file; use :func:`atomic_path` around it.

    ``path`` may be a temporary name: the container format comes from ``extension``.
    """

    def __init__(
        self,
        path: StrPath,
        extension: str,
        width: int,
        height: int,
        rate: Fraction,
        *,
        time_base: Fraction | None = None,
        codec: str | None = None,
        crf: int | None = None,
        preset: str | None = None,
        threads: int = 1,
        audio_template=None,
    ) -> None:
        av = require_av()
        ext = extension.lower()
        if ext not in _MUXERS:
            raise VideoError(f"{path}: cannot write {ext or '(no extension)'} videos (use one of {', '.join(sorted(_MUXERS))})")
        muxer = _MUXERS[ext][0]
        try:
            codec = check_encoder_settings(codec, crf, preset, ext)
        except ValueError as exc:
            raise VideoError(str(exc)) from None
        self.container = av.open(str(path), "w", format=muxer)
        try:
            supported = self.container.supported_codecs
            self.stream = self.container.add_stream(codec, rate=rate)
            self.stream.width, self.stream.height = width, height
            self.stream.pix_fmt = "yuv420p"
            if time_base is not None:
                self.stream.codec_context.time_base = time_base
            options: dict[str, str] = {}
            if codec in _CRF_CODECS:
                options["crf"] = str(DEFAULT_CRF if crf is None else crf)
                if codec == "libvpx-vp9":
                    options["b"] = "0"  # constant quality mode
                    options["row-mt"] = "1"
            if codec in _PRESET_CODECS:
                options["preset"] = preset or DEFAULT_PRESET
            self.stream.options = options
            self.stream.codec_context.thread_count = max(0, threads)
            self.time_base = self.stream.codec_context.time_base
            self.audio_in = audio_template
            self.audio_out = None
            self._audio_transcode = False
            self.audio_note: str | None = None  # why and how the audio was re-encoded
            if audio_template is not None:
                ctx = audio_template.codec_context  # None when this FFmpeg has no decoder for it
                name = ctx.codec.canonical_name if ctx is not None else "an unknown codec"
                copyable = _AUDIO_COPY.get(muxer, supported)
                if ctx is None or name in copyable:
                    self.audio_out = self.container.add_stream_from_template(audio_template)
                else:  # e.g. PCM from a camera's AVI into MP4 or WebM: re-encode with the container's usual codec
                    target = av.Codec(_AUDIO_REENCODE.get(muxer, "aac"), "w")
                    out_rate = _audio_rate(target, ctx.sample_rate)
                    # The standard layout for the channel count: PCM from AVI or Matroska often comes
                    # with channels in no stated order, which the encoders refuse.
                    channels = min(ctx.layout.nb_channels, _AUDIO_MAX_CHANNELS.get(target.name, 8))
                    self.audio_out = self.container.add_stream(target.name, rate=out_rate)
                    self.audio_out.layout = _STANDARD_LAYOUTS.get(channels, "stereo")
                    self._audio_transcode = True
                    resampled = f" at {out_rate} Hz" if out_rate != ctx.sample_rate else ""
                    self.audio_note = f"re-encoded to {target.name}{resampled} ({ext} cannot hold {name} audio)"
            # The header now, not at the first frame: a combination the muxer or an encoder refuses
            # fails here, before any frame is stylized.
            try:
                self.container.start_encoding()
            except (av.error.FFmpegError, ValueError) as exc:
                audio = f" and {self.audio_out.codec_context.name} audio" if self.audio_out is not None else ""
                raise VideoError(f"cannot write {ext} with {codec} video{audio} ({_reason(exc)})") from None
        except BaseException:
            self.container.close()
            raise
        self.frames = 0
        self._last_pts: int | None = None

    @property
    def audio_mode(self) -> str | None:
        if self.audio_out is None:
            return None
        return f"re-encoded to {self.audio_out.codec_context.name}" if self._audio_transcode else "copied"

    def write(self, rgb: np.ndarray, pts: int | None = None, time_base: Fraction | None = None) -> None:
        """Encode one (H, W, 3) uint8 frame. ``pts`` in ``time_base`` (default: the frame's index)."""
        av = require_av()
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        frame = frame.reformat(format="yuv420p")
        if pts is not None and time_base is not None and time_base != self.time_base:
            pts = int(round(pts * time_base / self.time_base))
        if pts is None or (self._last_pts is not None and pts <= self._last_pts):
            step = 1 if self.stream.average_rate is None else max(1, round(1 / (self.stream.average_rate * self.time_base)))
            pts = 0 if self._last_pts is None else self._last_pts + step
        frame.pts, frame.time_base = pts, self.time_base
        self._last_pts = pts
        for packet in self.stream.encode(frame):
            self.container.mux(packet)
        self.frames += 1

    def write_audio(self, packet) -> None:
        if self.audio_out is None:
            return
        if self._audio_transcode:
            for frame in packet.decode():
                frame.pts = None
                for out in self.audio_out.encode(frame):
                    self.container.mux(out)
        else:
            packet.stream = self.audio_out
            self.container.mux(packet)

    def close(self) -> None:
        """Flush the encoders and finish the file."""
        try:
            for packet in self.stream.encode():
                self.container.mux(packet)
            if self._audio_transcode:
                for frame in self.audio_in.codec_context.decode(None):  # the decoder's last samples
                    frame.pts = None
                    for packet in self.audio_out.encode(frame):
                        self.container.mux(packet)
                for packet in self.audio_out.encode():
                    self.container.mux(packet)
        finally:
            self.container.close()

    def abort(self) -> None:
        try:
            self.container.close()
        except Exception:  # noqa: BLE001 - the file is discarded anyway
            pass
