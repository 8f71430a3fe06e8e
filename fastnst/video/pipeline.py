"""``stylize_video``: a video file stylized frame by frame, decoding, stylizing and encoding overlapped.

    import fastnst
    result = fastnst.stylize_video("starry", "clip.mp4", "clip_starry.mp4", progress=print)
    print(result.frames, result.fps)

Three stages overlap: a thread demuxes and decodes (frames converted to RGB, and scaled, by FFmpeg's
swscale; fastnst.video.container), the caller's thread stylizes, a thread encodes and muxes. On a CPU the
network runs two consecutive frames at once, one per worker thread (fastnst.video.frame_workers), and one
more thread takes their outputs in frame order through the temporal step. FFmpeg's threads
release the GIL, so the stages run in parallel; their thread counts are parameters because on a small
CPU the codec threads compete with PyTorch's (measured in scripts/bench_video.py). Output safety is
fastnst.video.container's: a temporary name renamed when complete, nothing left after an error or Ctrl-C.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import torch

from fastnst.atomic import atomic_path
from fastnst.video import stages
from fastnst.video.container import (
    WRITE_EXTENSIONS,
    FrameReader,
    Progress,
    StrPath,
    VideoError,
    VideoWriter,
    estimated_frames,
    output_size,
    require_av,
)
from fastnst.video.frame_workers import FrameWorkers, choose_workers
from fastnst.video.frames import frame_to_tensor, tensor_to_frame
from fastnst.video.temporal import FrameStylizer, Stabilization

__all__ = ["VideoResult", "stylize_video"]

@dataclass
class VideoResult:
    path: Path
    frames: int
    width: int
    height: int
    seconds: float  # wall-clock, decode + stylize + encode
    stylize_seconds: float  # the stylizing stage busy (network and stabiliser), not waiting for frames or the encoder
    audio: str | None  # "copied", "re-encoded to aac", or None
    scene_cuts: int
    audio_note: str | None = None  # why and how audio was re-encoded, e.g. "re-encoded to aac (.mp4 cannot hold pcm_s16le audio)"

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


def stylize_video(
    model,
    src: StrPath,
    dst: StrPath,
    *,
    max_size: int | None = None,
    stabilization: Stabilization | None = Stabilization(),
    preserve_color: bool = False,
    strength: float = 1.0,
    codec: str | None = None,
    crf: int | None = None,
    preset: str | None = None,
    audio: bool = True,
    overwrite: bool = False,
    device: str | torch.device | None = None,
    precision: str | None = None,
    decoder_threads: int = 1,
    encoder_threads: int = 1,
    frame_workers: int | None = None,
    progress: Progress | None = None,
) -> VideoResult:
    """Stylize the video ``src`` into ``dst`` (format from ``dst``'s extension); returns a VideoResult.

    ``model``: a loaded Stylizer, a model name or path, a StyleModel or a TransformNet.
    ``stabilization``: temporal stabilisation settings (``None``: every frame on its own); see
    fastnst.video.temporal. ``codec`` (default H.264, VP9 for .webm), ``crf`` (quality; default 18) and
    ``preset`` (x264/x265 speed; default veryfast) control the encoder; ``audio=False`` drops the
    sound. ``frame_workers``: frames through the network at once (None: two on a CPU with two or more
    threads, when the memory budget holds two; fastnst.video.frame_workers). ``progress(done, total)`` is
    called after each stylized frame, in the caller's thread (``total`` from the header, or None when
    unknown). An existing ``dst`` is refused unless ``overwrite``. Raises VideoError (bad input or output),
    FileExistsError, or whatever interrupted it; never leaves a partial file.
    """
    require_av()
    src, dst = Path(src), Path(dst)
    if dst.suffix.lower() not in WRITE_EXTENSIONS:
        raise VideoError(f"{dst}: cannot write {dst.suffix or '(no extension)'} videos (use one of {', '.join(sorted(WRITE_EXTENSIONS))})")
    if dst.exists() and src.exists() and dst.resolve() == src.resolve():
        raise VideoError(f"{dst}: the output would overwrite the input")
    if dst.exists() and not overwrite:
        raise FileExistsError(f"{dst} exists (pass overwrite=True to replace it)")
    frame_stylizer = FrameStylizer(
        model, stabilization=stabilization, preserve_color=preserve_color, strength=strength, device=device, precision=precision
    )
    reader = FrameReader(src, None, decoder_threads, keep_audio=audio)
    try:
        width, height = output_size(*reader.source_size, max_size)
        reader.size = (width, height)
        rate = reader.video.average_rate or reader.video.guessed_rate or Fraction(25)
        total = reader.video.frames or estimated_frames(reader.video)  # Matroska/WebM headers have no count
        if frame_workers is None:
            stylizer = frame_stylizer.stylizer
            frame_workers = choose_workers(stylizer.device, frame_stylizer.independent, width * height, stylizer.pixel_budget())
        with atomic_path(dst) as tmp:
            try:
                writer = VideoWriter(
                    tmp, dst.suffix, width, height, rate, time_base=reader.video.time_base, codec=codec, crf=crf,
                    preset=preset, threads=encoder_threads, audio_template=reader.audio,
                )
            except OSError as exc:
                raise _named(exc, tmp, dst) from None
            try:
                start = time.perf_counter()
                stylize_seconds = _run_pipeline(reader, frame_stylizer, writer, total, progress, frame_workers)
                writer.close()
            except BaseException as exc:
                writer.abort()
                if isinstance(exc, OSError):
                    raise _named(exc, tmp, dst) from None
                raise
        seconds = time.perf_counter() - start
    finally:
        reader.close()
    return VideoResult(dst, writer.frames, width, height, seconds, stylize_seconds, writer.audio_mode, frame_stylizer.scene_cuts,
                       writer.audio_note)


def _named(exc: OSError, tmp: Path, dst: StrPath) -> Exception:
    """An error writing the hidden temporary file (a full disk, a lost mount) as one about ``dst``,
    the name the user gave; other OSErrors unchanged."""
    if exc.filename is not None and Path(exc.filename) == Path(tmp):
        return VideoError(f"{dst}: {exc.strerror or exc}")
    return exc


def _run_pipeline(reader: FrameReader, frame_stylizer: FrameStylizer, writer: VideoWriter, total: int | None,
                  progress: Progress | None, frame_workers: int = 1) -> float:
    """Decode (thread) -> stylize (here; the network in ``frame_workers`` threads, frames at once, when
    there are more than one) -> encode (thread). Returns the seconds the stylizing stage was busy."""
    stop = threading.Event()
    decoded: queue.Queue = queue.Queue(stages.QUEUE_DEPTH)
    to_encode: queue.Queue = queue.Queue(stages.QUEUE_DEPTH * 4)  # audio packets ride along with the frames

    def decode() -> None:
        last_pts = None
        for kind, item in reader.packets():
            if kind == "video":
                last_pts = item.pts
            if not stages.put(decoded if kind == "video" else to_encode, item if kind == "video" else ("audio", item), stop):
                return
        reader.check_truncated(last_pts)
        stages.put(decoded, stages.END, stop)

    def encode() -> None:
        while (item := stages.get(to_encode, stop)) is not stages.END:
            kind, payload = item
            if kind == "audio":
                writer.write_audio(payload)
            else:
                writer.write(*payload)

    workers = [stages.Stage("fastnst-decode", decode, stop), stages.Stage("fastnst-encode", encode, stop)]
    device = frame_stylizer.device
    parallel = frame_stylizer.independent and frame_workers > 1
    network = finisher = None  # FrameWorkers once the first frame has run here (it builds what the network needs)
    in_network: deque = deque()  # (decoded frame, Future of (x, network output)), in frame order
    finishing: deque = deque()  # (decoded frame, Future of the stylized RGB), in frame order
    busy, done = 0.0, 0  # seconds this stage worked or waited for its workers (not for frames or the encoder)

    def network_pass(rgb):
        x = frame_to_tensor(rgb, device)
        return x, frame_stylizer.network_pass(x)

    def finish(x_y) -> object:
        return tensor_to_frame(frame_stylizer.finish(*x_y))

    def emit(item, rgb) -> bool:
        nonlocal done
        if not stages.put(to_encode, ("video", (rgb, item.pts, item.time_base)), stop):
            return False
        done += 1
        if progress is not None:
            progress(done, total)
        return True

    def drain(keep_network: int, keep_finishing: int) -> bool:
        """Move frames on, oldest first, until at most this many are in each step; False if stopped."""
        nonlocal busy
        while len(in_network) > keep_network:
            item, future = in_network.popleft()
            t0 = time.perf_counter()
            finishing.append((item, finisher.submit(future.result())))
            busy += time.perf_counter() - t0
        while len(finishing) > keep_finishing:
            item, future = finishing.popleft()
            t0 = time.perf_counter()
            rgb = future.result()
            busy += time.perf_counter() - t0
            if not emit(item, rgb):
                return False
        return True

    try:
        for stage in workers:  # inside the try: a Ctrl-C here must still stop and join what started
            stage.start()
        while (item := stages.get(decoded, stop)) is not stages.END:
            if network is not None:
                # Frames in flight: one more than the workers in the network (none waits while a frame is
                # handed on), and one being finished, the temporal step, in order, in its own thread.
                in_network.append((item, network.submit(item.rgb)))
                if not drain(network.workers, 1):
                    break
                continue
            t0 = time.perf_counter()  # one frame at a time, all in this thread
            x = frame_to_tensor(item.rgb, device)
            rgb = tensor_to_frame(frame_stylizer.stylize_tensor(x))
            busy += time.perf_counter() - t0
            if not emit(item, rgb):
                break
            if parallel:
                # Two frames through the network at once, one thread each, and the temporal step in a third
                # thread of one: this thread then runs no tensor code of its own, whose parallel regions
                # would wait for cores the workers hold.
                network = FrameWorkers(network_pass, frame_workers)
                finisher = FrameWorkers(finish, 1, threads=1)
        else:
            drain(0, 0)
        stages.put(to_encode, stages.END, stop)
        workers[1].join()
    finally:
        stop.set()  # on an error or Ctrl-C here, the stages see it within 0.1 s
        for pool in (network, finisher):
            if pool is not None:
                pool.close()
        stages.join_all(workers)
    stages.raise_error(workers)
    return busy
