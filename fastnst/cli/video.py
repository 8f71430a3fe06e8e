"""The video half of ``python -m fastnst.stylize``: video files (progress bar, summary) and ``--camera``.

    python -m fastnst.stylize --model starry clip.mp4                 # -> clip_starry.mp4
    python -m fastnst.stylize --model starry clip.mov photo.jpg -o styled/
    python -m fastnst.stylize --model starry --camera 0 -o live.mp4  # preview window, recorded

Which inputs are videos and what their outputs are called is decided with the images, in
fastnst.cli.batch.plan_jobs (see fastnst.video.container.is_video_input and video_output_extension).
"""

from __future__ import annotations

import argparse
import os
import queue
import re
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

from fastnst.video import stages

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi")  # what -o FILE may name for --camera
MS = Fraction(1, 1000)  # the camera recording's time base: frame times in milliseconds
CAPTURE_GRACE_S = 2.0  # how long the end waits for a camera read in progress (a stalled stream may never return)


def add_video_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("video")
    g.add_argument("--crf", type=int, default=None, metavar="N",
                   help="video quality, lower is better (x264/x265/VP9/AV1 CRF; default 18)")
    g.add_argument("--preset", default=None, help="x264/x265 speed preset (default veryfast: the encoder shares the CPU with the network)")
    g.add_argument("--codec", default=None, help="video codec, e.g. libx265, libvpx-vp9, libsvtav1, mpeg4 (default: H.264, VP9 for .webm)")
    g.add_argument("--no-audio", action="store_true", help="drop the sound (default: copy the audio stream unchanged)")
    g.add_argument("--no-stabilize", action="store_true",
                   help="stylize every frame on its own (default: temporal stabilisation, see fastnst/video/temporal.py)")
    g.add_argument("--camera", metavar="N", default=None,
                   help="stylize a live camera (index N, or a device path / video URL): preview window, recording to -o FILE")


def check_video_arguments(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Encoder settings that cannot work are argument errors before anything is done: an audio or
    unknown --codec, a --preset or --crf the codec does not take (see video_io.check_encoder_settings)."""
    if args.crf is not None and not 0 <= args.crf <= 63:
        parser.error("--crf must be in 0..63 (x264/x265: 0..51)")
    if args.codec is None and args.preset is None and args.crf is None:
        return
    camera_ext = Path(args.output).suffix.lower() if args.camera is not None and args.output else None
    try:
        from fastnst.video.container import check_encoder_settings

        check_encoder_settings(args.codec, args.crf, args.preset, camera_ext if camera_ext in VIDEO_SUFFIXES else None)
    except ImportError:
        return  # no PyAV: videos are refused with the install command; images ignore these options
    except ValueError as exc:
        parser.error(f"--{exc}")


def check_video_outputs(args: argparse.Namespace, jobs: list) -> str | None:
    """The encoder settings against each planned video output's container (the default codec depends
    on it: VP9 for .webm, else H.264): an error message, or None when they all work."""
    extensions = sorted({job.dst.suffix.lower() for job in jobs if job.video})
    if not extensions or (args.codec is None and args.preset is None and args.crf is None):
        return None
    from fastnst.video.container import check_encoder_settings

    for ext in extensions:
        try:
            check_encoder_settings(args.codec, args.crf, args.preset, ext)
        except ImportError:
            return None
        except ValueError as exc:
            return f"--{exc}" if ext == extensions[0] and len(extensions) == 1 else f"--{exc} (for the {ext} outputs)"
    return None


def _stabilization(args: argparse.Namespace):
    from fastnst.video.temporal import Stabilization

    return None if args.no_stabilize else Stabilization()


# ----------------------------------------------------------------------------------------------
# Video files
# ----------------------------------------------------------------------------------------------


@dataclass
class VideoOutcome:
    done: list = field(default_factory=list)  # Jobs
    failed: list[tuple[str, str]] = field(default_factory=list)
    results: list = field(default_factory=list)  # VideoResult, one per done job
    interrupted: bool = False


def _frame_bar(total: int | None, name: str, quiet: bool):
    if quiet:
        return None
    from tqdm import tqdm

    # frames, fps and ETA (tqdm's rate and remaining time); disable=None: no bar unless a terminal
    return tqdm(total=total, unit="frame", desc=name, file=sys.stderr, disable=None, dynamic_ncols=True)


def run_video_jobs(stylizer, jobs: list, args: argparse.Namespace, overwrite: bool) -> VideoOutcome:
    """Stylize each video job (and animated image: every frame); a bad one is reported and the others
    go on. Ctrl-C stops (no partial file)."""
    from fastnst.imageio import ImageError
    from fastnst.video.animation import stylize_animation
    from fastnst.video.container import VideoError
    from fastnst.video.pipeline import stylize_video

    outcome = VideoOutcome()
    for job in jobs:
        bar = _frame_bar(None, job.src.name, args.quiet)

        def progress(done: int, total: int | None, bar=bar) -> None:
            if bar is None:
                return
            if total and bar.total != total:
                bar.total = total
                bar.refresh()
            bar.update(done - bar.n)

        try:
            if getattr(job, "animated", False):
                result = stylize_animation(
                    stylizer, job.src, job.dst, max_size=args.max_size, max_pixels=args.max_pixels,
                    stabilization=_stabilization(args), preserve_color=args.preserve_color, strength=args.strength,
                    quality=args.quality, overwrite=overwrite, progress=progress,
                )
            else:
                result = stylize_video(
                    stylizer, job.src, job.dst, max_size=args.max_size, stabilization=_stabilization(args),
                    preserve_color=args.preserve_color, strength=args.strength, codec=args.codec, crf=args.crf,
                    preset=args.preset, audio=not args.no_audio, overwrite=overwrite, progress=progress,
                )
        except KeyboardInterrupt:
            outcome.interrupted = True
            outcome.failed.append((str(job.src), "interrupted (no partial output left)"))
            break
        except (VideoError, ImageError, FileExistsError, ValueError) as exc:
            outcome.failed.append((str(job.src), str(exc)))
        except OSError as exc:
            outcome.failed.append((str(job.src), f"{exc.filename or job.dst}: {exc.strerror or exc}"))
        except RuntimeError as exc:  # e.g. out of memory, an encoder refusing its settings
            outcome.failed.append((str(job.src), f"{type(exc).__name__}: {exc}"))
        else:
            outcome.done.append(job)
            outcome.results.append(result)
        finally:
            if bar is not None:
                bar.close()
    return outcome


def describe(result) -> str:
    audio = f"; audio {result.audio_note or result.audio}" if result.audio else ""
    cuts = f"; {result.scene_cuts} scene cuts" if result.scene_cuts else ""
    return (f"{result.path}: {result.frames} frames {result.width}x{result.height} in {result.seconds:.1f} s, "
            f"{result.fps:.1f} fps end to end ({result.stylize_seconds:.1f} s stylizing){audio}{cuts}")


# ----------------------------------------------------------------------------------------------
# Camera
# ----------------------------------------------------------------------------------------------


def preview_unavailable(cv2) -> str | None:
    """Why no preview window can be shown (None if it can)."""
    info = cv2.getBuildInformation()
    gui = re.search(r"^\s*GUI:\s*(\S+)", info, re.MULTILINE)
    if gui is None or gui.group(1).upper() == "NONE":
        return "this OpenCV has no GUI support (opencv-python-headless); pip install opencv-python for a preview window"
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return "no display (DISPLAY is not set)"
    return None


def is_live_source(source: int | str) -> bool:
    """Whether ``source`` delivers frames in real time (a camera index, a device, a URL), as opposed to a
    regular video file, which can be read at the network's pace."""
    return not (isinstance(source, str) and Path(source).is_file())


