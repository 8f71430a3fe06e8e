"""Short synthetic video clips for the video tests (a few frames, small sizes, made in tmp_path)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

MUXERS = {".mp4": "mp4", ".mkv": "matroska", ".avi": "avi", ".mov": "mov", ".webm": "webm", ".bin": "mp4"}


def moving_square_frames(count: int, width: int, height: int, step: int = 3, seed: int = 0, noise: float = 4.0) -> list[np.ndarray]:
    """A textured background (fixed camera) with a dark square moving right by ``step`` px a frame,
    plus a little sensor-like noise: what a per-frame stylization flickers on."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([
        128 + 80 * np.sin(xx / 5.0), 128 + 80 * np.cos(yy / 4.0), 128 + 60 * np.sin((xx + yy) / 7.0)
    ], axis=-1)
    side = max(4, min(width, height) // 4)
    frames = []
    for t in range(count):
        img = base + rng.normal(0, noise, base.shape)
        x0 = (4 + t * step) % max(1, width - side)
        y0 = height // 3
        img[y0 : y0 + side, x0 : x0 + side] = (20, 30, 200)
        frames.append(np.clip(img, 0, 255).astype(np.uint8))
    return frames


def write_clip(
    path: Path,
    frames: list[np.ndarray],
    fps: int = 10,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    pts: list[int] | None = None,
    audio: str | None = None,
    options: dict[str, str] | None = None,
    audio_rate: int = 16000,
    audio_layout: str = "mono",
) -> Path:
    """Encode RGB frames to ``path`` (container from the suffix). ``pts`` in 1/(fps*10) s units for
    irregular timing; ``audio``: an audio codec for a 440 Hz tone as long as the clip, at
    ``audio_rate`` Hz in ``audio_layout`` ("mono", "stereo", "5.1", ...)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = frames[0].shape[:2] if frames else (48, 64)
    with av.open(str(path), "w", format=MUXERS[path.suffix]) as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, pix_fmt
        if options:
            stream.options = options
        tb = Fraction(1, fps * 10)
        if pts is not None:
            stream.codec_context.time_base = tb
        a_stream = None
        if audio is not None:
            a_stream = out.add_stream(audio, rate=audio_rate)
            a_stream.layout = audio_layout
            if a_stream.codec_context.codec.experimental:  # FFmpeg's own Vorbis encoder
                a_stream.codec_context.options = {"strict": "experimental"}
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            if pts is not None:
                frame.pts, frame.time_base = pts[i], tb
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
        if a_stream is not None:
            seconds = max(1, len(frames)) / fps
            n = int(audio_rate * seconds)
            channels = av.AudioLayout(audio_layout).nb_channels
            tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(n) / audio_rate) * 32767).astype(np.int16)
            tone = np.repeat(tone[None], channels, axis=0)
            chunk = 1024
            for i in range(0, n, chunk):
                samples = np.ascontiguousarray(tone[:, i : i + chunk])
                frame = av.AudioFrame.from_ndarray(samples, format="s16p", layout=audio_layout)
                frame.sample_rate = audio_rate
                frame.pts = i
                for packet in a_stream.encode(frame):
                    out.mux(packet)
            for packet in a_stream.encode():
                out.mux(packet)
    return path


def encode_rgb(out, stream, frames) -> None:
    """Encode RGB frames (numbered 0, 1, ...) into ``stream`` of the open container ``out``, then flush it."""
    import av

    for i, rgb in enumerate(frames):
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        frame.pts = i
        for packet in stream.encode(frame):
            out.mux(packet)
    for packet in stream.encode():
        out.mux(packet)


def read_all(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def frame_times(path: Path) -> list[float]:
    with av.open(str(path)) as c:
        return [float(f.pts * f.time_base) for f in c.decode(video=0)]


def audio_packets(path: Path) -> list[bytes]:
    with av.open(str(path)) as c:
        if not c.streams.audio:
            return []
        return [bytes(p) for p in c.demux(c.streams.audio[0]) if p.size]
