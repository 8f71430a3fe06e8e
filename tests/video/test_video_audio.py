"""Audio through stylize_video: every output container with the audio formats cameras, phones and the
web write (PCM, AAC, MP3, Opus, Vorbis; 44.1 and 48 kHz; mono and stereo) is copied or re-encoded, never
refused. Clips are two frames with 0.2 s of sound."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

av = pytest.importorskip("av")

from fastnst.infer.stylizer import Stylizer  # noqa: E402
from fastnst.video.container import WRITE_EXTENSIONS  # noqa: E402
from fastnst.video.pipeline import stylize_video  # noqa: E402
from tests.clips import moving_square_frames, write_clip  # noqa: E402
from tests.support import random_style_net  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

FPS, FRAMES = 10, 2
SECONDS = FRAMES / FPS
# (encoder, the container it usually comes in)
SOURCES = [("pcm_s16le", ".avi"), ("aac", ".mp4"), ("libmp3lame", ".avi"), ("libopus", ".mkv"), ("vorbis", ".webm")]
# What each output container may end up holding (FFmpeg codec names).
HOLDS = {
    ".mp4": {"aac", "mp3", "opus"}, ".m4v": {"aac", "mp3", "opus"}, ".mov": {"aac", "mp3", "pcm_s16le"},
    ".mkv": {"aac", "mp3", "opus", "vorbis", "pcm_s16le"}, ".webm": {"opus", "vorbis"}, ".avi": {"aac", "mp3", "pcm_s16le", "vorbis"},
}


def _cases():
    for (codec, container), rate, layout in itertools.product(SOURCES, (44100, 48000), ("mono", "stereo")):
        if codec == "libopus" and rate == 44100:
            continue  # Opus is 48 kHz only
        if codec == "vorbis" and layout == "mono":
            continue  # FFmpeg's own Vorbis encoder writes stereo only
        for out in sorted(WRITE_EXTENSIONS):
            yield pytest.param(codec, container, rate, layout, out, id=f"{codec}-{rate}-{layout}{container}-to{out}")


@pytest.fixture(scope="module")
def stylizer() -> Stylizer:
    return Stylizer(random_style_net(base_channels=4, blocks=1), device="cpu", precision="fp32")


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """One clip per audio format, made on first use and shared by the output containers."""
    root, made = tmp_path_factory.mktemp("sources"), {}

    def get(codec: str, container: str, rate: int, layout: str) -> Path:
        key = (codec, container, rate, layout)
        if key not in made:
            video = "libvpx-vp9" if container == ".webm" else "mpeg4"
            made[key] = write_clip(root / f"{codec}_{rate}_{layout}{container}", moving_square_frames(FRAMES, 32, 24),
                                   fps=FPS, codec=video, audio=codec, audio_rate=rate, audio_layout=layout)
        return made[key]

    return get


def audio_facts(path: Path) -> tuple[str, int, int, float]:
    """(codec, sample rate, channels, seconds of decoded sound) of a file's first audio stream."""
    with av.open(str(path)) as c:
        stream = c.streams.audio[0]
        samples = sum(frame.samples for frame in c.decode(stream))
        ctx = stream.codec_context
        return ctx.codec.canonical_name, ctx.sample_rate, ctx.layout.nb_channels, samples / ctx.sample_rate


@pytest.mark.parametrize("codec, container, rate, layout, out", list(_cases()))
def test_audio_format_into_every_container(stylizer, sources, tmp_path, codec, container, rate, layout, out):
    src = sources(codec, container, rate, layout)
    result = stylize_video(stylizer, src, tmp_path / f"out{out}", stabilization=None, crf=40)
    assert result.frames == FRAMES
    name, out_rate, channels, seconds = audio_facts(result.path)
    assert name in HOLDS[out]
    assert channels == (1 if layout == "mono" else 2)
    if result.audio == "copied":
        assert (out_rate, result.audio_note) == (rate, None)
    else:
        assert result.audio.startswith("re-encoded to ") and f"{out} cannot hold" in result.audio_note
        assert out_rate == (48000 if name == "opus" else rate)  # Opus has no 44.1 kHz
    assert seconds == pytest.approx(SECONDS, abs=0.06)  # the whole sound, give or take encoder padding


@pytest.mark.parametrize("codec, container, out", [("aac", ".mp4", ".webm"), ("pcm_s16le", ".mkv", ".mp4"), ("libopus", ".mkv", ".mov")])
def test_surround_sound_keeps_its_channels(stylizer, sources, tmp_path, codec, container, out):
    src = sources(codec, container, 48000, "5.1(side)" if codec == "pcm_s16le" else "5.1")
    result = stylize_video(stylizer, src, tmp_path / f"out{out}", stabilization=None, crf=40)
    assert result.audio.startswith("re-encoded")
    assert audio_facts(result.path)[2] == 6
