"""`python -m fastnst.stylize` with videos: naming, mixing with images, refusals, bad files, camera."""

from __future__ import annotations

import errno
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

pytest.importorskip("av")

from fastnst.cli import video as video_cli  # noqa: E402
from fastnst.cli.stylize import main  # noqa: E402
from fastnst.nets.modelfile import save_style_model  # noqa: E402
from fastnst.video.container import VideoError, VideoWriter, video_output_extension  # noqa: E402
from fastnst.video.temporal import FrameStylizer  # noqa: E402
from tests.clips import audio_packets, frame_times, moving_square_frames, read_all, write_clip  # noqa: E402
from tests.support import ROOT, random_style_net, subprocess_env  # noqa: E402

pytestmark = pytest.mark.usefixtures("default_malloc", "one_thread")


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    net = random_style_net(base_channels=8, blocks=1)
    path = tmp_path_factory.mktemp("model") / "mosaic.safetensors"
    save_style_model(path, net, {"style": "mosaic", "steps": 1})
    return path


def run(model: Path, *args: str) -> int:
    return main(["--model", str(model), "--precision", "fp32", *args])


def test_video_default_name_frames_and_summary(model, tmp_path, capsys):
    src = write_clip(tmp_path / "walk.mp4", moving_square_frames(5, 64, 48), audio="aac")
    assert run(model, str(src)) == 0
    out = tmp_path / "walk_mosaic.mp4"
    assert len(read_all(out)) == 5
    assert audio_packets(out) == audio_packets(src)
    err = capsys.readouterr().err
    assert "done 1, skipped 0, failed 0" in err
    assert "5 frames 64x48" in err and "fps end to end" in err and "audio copied" in err


def test_avi_becomes_mp4_and_probing_ignores_the_extension(model, tmp_path):
    avi = write_clip(tmp_path / "old.avi", moving_square_frames(4, 64, 48), codec="mpeg4")
    odd = tmp_path / "clip.data"
    odd.write_bytes(write_clip(tmp_path / "tmp.mkv", moving_square_frames(3, 64, 48)).read_bytes())
    assert run(model, "-q", str(avi), str(odd)) == 0
    assert len(read_all(tmp_path / "old_mosaic.mp4")) == 4
    assert len(read_all(tmp_path / "clip_mosaic.mp4")) == 3


def test_camera_avi_with_pcm_sound_becomes_mp4_with_aac(model, tmp_path, capsys):
    # what most cameras write: Motion JPEG with 48 kHz stereo PCM in an AVI
    src = write_clip(tmp_path / "cam.avi", moving_square_frames(3, 64, 48), codec="mjpeg", pix_fmt="yuvj420p",
                     audio="pcm_s16le", audio_rate=48000, audio_layout="stereo")
    assert run(model, str(src)) == 0
    out = tmp_path / "cam_mosaic.mp4"
    assert len(read_all(out)) == 3 and audio_packets(out)
    assert "audio re-encoded to aac (.mp4 cannot hold pcm_s16le audio)" in capsys.readouterr().err


def test_images_and_videos_mixed_into_a_directory(model, tmp_path):
    src = tmp_path / "in"
    write_clip(src / "a.mkv", moving_square_frames(3, 64, 48))
    Image.fromarray(moving_square_frames(1, 40, 30)[0]).save(src / "b.png")
    (src / "notes.txt").write_text("not media")
    assert run(model, "-q", str(src), "-o", str(tmp_path / "out")) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a_mosaic.mkv", "b_mosaic.png"]
    assert len(read_all(tmp_path / "out" / "a_mosaic.mkv")) == 3


def test_single_output_file_and_max_size(model, tmp_path):
    src = write_clip(tmp_path / "c.mp4", moving_square_frames(3, 64, 48))
    assert run(model, "-q", str(src), "-o", str(tmp_path / "named.webm"), "--max-size", "32", "--crf", "40") == 0
    frames = read_all(tmp_path / "named.webm")
    assert len(frames) == 3 and frames[0].shape == (24, 32, 3)
    assert run(model, "-q", str(src), "-o", str(tmp_path / "still.png")) == 1  # a video cannot become a png
    assert not (tmp_path / "still.png").exists()


def test_output_that_is_an_existing_file_is_an_argument_error(model, tmp_path, capsys):
    a = write_clip(tmp_path / "a.mp4", moving_square_frames(3, 64, 48))
    b = write_clip(tmp_path / "b.mp4", moving_square_frames(3, 64, 48))
    (tmp_path / "notes").write_text("keep")
    assert run(model, str(a), str(b), "-o", str(tmp_path / "notes")) == 2
    assert f"-o {tmp_path / 'notes'} is an existing file, not a directory" in capsys.readouterr().err
    assert run(model, str(a), "-o", str(tmp_path / "notes" / "x.mp4")) == 2
    assert f"{tmp_path / 'notes'} is a file, not a directory" in capsys.readouterr().err
    assert (tmp_path / "notes").read_text() == "keep"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mp4", "b.mp4", "notes"]


