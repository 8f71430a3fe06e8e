"""stylize_video and the PyAV layer: frame rate, count, size, timestamps, audio, odd sizes, bad files,
atomic output and interrupts. Clips are synthetic, a few frames, made in tmp_path."""

from __future__ import annotations

import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("av")

from fastnst.infer.stylizer import Stylizer  # noqa: E402
from fastnst.video.container import (  # noqa: E402
    VideoError,
    VideoWriter,
    is_video_file,
    is_video_input,
    output_size,
    probe_video,
    read_frames,
    require_av,
)
from fastnst.video.pipeline import stylize_video  # noqa: E402
from fastnst.video.temporal import Stabilization  # noqa: E402
from tests.clips import audio_packets, encode_rgb, frame_times, moving_square_frames, read_all, write_clip  # noqa: E402
from tests.support import random_style_net  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def stylizer() -> Stylizer:
    return Stylizer(random_style_net(base_channels=8, blocks=1), device="cpu", precision="fp32")


@pytest.fixture()
def clip(tmp_path) -> Path:
    return write_clip(tmp_path / "clip.mp4", moving_square_frames(6, 64, 48), fps=12)


def leftovers(directory: Path, keep: set[str]) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name not in keep)


def test_same_rate_count_and_size(stylizer, clip, tmp_path):
    dst = tmp_path / "out.mp4"
    seen = []
    result = stylize_video(stylizer, clip, dst, progress=lambda done, total: seen.append((done, total)))
    info = probe_video(dst)
    assert (info.width, info.height, info.codec) == (64, 48, "h264")
    assert info.fps == Fraction(12)
    frames = read_all(dst)
    assert len(frames) == 6 == result.frames
    assert frame_times(dst) == pytest.approx(frame_times(clip), abs=1e-3)
    assert seen[-1] == (6, 6) and [d for d, _ in seen] == list(range(1, 7))
    src_frames = read_all(clip)
    assert np.abs(frames[0].astype(int) - src_frames[0].astype(int)).mean() > 10  # stylized, not copied
    assert result.fps > 0 and result.audio is None
    assert leftovers(tmp_path, {"clip.mp4", "out.mp4"}) == []


def test_quality_option_changes_the_encoding(stylizer, clip, tmp_path):
    fine = stylize_video(stylizer, clip, tmp_path / "fine.mp4", crf=10, stabilization=None)
    coarse = stylize_video(stylizer, clip, tmp_path / "coarse.mp4", crf=40, stabilization=None)
    assert fine.path.stat().st_size > 1.5 * coarse.path.stat().st_size


def test_other_codec_and_container(stylizer, clip, tmp_path):
    dst = tmp_path / "out.mkv"
    stylize_video(stylizer, clip, dst, codec="mpeg4")
    seen = []  # Matroska headers carry no frame count: progress gets an estimate from the duration
    stylize_video(stylizer, dst, tmp_path / "again.mkv", progress=lambda done, total: seen.append(total))
    assert seen and seen[-1] is not None and abs(seen[-1] - 6) <= 1
    assert probe_video(dst).codec == "mpeg4"
    assert len(read_all(dst)) == 6
    with pytest.raises(VideoError, match="unknown video codec"):
        stylize_video(stylizer, clip, tmp_path / "x.mp4", codec="no-such-codec")
    assert not (tmp_path / "x.mp4").exists()


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"codec": "aac"}, "encodes audio, not video"),
        ({"codec": "png"}, "cannot encode yuv420p"),
        ({"preset": "ludicrous"}, "not one of ultrafast"),
        ({"crf": 60}, r"out of range for libx264 \(0\.\.51\)"),
    ],
)
def test_encoder_settings_are_refused_before_any_frame(stylizer, clip, tmp_path, settings, message):
    seen = []
    with pytest.raises(VideoError, match=message):
        stylize_video(stylizer, clip, tmp_path / "x.mp4", progress=lambda done, total: seen.append(done), **settings)
    assert seen == [] and leftovers(tmp_path, {"clip.mp4"}) == []


def test_odd_size_and_max_size(stylizer, tmp_path):
    odd = write_clip(tmp_path / "odd.mkv", moving_square_frames(4, 65, 49), codec="ffv1", pix_fmt="yuv444p")
    r = stylize_video(stylizer, odd, tmp_path / "odd_out.mp4")
    assert (r.width, r.height) == (64, 48)
    assert read_all(tmp_path / "odd_out.mp4")[0].shape == (48, 64, 3)
    r = stylize_video(stylizer, odd, tmp_path / "small.mp4", max_size=33)
    assert (r.width, r.height) == (32, 24)
    assert output_size(65, 49) == (64, 48)
    assert output_size(1920, 1080, 640) == (640, 360)
    assert output_size(1080, 1920, 640) == (360, 640)
    assert output_size(100, 80, 1000) == (100, 80)  # never enlarged


