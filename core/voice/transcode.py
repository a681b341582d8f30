"""Audio decoding and encoding with PyAV (FFmpeg's libraries, shipped in its wheel), run as a child process by
core.voice.audio: an upload is untrusted media, so a decoder crash or hang costs that child, not the server.

    python -m core.voice.transcode decode MAX_SECONDS  < audio  > container name, a newline, 16 kHz mono s16le PCM
    python -m core.voice.transcode ogg-opus            < audio  > OGG/Opus

Exit codes: 0 done, 3 not audio, 4 longer than MAX_SECONDS (the reason on stderr), anything else a failure."""

from __future__ import annotations

import io
import sys
from collections.abc import Iterator

import av
from av.audio.frame import AudioFrame

SAMPLE_RATE = 16_000  # what speech models are trained on
NOT_AUDIO, TOO_LONG = 3, 4


class Refused(Exception):
    def __init__(self, code: int, reason: str):
        super().__init__(reason)
        self.code = code


def _frames(data: bytes, *, rate: int, fmt: str) -> Iterator[tuple[str, float | None, AudioFrame]]:
    """The first audio stream of `data` as mono frames at `rate`, each with the container's name and the duration
    its header declares (None when it declares none, as MediaRecorder's WebM does)."""
    try:
        container = av.open(io.BytesIO(data), mode="r")
    except (av.error.FFmpegError, ValueError):  # not a container FFmpeg can read
        raise Refused(NOT_AUDIO, "the upload is not audio that can be decoded") from None
    with container:
        if not container.streams.audio:
            raise Refused(NOT_AUDIO, "the upload is not audio (no audio stream found)")
        name = container.format.name.split(",")[0]
        declared = container.duration / av.time_base if container.duration else None
        resampler = av.AudioResampler(format=fmt, layout="mono", rate=rate)
        try:
            for frame in container.decode(container.streams.audio[0]):
                for out in resampler.resample(frame):
                    yield name, declared, out
            for out in resampler.resample(None):
                yield name, declared, out
        except av.error.FFmpegError:
            raise Refused(NOT_AUDIO, "the upload is not audio that can be decoded") from None


def decode(data: bytes, max_seconds: float) -> tuple[str, bytes]:
    """(container name, PCM): decoding stops one second past the limit — enough to know it is too long."""
    pcm, limit, name = bytearray(), int((max_seconds + 1) * SAMPLE_RATE) * 2, ""
    for name, declared, frame in _frames(data, rate=SAMPLE_RATE, fmt="s16"):  # noqa: B007 (the last is returned)
        if declared is not None and declared > max_seconds:
            raise Refused(TOO_LONG, f"the recording lasts {declared:.0f} s; the limit is {max_seconds:g} s")
        pcm += frame.to_ndarray().tobytes()
        if len(pcm) > limit:
            break
    if not pcm:
        raise Refused(NOT_AUDIO, "the upload is not audio that can be decoded")
    return name, bytes(pcm)


def ogg_opus(data: bytes) -> bytes:
    """Any audio → mono OGG/Opus at 32 kbit/s, what chat apps play as a voice note."""
    out = io.BytesIO()
    with av.open(out, mode="w", format="ogg") as container:
        stream = container.add_stream("libopus", rate=48_000, layout="mono")
        stream.bit_rate = 32_000
        for _, _, frame in _frames(data, rate=48_000, fmt="s16"):
            frame.pts = None  # the encoder numbers the resampled frames itself
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return out.getvalue()


def main(argv: list[str]) -> int:
    data = sys.stdin.buffer.read()
    try:
        if argv[:1] == ["decode"] and len(argv) == 2:
            name, pcm = decode(data, float(argv[1]))
            sys.stdout.buffer.write(name.encode() + b"\n" + pcm)
        elif argv == ["ogg-opus"]:
            sys.stdout.buffer.write(ogg_opus(data))
        else:
            print(__doc__, file=sys.stderr)
            return 2
    except Refused as refused:
        print(refused, file=sys.stderr)
        return refused.code
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