def run_camera(stylizer, args: argparse.Namespace) -> int:
    """Stylize a live camera until Ctrl-C, q or Esc (or the end of a stream); the recording is finalised."""
    try:
        import cv2
    except ImportError:
        print('error: --camera needs OpenCV: pip install opencv-python (or opencv-python-headless to record without a preview)',
              file=sys.stderr)
        return 2
    from fastnst.atomic import atomic_path
    from fastnst.video.container import VideoError, VideoWriter, output_size
    from fastnst.video.temporal import FrameStylizer

    output = Path(args.output) if args.output else None
    if output is not None:
        if output.suffix.lower() not in VIDEO_SUFFIXES:
            print(f"error: -o {output}: give a video file name (.mp4, .mkv, .mov, .webm, .avi) to record the camera", file=sys.stderr)
            return 2
        if output.exists() and not args.overwrite:
            print(f"error: {output} exists (use --overwrite to replace it)", file=sys.stderr)
            return 1
    why = preview_unavailable(cv2)
    if why is not None and output is None:
        print(f"error: no preview window: {why}; give -o FILE.mp4 to record instead", file=sys.stderr)
        return 2
    if why is not None and not args.quiet:
        print(f"no preview window: {why}; recording to {output}", file=sys.stderr)

    source = int(args.camera) if str(args.camera).isdigit() else args.camera
    live = is_live_source(source)
    capture = cv2.VideoCapture(source)
    if not capture.isOpened():
        print(f"error: cannot open camera {args.camera}", file=sys.stderr)
        return 1
    frames = FrameStylizer(stylizer, stabilization=_stabilization(args), preserve_color=args.preserve_color,
                           strength=args.strength)
    window = None if why is not None else f"fastnst {stylizer.style} (q or Esc to stop)"
    count, dropped, start = 0, 0, time.perf_counter()
    held = True  # until the camera loop takes the capture over (its capture thread releases it)
    try:
        ok, bgr = capture.read()
        if not ok:
            print(f"error: camera {args.camera} gives no frames", file=sys.stderr)
            return 1
        clock = _frame_clock(cv2, capture, live)  # a live source's time starts at its first frame
        first = (bgr, clock())
        h, w = bgr.shape[:2]
        size = output_size(w, h, args.max_size)
        rate = Fraction(capture.get(cv2.CAP_PROP_FPS) or 30).limit_denominator(1001)
        if output is None:
            held = False
            count, dropped = _camera_loop(cv2, capture, clock, first, live, frames, size, None, window)
        else:
            with atomic_path(output) as tmp:  # finalised and renamed on Ctrl-C too (handled in the loop)
                writer = VideoWriter(tmp, output.suffix, *size, rate, time_base=MS, codec=args.codec,
                                     crf=args.crf, preset=args.preset)
                try:
                    held = False
                    count, dropped = _camera_loop(cv2, capture, clock, first, live, frames, size, writer, window)
                    writer.close()
                except BaseException:
                    writer.abort()
                    raise
    except VideoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # writing the recording (a full disk, a lost mount): named by the file the user gave
        print(f"error: {output}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    finally:
        if held:
            capture.release()
        if window is not None:
            cv2.destroyAllWindows()
    seconds = time.perf_counter() - start
    if not args.quiet:
        saved = f"; recorded to {output}" if output is not None else ""
        print(f"camera: {count} frames in {seconds:.1f} s, {count / max(seconds, 1e-9):.1f} fps, {dropped} dropped{saved}",
              file=sys.stderr)
    return 0


def _frame_clock(cv2, capture, live: bool) -> Callable[[], int]:
    """The time of the frame just read, in ms. A live source's is when it arrived (from the first frame
    on); a video file's is its own timestamp, since the file is read at the network's pace, not in real time."""
    if not live:
        return lambda: round(capture.get(cv2.CAP_PROP_POS_MSEC))
    t0 = time.perf_counter()
    return lambda: round((time.perf_counter() - t0) * 1000)


def _camera_loop(cv2, capture, clock, first, live, frames, size, writer, window) -> tuple[int, int]:
    """Stylize until the stream ends, q/Esc in the preview or Ctrl-C (which ends it cleanly); returns the
    frames stylized and the live frames dropped.

    A thread reads the camera and another encodes, so both overlap with the network. Stylizing and the
    preview stay on this thread: GUI toolkits need the main thread. A live source keeps only its newest
    frame, so the preview and the recording stay live when the network is slower than the camera; a video
    file keeps every frame. The capture thread owns ``capture`` and releases it after its last read; a
    read that hangs (a stalled stream) does not hold up the end beyond CAPTURE_GRACE_S.
    """
    stop = threading.Event()
    captured = stages.Newest() if live else queue.Queue(stages.QUEUE_DEPTH)
    captured.put(first)
    to_encode: queue.Queue = queue.Queue(stages.QUEUE_DEPTH)
    workers = [stages.Stage("fastnst-capture", lambda: _capture(capture, clock, captured, stop), stop)]
    if writer is not None:
        workers.append(stages.Stage("fastnst-encode", lambda: _encode(writer, to_encode, stop), stop))
    count = 0
    try:
        for worker in workers:  # inside the try: a Ctrl-C here must still stop and join what started
            worker.start()
        while (item := stages.get(captured, stop)) is not stages.END:
            bgr, ms = item
            if (bgr.shape[1], bgr.shape[0]) != size:
                bgr = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)
            rgb = frames(bgr[:, :, ::-1])  # OpenCV gives BGR
            if writer is not None and not stages.put(to_encode, (rgb, ms), stop):
                break  # the encoder failed: its error is raised below
            count += 1
            if window is not None and _show(cv2, window, rgb):
                break
    except KeyboardInterrupt:
        pass  # the normal way to stop a live camera: the recording so far is kept
    finally:
        # Every way out: the capture thread ends after its current read, the encoder once it has
        # written the frames already queued (stages.get drains the queue before it gives END).
        stop.set()
        stages.join_all(workers[1:], reraise_interrupt=False)  # a second Ctrl-C still keeps the recording
        stages.join_all(workers[:1], reraise_interrupt=False, timeout=CAPTURE_GRACE_S)
        if not workers[0].launched:  # stopped before the capture thread took the camera over
            capture.release()
    stages.raise_error(workers)
    return count, getattr(captured, "dropped", 0)


def _capture(capture, clock, captured: queue.Queue, stop: threading.Event) -> None:
    """Read (bgr, ms) frames into ``captured`` until the stream ends (then END) or the loop stops; then
    release the capture (in this thread: OpenCV's capture must not be released while another reads it)."""
    try:
        while not stop.is_set():
            ok, bgr = capture.read()  # OpenCV releases the GIL while it waits for the camera and decodes
            if not ok:
                stages.put(captured, stages.END, stop)
                return
            if not stages.put(captured, (bgr, clock()), stop):
                return
    finally:
        capture.release()


def _encode(writer, to_encode: queue.Queue, stop: threading.Event) -> None:
    """Write (rgb, ms) frames until END. The times are the capture's, so the recording keeps the camera's timing."""
    while (item := stages.get(to_encode, stop)) is not stages.END:
        rgb, ms = item
        writer.write(rgb, pts=ms, time_base=MS)


def _show(cv2, window: str, rgb) -> bool:
    """Show a frame in the preview window; True when q or Esc was pressed."""
    cv2.imshow(window, rgb[:, :, ::-1])
    return cv2.waitKey(1) & 0xFF in (ord("q"), 27)