def test_variable_frame_rate_timestamps_survive(stylizer, tmp_path):
    pts = [0, 7, 30, 33, 51, 60]
    src = write_clip(tmp_path / "vfr.mkv", moving_square_frames(6, 64, 48), pts=pts)
    dst = tmp_path / "vfr_out.mp4"
    stylize_video(stylizer, src, dst)
    assert frame_times(dst) == pytest.approx([p / 100 for p in pts], abs=2e-3)


def test_audio_is_copied_unchanged(stylizer, tmp_path):
    src = write_clip(tmp_path / "talk.mp4", moving_square_frames(6, 64, 48), audio="aac")
    dst = tmp_path / "talk_out.mkv"
    result = stylize_video(stylizer, src, dst)
    assert result.audio == "copied"
    assert probe_video(dst).audio_codec == "aac"
    assert audio_packets(dst) == audio_packets(src)
    silent = stylize_video(stylizer, src, tmp_path / "silent.mp4", audio=False)
    assert silent.audio is None and probe_video(silent.path).audio_codec is None


def test_audio_the_container_cannot_hold_is_reencoded(stylizer, tmp_path):
    src = write_clip(tmp_path / "pcm.avi", moving_square_frames(4, 64, 48), codec="mpeg4", audio="pcm_s16le")
    result = stylize_video(stylizer, src, tmp_path / "pcm_out.webm", crf=40)
    assert result.audio == "re-encoded to libopus"
    info = probe_video(result.path)
    assert info.codec == "vp9" and info.audio_codec == "opus"
    assert len(read_all(result.path)) == 4


def test_existing_output_and_input_are_protected(stylizer, clip, tmp_path):
    dst = tmp_path / "out.mp4"
    dst.write_bytes(b"keep me")
    with pytest.raises(FileExistsError):
        stylize_video(stylizer, clip, dst)
    assert dst.read_bytes() == b"keep me"
    stylize_video(stylizer, clip, dst, overwrite=True)
    assert len(read_all(dst)) == 6
    with pytest.raises(VideoError, match="overwrite the input"):
        stylize_video(stylizer, clip, clip, overwrite=True)
    with pytest.raises(VideoError, match="cannot write .gif"):
        stylize_video(stylizer, clip, tmp_path / "out.gif")


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d: (d / "garbage.mp4").write_bytes(np.random.default_rng(0).bytes(5000)) and d / "garbage.mp4", "not a readable video"),
        (lambda d: (d / "empty.mp4").write_bytes(b"") is not None and d / "empty.mp4", "empty file"),
        (lambda d: d / "missing.mp4", "file not found"),
        (lambda d: write_clip(d / "no_frames.mkv", [], codec="mpeg4", audio="pcm_s16le"), "no decodable video frames"),
    ],
    ids=["garbage", "empty", "missing", "zero-frames"],
)
def test_bad_inputs_are_clear_errors_and_leave_nothing(stylizer, tmp_path, make, message):
    src = make(tmp_path)
    before = {p.name for p in tmp_path.iterdir()}
    with pytest.raises(VideoError, match=message) as err:
        stylize_video(stylizer, src, tmp_path / "out.mp4")
    assert str(err.value).startswith(str(src))
    assert leftovers(tmp_path, before) == []


def test_a_file_without_a_video_stream_is_refused(stylizer, tmp_path):
    av = require_av()
    path = tmp_path / "sound.mka"
    with av.open(str(path), "w", format="matroska") as out:
        stream = out.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate, frame.pts = 8000, 0
        for p in stream.encode(frame):
            out.mux(p)
    with pytest.raises(VideoError, match="no video stream"):
        stylize_video(stylizer, path, tmp_path / "out.mp4")
    assert not is_video_file(path)
    assert not (tmp_path / "out.mp4").exists()