def test_existing_output_refused_unless_overwrite(model, tmp_path, capsys):
    src = write_clip(tmp_path / "c.mp4", moving_square_frames(3, 64, 48))
    dst = tmp_path / "c_mosaic.mp4"
    dst.write_bytes(b"precious")
    assert run(model, str(src)) == 1
    assert dst.read_bytes() == b"precious"
    assert "exists (use --overwrite" in capsys.readouterr().err
    assert run(model, "-q", str(src), "--overwrite") == 0
    assert len(read_all(dst)) == 3


def test_bad_video_does_not_stop_the_batch(model, tmp_path, capsys):
    good = write_clip(tmp_path / "good.mp4", moving_square_frames(3, 64, 48))
    whole = write_clip(tmp_path / "whole.mp4", moving_square_frames(30, 64, 48), options={"movflags": "+faststart"})
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    whole.unlink()
    assert run(model, str(bad), str(good)) == 1
    err = capsys.readouterr().err
    assert "done 1, skipped 0, failed 1" in err
    assert f"failed {bad}: truncated video" in err or f"failed {bad}: not a readable video" in err
    assert (tmp_path / "good_mosaic.mp4").exists() and not (tmp_path / "bad_mosaic.mp4").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.mp4", "good.mp4", "good_mosaic.mp4"]


def interrupt_on_call(monkeypatch, method: str, n: int) -> None:
    """Make FrameStylizer.<method> raise KeyboardInterrupt (a Ctrl-C) on its n-th call."""
    calls = []
    real = getattr(FrameStylizer, method)

    def interrupted(self, *args):
        calls.append(1)
        if len(calls) == n:
            raise KeyboardInterrupt
        return real(self, *args)

    monkeypatch.setattr(FrameStylizer, method, interrupted)


def test_ctrl_c_leaves_no_file_and_exits_130(model, tmp_path, monkeypatch):
    src = write_clip(tmp_path / "c.mp4", moving_square_frames(10, 64, 48))
    interrupt_on_call(monkeypatch, "finish", 3)
    assert run(model, "-q", str(src)) == 130
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.mp4"]


def test_sigterm_leaves_no_file_and_exits_130(model, tmp_path):
    """kill, timeout, docker stop and Slurm send SIGTERM: it stops a video as Ctrl-C does."""
    work = tmp_path / "work"
    src = write_clip(work / "long.mp4", moving_square_frames(60, 320, 240))  # seconds of work to interrupt
    (tmp_path / "tmp").mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "fastnst.stylize", "--model", str(model), "--precision", "fp32", "-q", str(src)],
                            cwd=ROOT, env=subprocess_env(tmp_path / "tmp"), stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not list(work.glob(".long_mosaic.mp4.*.tmp")):  # the video is being written
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 130
    finally:
        proc.kill()
    assert "interrupted (no partial output left)" in proc.stderr.read()
    assert sorted(p.name for p in work.iterdir()) == ["long.mp4"]


def test_camera_records_from_a_stand_in_video(model, tmp_path, capsys, monkeypatch):
    pytest.importorskip("cv2")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    cam = write_clip(tmp_path / "cam.avi", moving_square_frames(12, 64, 48), codec="mpeg4")
    # no display and nowhere to record: a clear message, nothing done
    assert run(model, "--camera", str(cam)) == 2
    assert "no preview window" in capsys.readouterr().err
    assert run(model, "--camera", str(cam), "-o", str(tmp_path / "live.mp4")) == 0
    err = capsys.readouterr().err
    assert "no preview window" in err and "camera: 12 frames" in err and "0 dropped" in err
    # a video file in place of the camera: every frame kept, at the file's own times
    assert len(read_all(tmp_path / "live.mp4")) == 12
    assert frame_times(tmp_path / "live.mp4") == pytest.approx(frame_times(cam), abs=1e-3)
    assert run(model, "--camera", str(cam), "-o", str(tmp_path / "live.mp4")) == 1  # exists
    assert run(model, "--camera", str(tmp_path / "no_such_camera"), "-o", str(tmp_path / "x.mp4")) == 1
    assert "cannot open camera" in capsys.readouterr().err
    assert not (tmp_path / "x.mp4").exists()


