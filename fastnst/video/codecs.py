"""What each output container and codec can take: the encoder settings (codec, CRF, preset) checked before
any work, and the audio a container holds as it is or re-encodes (at a rate and channel layout the encoder
takes)."""

from __future__ import annotations

import os

# Output containers by extension: FFmpeg muxer and default video codec.
_MUXERS: dict[str, tuple[str, str]] = {
    ".mp4": ("mp4", "libx264"),
    ".m4v": ("mp4", "libx264"),
    ".mov": ("mov", "libx264"),
    ".mkv": ("matroska", "libx264"),
    ".webm": ("webm", "libvpx-vp9"),
    ".avi": ("avi", "libx264"),
}
WRITE_EXTENSIONS: frozenset[str] = frozenset(_MUXERS)
# Containers a stylized video keeps by default; others (.avi, unusual extensions) become .mp4, since
# H.264 in AVI plays in few players.
KEEP_CONTAINERS: frozenset[str] = frozenset({".mp4", ".m4v", ".mov", ".mkv", ".webm"})

DEFAULT_CRF = 18  # x264's "visually lossless" end; lower is better quality and bigger files
DEFAULT_PRESET = "veryfast"  # x264 presets trade encoder CPU time (taken from the network) for size
_CRF_CODECS = {"libx264", "libx265", "libvpx-vp9", "libsvtav1"}
_PRESET_CODECS = {"libx264", "libx265"}
# The CRF scale of each codec (8-bit x264/x265: 0..51; VP9 and SVT-AV1: 0..63).
_CRF_RANGES = {"libx264": (0, 51), "libx265": (0, 51), "libvpx-vp9": (0, 63), "libsvtav1": (0, 63)}
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow", "placebo")
# Named in messages as the video codecs to choose from (those this PyAV has).
_SUGGESTED_CODECS = ("libx264", "libx265", "libvpx-vp9", "libvpx", "libsvtav1", "libaom-av1", "mpeg4", "ffv1")
# Audio codecs an output container takes unchanged (FFmpeg codec names); anything else is re-encoded.
# Explicit for MP4, MOV and WebM: their muxers list codecs they then refuse when the header is written
# (stereo PCM into MP4, Opus into MOV), or that few players play from that container (PCM or Vorbis in
# MP4). Matroska and AVI take whatever FFmpeg's muxer accepts.
_PCM = frozenset({"pcm_s16le", "pcm_s16be", "pcm_s24le", "pcm_s24be", "pcm_s32le", "pcm_s32be", "pcm_f32le",
                  "pcm_f32be", "pcm_f64le", "pcm_f64be", "pcm_u8", "pcm_s8", "pcm_alaw", "pcm_mulaw"})
_AUDIO_COPY: dict[str, frozenset[str]] = {
    "mp4": frozenset({"aac", "mp3", "ac3", "eac3", "alac", "opus", "flac"}),
    "mov": frozenset({"aac", "mp3", "ac3", "eac3", "alac"}) | _PCM,
    "webm": frozenset({"opus", "vorbis"}),
}
# The encoder for audio a container cannot hold, by muxer (AAC otherwise): WebM allows only Opus and
# Vorbis, and AVI players expect MP3.
_AUDIO_REENCODE = {"webm": "libopus", "avi": "libmp3lame"}
_AUDIO_MAX_CHANNELS = {"libmp3lame": 2}  # more channels are mixed down to stereo
# A layout by channel count that both AAC and Opus take (Opus refuses 2.1, 4.0 and 5.1(side), for one).
_STANDARD_LAYOUTS = {1: "mono", 2: "stereo", 3: "3.0", 4: "quad", 5: "5.0", 6: "5.1", 7: "6.1", 8: "7.1"}


def require_av():
    """The ``av`` module, or an ImportError that names the install command."""
    try:
        import av
    except ImportError:
        raise ImportError('video support needs PyAV: pip install av (or pip install -e ".[video]")') from None
    return av


def _audio_rate(codec, rate: int) -> int:
    """The sample rate to encode ``rate`` Hz audio at: the same if ``codec`` takes it, else the next
    higher rate it takes (Opus has no 44.1 kHz: 48 kHz), else its highest."""
    rates = codec.audio_rates
    if not rates or rate in rates:
        return rate
    higher = [r for r in rates if r >= rate]
    return min(higher) if higher else max(rates)


def _video_encoders(av, muxer: str | None = None) -> str:
    """The suggested video codecs this PyAV has (and ``muxer`` can hold), for messages."""
    names = []
    for name in _SUGGESTED_CODECS:
        try:
            av.Codec(name, "w")
        except ValueError:
            continue
        names.append(name)
    if muxer is not None:
        supported = _muxer_codecs(av, muxer)
        names = [n for n in names if n in supported]
    return ", ".join(names)


def _muxer_codecs(av, muxer: str) -> set[str]:
    container = av.open(os.devnull, "w", format=muxer)  # nothing is written until the header
    try:
        return set(container.supported_codecs)
    finally:
        container.close()


def check_encoder_settings(codec: str | None = None, crf: int | None = None, preset: str | None = None,
                           extension: str | None = None) -> str:
    """The video encoder ``codec`` (default: the one for ``extension``), after checking that the
    settings can work; ValueError names the setting and the valid choices otherwise.

    ``codec`` must be a video encoder of this PyAV that writes 4:2:0 (what fastnst encodes), ``crf``
    in the codec's scale, ``preset`` one of x264/x265's, and ``extension``'s container able to hold the
    codec. Without ``extension`` (before the outputs are known) the default codec is taken to be H.264
    and the CRF limit is the widest, 63.
    """
    av = require_av()
    muxer = _MUXERS[extension.lower()][0] if extension and extension.lower() in _MUXERS else None
    default = _MUXERS[extension.lower()][1] if muxer is not None else "libx264"
    if codec is not None:
        try:
            found = av.Codec(codec, "w")
        except ValueError:
            raise ValueError(f"codec {codec!r}: unknown video codec (this PyAV has e.g. {_video_encoders(av)})") from None
        if found.type != "video":
            raise ValueError(f"codec {codec!r} encodes {found.type}, not video: give a video codec, e.g. {_video_encoders(av)}")
        if "yuv420p" not in {f.name for f in found.video_formats or ()}:
            raise ValueError(f"codec {codec!r} cannot encode yuv420p (4:2:0) video, which fastnst writes: "
                             f"give e.g. {_video_encoders(av)}")
        if muxer is not None and found.name not in _muxer_codecs(av, muxer) and codec not in _muxer_codecs(av, muxer):
            raise ValueError(f"codec {codec!r}: {extension} files cannot hold it (they can hold {_video_encoders(av, muxer)})")
        name = found.name  # h264 -> libx264
    else:
        name = default
    if preset is not None:
        if name not in _PRESET_CODECS:
            raise ValueError(f"preset {preset!r}: presets are for libx264 and libx265, not {name}")
        if preset not in X264_PRESETS:
            raise ValueError(f"preset {preset!r} is not one of {', '.join(X264_PRESETS)}")
    if crf is not None:
        if codec is None and muxer is None:  # the codec is not known yet: the widest scale
            label, (low, high) = "any codec", (0, 63)
        elif name not in _CRF_RANGES:
            raise ValueError(f"crf {crf}: CRF is for {', '.join(_CRF_RANGES)}, not {name}")
        else:
            label, (low, high) = name, _CRF_RANGES[name]
        if not low <= crf <= high:
            raise ValueError(f"crf {crf} is out of range for {label} ({low}..{high})")
    return name