def test_truncated_and_corrupt_files(stylizer, tmp_path):
    frames = moving_square_frames(30, 64, 48)
    whole = write_clip(tmp_path / "whole.mp4", frames, options={"movflags": "+faststart"})
    data = whole.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])  # the index (moov) is at the front: half the frames decode
    with pytest.raises(VideoError, match="truncated"):
        stylize_video(stylizer, cut, tmp_path / "cut_out.mp4")
    with pytest.raises(VideoError, match="truncated"):
        list(read_frames(cut))
    assert len(list(read_frames(whole))) == 30
    plain = write_clip(tmp_path / "plain.mp4", frames)  # the index at the end: a cut file cannot be opened
    cut2 = tmp_path / "cut2.mp4"
    cut2.write_bytes(plain.read_bytes()[: len(plain.read_bytes()) // 2])
    with pytest.raises(VideoError, match="not a readable video"):
        stylize_video(stylizer, cut2, tmp_path / "cut2_out.mp4")
    assert leftovers(tmp_path, {"whole.mp4", "cut.mp4", "plain.mp4", "cut2.mp4"}) == []


def test_interrupt_leaves_no_file(stylizer, tmp_path):
    src = write_clip(tmp_path / "long.mp4", moving_square_frames(20, 64, 48))

    def interrupt(done, total):
        if done == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        stylize_video(stylizer, src, tmp_path / "out.mp4", progress=interrupt)
    assert leftovers(tmp_path, {"long.mp4"}) == []


def test_an_interrupt_while_the_stages_start_joins_them_before_the_writer_is_aborted(stylizer, tmp_path, monkeypatch):
    import threading

    from fastnst.video import stages

    src = write_clip(tmp_path / "long.mp4", moving_square_frames(20, 64, 48))
    real_start, aborted_with = stages.Stage.start, []

    def start(self):  # the encode stage starts, and the Ctrl-C lands in its start() (as a SIGTERM can)
        real_start(self)
        if self.name == "fastnst-encode":
            raise KeyboardInterrupt

    def abort(self, real=VideoWriter.abort):
        aborted_with.append(sorted(t.name for t in threading.enumerate() if t.name.startswith("fastnst-")))
        real(self)

    monkeypatch.setattr(stages.Stage, "start", start)
    monkeypatch.setattr(VideoWriter, "abort", abort)
    with pytest.raises(KeyboardInterrupt):
        stylize_video(stylizer, src, tmp_path / "out.mp4")
    assert aborted_with == [[]]  # no stage still running when the writer was aborted
    assert leftovers(tmp_path, {"long.mp4"}) == []


def test_probe_and_is_video_file_look_at_content(clip, tmp_path):
    disguised = tmp_path / "video.bin"
    disguised.write_bytes(clip.read_bytes())
    assert is_video_file(disguised)
    from PIL import Image

    Image.new("RGB", (8, 8)).save(tmp_path / "still.png")
    assert not is_video_file(tmp_path / "still.png")
    (tmp_path / "notes.txt").write_text("hello")
    assert not is_video_file(tmp_path / "notes.txt")
    info = probe_video(clip)
    assert (info.width, info.height, info.frames, info.fps) == (64, 48, 6, Fraction(12))
    assert len(list(read_frames(clip, size=(32, 24)))) == 6
    assert next(iter(read_frames(clip, size=(32, 24)))).shape == (24, 32, 3)


def test_stabilised_output_is_steadier(stylizer, tmp_path):
    src = write_clip(tmp_path / "noisy.mkv", moving_square_frames(8, 64, 48, noise=6.0), codec="ffv1", pix_fmt="yuv444p")
    a = read_all(stylize_video(stylizer, src, tmp_path / "a.mkv", codec="ffv1", stabilization=None).path)
    b = read_all(stylize_video(stylizer, src, tmp_path / "b.mkv", codec="ffv1", stabilization=Stabilization()).path)
    band = slice(0, 10)  # rows the square never enters
    diff = lambda fr: np.mean([np.abs(fr[t][band].astype(int) - fr[t - 1][band].astype(int)).mean() for t in range(1, 8)])  # noqa: E731
    assert diff(b) < 0.6 * diff(a)


def test_missing_pyav_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "av", None)
    with pytest.raises(ImportError, match="pip install av"):
        require_av()


@pytest.mark.parametrize("degrees", [90, -90])
def test_phone_rotation_is_turned_upright(stylizer, tmp_path, degrees):
    """Phones store portrait video as landscape frames plus a rotation in the container's display
    matrix; the stylized video is written upright (no matrix), as players show the input."""
    av = require_av()
    path = tmp_path / "phone.mp4"
    img = np.zeros((48, 64, 3), np.uint8)
    img[:12, :12] = 255  # a white top-left corner
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.set_display_rotation(degrees)
        encode_rgb(out, stream, [img] * 3)
    info = probe_video(path)
    assert (info.width, info.height, info.rotation) == (48, 64, degrees % 360)
    upright = next(iter(read_frames(path)))
    assert upright.shape == (64, 48, 3)
    # counter-clockwise by 90 moves the top-left corner to the bottom-left; clockwise to the top-right
    corner = upright[-10:, :10] if degrees == 90 else upright[:10, -10:]
    assert corner.mean() > 200
    result = stylize_video(stylizer, path, tmp_path / "out.mp4")
    assert (result.width, result.height) == (48, 64)
    out_info = probe_video(result.path)
    assert (out_info.width, out_info.height, out_info.rotation) == (48, 64, 0)


def _still_then_video(path: Path, attached: bool) -> Path:
    """A file whose first video stream is one still picture (a cover, or a thumbnail track), larger than
    the real video that follows it (8 frames of 64x48)."""
    av = require_av()
    with av.open(str(path), "w", format="mp4" if path.suffix == ".mp4" else "matroska") as out:
        still = out.add_stream("mjpeg", rate=1)
        still.width, still.height, still.pix_fmt = 96, 96, "yuvj420p"
        if attached:
            still.disposition = av.stream.Disposition.attached_pic
        video = out.add_stream("libx264", rate=10)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        frame = av.VideoFrame.from_ndarray(np.full((96, 96, 3), 200, np.uint8), format="rgb24").reformat(format="yuvj420p")
        frame.pts = 0
        for packet in [*still.encode(frame), *still.encode()]:
            out.mux(packet)
        encode_rgb(out, video, moving_square_frames(8, 64, 48))
    return path


@pytest.mark.parametrize("name, attached", [("thumb.mkv", False), ("cover.mp4", True)])
def test_the_real_video_stream_is_stylized_not_a_still_before_it(stylizer, tmp_path, name, attached):
    src = _still_then_video(tmp_path / name, attached)
    assert (probe_video(src).width, probe_video(src).height) == (64, 48)
    result = stylize_video(stylizer, src, tmp_path / "out.mp4")
    assert (result.frames, result.width, result.height) == (8, 64, 48)


def test_a_sound_file_with_a_cover_picture_is_not_a_video(stylizer, tmp_path):
    av = require_av()
    path = tmp_path / "song.mp3"
    with av.open(str(path), "w") as out:
        sound = out.add_stream("libmp3lame", rate=44100)
        cover = out.add_stream("mjpeg", rate=1)  # the MP3 muxer marks it as an attached picture
        cover.width, cover.height, cover.pix_fmt = 32, 32, "yuvj420p"
        frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), 200, np.uint8), format="rgb24").reformat(format="yuvj420p")
        frame.pts = 0
        for packet in [*cover.encode(frame), *cover.encode()]:
            out.mux(packet)
        samples = av.AudioFrame.from_ndarray(np.zeros((1, 4410), np.float32), format="fltp", layout="mono")
        samples.sample_rate, samples.pts = 44100, 0
        for packet in [*sound.encode(samples), *sound.encode()]:
            out.mux(packet)
    assert not is_video_file(path)
    assert is_video_input(path)  # to the video reader, which says what it is
    with pytest.raises(VideoError, match=r"song.mp3: no video stream \(audio only\)"):
        stylize_video(stylizer, path, tmp_path / "out.mp4")
    assert leftovers(tmp_path, {"song.mp3"}) == []