def test_camera_ctrl_c_finalises_the_recording(model, tmp_path, monkeypatch):
    pytest.importorskip("cv2")
    monkeypatch.delenv("DISPLAY", raising=False)
    cam = write_clip(tmp_path / "cam.avi", moving_square_frames(8, 64, 48), codec="mpeg4")
    interrupt_on_call(monkeypatch, "__call__", 4)
    assert run(model, "-q", "--camera", str(cam), "-o", str(tmp_path / "rec.mkv")) == 0
    assert len(read_all(tmp_path / "rec.mkv")) == 3  # the frames before Ctrl-C, in a complete file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cam.avi", "rec.mkv"]


@pytest.mark.parametrize("error", ["video", "os"])
def test_camera_writer_error_is_one_line_and_leaves_no_file(model, tmp_path, capsys, monkeypatch, error):
    pytest.importorskip("cv2")
    monkeypatch.delenv("DISPLAY", raising=False)
    cam = write_clip(tmp_path / "cam.avi", moving_square_frames(8, 64, 48), codec="mpeg4")
    real_write, calls = VideoWriter.write, []

    def failing_write(self, *args, **kwargs):
        calls.append(threading.current_thread().name)
        if len(calls) == 3:
            raise VideoError("the disk is full") if error == "video" else OSError(errno.ENOSPC, "No space left on device")
        return real_write(self, *args, **kwargs)

    monkeypatch.setattr(VideoWriter, "write", failing_write)
    assert run(model, "-q", "--camera", str(cam), "-o", str(tmp_path / "rec.mp4")) == 1
    expected = "the disk is full" if error == "video" else f"{tmp_path / 'rec.mp4'}: No space left on device"
    assert capsys.readouterr().err == f"error: {expected}\n"
    assert set(calls) == {"fastnst-encode"}  # written on the encode thread, raised here
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cam.avi"]
    assert not [t for t in threading.enumerate() if t.name.startswith("fastnst-")]


def test_preview_detection_reads_the_opencv_build():
    class FakeCv2:
        def __init__(self, gui: str) -> None:
            self.gui = gui

        def getBuildInformation(self) -> str:  # noqa: N802 - OpenCV's name
            return f"General configuration\n  GUI:                           {self.gui}\n"

    assert "no GUI support" in video_cli.preview_unavailable(FakeCv2("NONE"))
    assert video_cli.preview_unavailable(FakeCv2("GTK3")) in (None, "no display (DISPLAY is not set)")


def test_bad_video_arguments_are_usage_errors(model, tmp_path):
    with pytest.raises(SystemExit):
        run(model, "--camera", "0", str(tmp_path / "x.mp4"))
    with pytest.raises(SystemExit):
        run(model, str(tmp_path / "x.mp4"), "--crf", "99")
    assert [video_output_extension(Path(f"a{e}")) for e in (".mov", ".webm", ".avi", ".xyz")] == [".mov", ".webm", ".mp4", ".mp4"]


def exit_status(model: Path, *args: str) -> int:
    """run()'s status, or the parser's (argparse exits with 2 on an argument error)."""
    try:
        return run(model, *args)
    except SystemExit as exc:
        return exc.code


@pytest.mark.parametrize(
    "options, message",
    [
        (["--codec", "aac"], "--codec 'aac' encodes audio, not video: give a video codec, e.g. libx264"),
        (["--codec", "png"], "--codec 'png' cannot encode yuv420p"),
        (["--preset", "ludicrous"], "--preset 'ludicrous' is not one of ultrafast, superfast, veryfast"),
        (["--crf", "60"], "--crf 60 is out of range for libx264 (0..51)"),
        (["--codec", "mpeg4", "--crf", "20"], "--crf 20: CRF is for libx264"),
        (["--preset", "slow", "-o", "OUT/clip.webm"], "--preset 'slow': presets are for libx264 and libx265, not libvpx-vp9"),
        (["--codec", "mpeg4", "-o", "OUT/clip.webm"], "--codec 'mpeg4': .webm files cannot hold it (they can hold libvpx-vp9"),
    ],
    ids=["audio-codec", "image-codec", "preset", "crf-x264", "crf-mpeg4", "preset-vp9", "codec-container"],
)
def test_encoder_settings_that_cannot_work_are_argument_errors(model, tmp_path, capsys, options, message):
    src = write_clip(tmp_path / "c.mp4", moving_square_frames(3, 64, 48))
    options = [o.replace("OUT", str(tmp_path / "out")) for o in options]
    out = ["-o", str(tmp_path / "out")] if "-o" not in options else []
    assert exit_status(model, str(src), *out, *options) == 2
    assert message in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.mp4"]  # nothing done, no empty folder