def test_truncated_webm_is_found_from_the_whole_file_duration(stylizer, tmp_path):
    """WebM declares only the whole file's duration: a cut file is one where neither the picture nor
    the sound gets near it; a picture that stops before its sound is not cut."""
    whole = write_clip(tmp_path / "whole.webm", moving_square_frames(30, 64, 48), codec="libvpx-vp9", audio="libopus",
                       audio_rate=48000)
    cut = tmp_path / "cut.webm"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(VideoError, match="cut.webm: truncated video: the file ends at"):
        stylize_video(stylizer, cut, tmp_path / "cut_out.webm", crf=40)
    with pytest.raises(VideoError, match="truncated"):
        stylize_video(stylizer, cut, tmp_path / "cut_out.webm", crf=40, audio=False)
    av = require_av()
    short_picture = tmp_path / "talk.webm"
    with av.open(str(short_picture), "w", format="webm") as out:
        video = out.add_stream("libvpx-vp9", rate=10)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        sound = out.add_stream("libopus", rate=48000)
        encode_rgb(out, video, moving_square_frames(3, 64, 48))  # 0.3 s of picture
        for i in range(0, 48000, 960):  # 1 s of sound
            samples = av.AudioFrame.from_ndarray(np.zeros((2, 960), np.float32), format="fltp", layout="stereo")
            samples.sample_rate, samples.pts = 48000, i
            for packet in sound.encode(samples):
                out.mux(packet)
        for packet in sound.encode():
            out.mux(packet)
    assert stylize_video(stylizer, short_picture, tmp_path / "talk_out.webm", crf=40).frames == 3
    assert leftovers(tmp_path, {"whole.webm", "cut.webm", "talk.webm", "talk_out.webm"}) == []


def test_a_full_disk_names_the_output_not_the_temporary_file(stylizer, clip, tmp_path, monkeypatch):
    import errno
    import os

    from fastnst.video.container import VideoWriter

    def full(self, *args):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), self.container.name)

    monkeypatch.setattr(VideoWriter, "write", full)
    dst = tmp_path / "out.mp4"
    with pytest.raises(VideoError, match=f"^{dst}: No space left on device$"):
        stylize_video(stylizer, clip, dst)
    assert leftovers(tmp_path, {"clip.mp4"}) == []
