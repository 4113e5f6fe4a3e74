"""Voice-reduced copies of voice notes and audio files for caseworkers.

A voice identifies its speaker.  The bot keeps the untouched recording, sealed, as evidence
and gives caseworkers a *voice-reduced copy*: the sound with its pitch and formants shifted
down by a fixed ratio, re-encoded into a brand-new Ogg/Opus file that carries no tags.

It is *reduced*, not anonymous: a fixed shift can be undone by shifting back, and words,
accent, rhythm and background sounds are untouched.  See docs/security.md.

How: PyAV (FFmpeg libraries bundled in its wheels, so nothing is needed from the system)
decodes the file and runs the samples through an FFmpeg filter graph

    asetrate = rate x RATIO   (plays the samples slower: pitch and formants x RATIO, longer)
    aresample = 48000         (back to a normal sample rate)
    atempo = 1 / RATIO        (time-stretch to the original duration, pitch kept)
    aformat = mono, float     (what the Opus encoder takes; one channel only)

and encodes the result with libopus at ``BITRATE`` into Ogg.  Only the first audio stream
is used; video streams (e.g. a cover picture in an M4A) and every tag are dropped.  The
output is re-opened and checked for tags before it is returned (defence in depth).

Limits: containers other than ``ALLOWED_CONTAINERS`` are refused (``not_audio``), and so is
anything longer than ``MAX_SECONDS`` (``too_long``); work stops at ``deadline`` (monotonic
seconds, ``timed_out``).  :func:`reduce_voice` is synchronous and CPU-bound: async callers
use :func:`reduce_voice_async`, which runs it in a worker thread with a time limit.
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
from dataclasses import dataclass
from typing import Callable

import av
import av.filter

__all__ = [
    "RATIO",
    "MAX_SECONDS",
    "TIME_LIMIT_SECONDS",
    "NOT_AUDIO",
    "CORRUPT_AUDIO",
    "TOO_LONG",
    "TIMED_OUT",
    "AUDIO_FLAGS",
    "VoiceResult",
    "reduce_voice",
    "reduce_voice_async",
]

log = logging.getLogger(__name__)

RATIO = 0.8  # pitch and formants x 0.8: about 3.9 semitones lower
OUTPUT_RATE = 48_000  # Hz, Opus's native rate
BITRATE = 32_000  # bit/s, mono speech
MAX_SECONDS = 30 * 60  # longer recordings get no copy (the original is kept)
TIME_LIMIT_SECONDS = 120.0  # wall-clock budget for one file on a busy 2-core host

NOT_AUDIO = "not_audio"
CORRUPT_AUDIO = "corrupt_audio"
TOO_LONG = "too_long"
TIMED_OUT = "timed_out"
AUDIO_FLAGS = frozenset({NOT_AUDIO, CORRUPT_AUDIO, TOO_LONG, TIMED_OUT})

# FFmpeg demuxer names (``container.format.name``) of the formats Telegram clients send:
# Ogg (voice notes), MP3, MP4/M4A, Matroska/WebM, WAV, FLAC, raw AAC, AMR.
ALLOWED_CONTAINERS = frozenset(
    {"ogg", "mp3", "mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm", "wav", "flac", "aac", "amr"}
)
# Tags our own output may carry: the muxer's name, no content.
_OUTPUT_TAGS = frozenset({"encoder"})


@dataclass(frozen=True)
class VoiceResult:
    data: bytes | None  # the voice-reduced copy (Ogg/Opus), or None when flagged
    mime_type: str | None  # "audio/ogg" with data
    flagged: str | None  # NOT_AUDIO, CORRUPT_AUDIO, TOO_LONG or TIMED_OUT


class _Stop(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _flag(reason: str) -> VoiceResult:
    return VoiceResult(data=None, mime_type=None, flagged=reason)


def _graph(stream: av.audio.stream.AudioStream, ratio: float) -> av.filter.Graph:
    rate = stream.codec_context.sample_rate
    graph = av.filter.Graph()
    source = graph.add_abuffer(template=stream)
    chain = [
        source,
        graph.add("asetrate", f"{round(rate * ratio)}"),
        graph.add("aresample", f"{OUTPUT_RATE}"),
        graph.add("atempo", f"{1 / ratio:.6f}"),
        graph.add(
            "aformat", f"sample_fmts=flt:sample_rates={OUTPUT_RATE}:channel_layouts=mono"
        ),
        graph.add("abuffersink"),
    ]
    for upstream, downstream in zip(chain, chain[1:]):
        upstream.link_to(downstream)
    graph.configure()
    return graph


def _drain(graph: av.filter.Graph, out_stream, out, samples: list[int]) -> None:
    while True:
        try:
            frame = graph.pull()
        except (av.BlockingIOError, av.EOFError):
            return
        frame.pts = None  # the encoder numbers its own packets
        samples[0] += frame.samples
        for packet in out_stream.encode(frame):
            out.mux(packet)


def _assert_clean(data: bytes) -> None:
    with av.open(io.BytesIO(data), "r") as check:
        leaked = set(check.metadata) - _OUTPUT_TAGS
        for stream in check.streams:
            leaked |= set(stream.metadata) - _OUTPUT_TAGS
        if leaked or len(check.streams) != 1:
            raise RuntimeError(f"voice-reduced copy still carries tags: {sorted(leaked)}")


def reduce_voice(
    data: bytes,
    *,
    ratio: float = RATIO,
    max_seconds: float = MAX_SECONDS,
    deadline: float | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> VoiceResult:
    """A voice-reduced Ogg/Opus re-encoding of the recording ``data``, or a flag.

    ``ratio`` multiplies every frequency (pitch and formants); the duration is kept within
    a few tens of milliseconds.  ``deadline`` is a ``clock()`` value after which the work
    stops with ``TIMED_OUT``; ``max_seconds`` bounds the audio decoded (``TOO_LONG``).
    """
    try:
        with av.open(io.BytesIO(data), "r") as source:
            if source.format.name not in ALLOWED_CONTAINERS or not source.streams.audio:
                return _flag(NOT_AUDIO)
            stream = source.streams.audio[0]
            if stream.codec_context.sample_rate <= 0:
                return _flag(CORRUPT_AUDIO)
            if source.duration is not None and source.duration / av.time_base > max_seconds:
                return _flag(TOO_LONG)
            graph = _graph(stream, ratio)
            out_buffer = io.BytesIO()
            with av.open(out_buffer, "w", format="ogg") as out:
                out_stream = out.add_stream("libopus", rate=OUTPUT_RATE, layout="mono")
                out_stream.bit_rate = BITRATE
                decoded = 0
                written = [0]
                for frame in source.decode(stream):
                    decoded += frame.samples
                    if decoded / frame.sample_rate > max_seconds:
                        raise _Stop(TOO_LONG)
                    if deadline is not None and clock() > deadline:
                        raise _Stop(TIMED_OUT)
                    graph.push(frame)
                    _drain(graph, out_stream, out, written)
                if decoded == 0:
                    return _flag(CORRUPT_AUDIO)
                graph.push(None)
                _drain(graph, out_stream, out, written)
                for packet in out_stream.encode(None):
                    out.mux(packet)
    except _Stop as stop:
        return _flag(stop.reason)
    except MemoryError:
        return _flag(TOO_LONG)
    except av.error.InvalidDataError:
        return _flag(NOT_AUDIO)
    except Exception as exc:  # FFmpeg errors: truncated, corrupt, unsupported codec...
        log.info("audio could not be decoded (%s)", type(exc).__name__)
        return _flag(CORRUPT_AUDIO)
    encoded = out_buffer.getvalue()
    _assert_clean(encoded)
    return VoiceResult(data=encoded, mime_type="audio/ogg", flagged=None)


async def reduce_voice_async(
    data: bytes, *, time_limit: float = TIME_LIMIT_SECONDS, ratio: float = RATIO
) -> VoiceResult:
    """:func:`reduce_voice` in a worker thread, stopped after ``time_limit`` seconds."""
    deadline = time.monotonic() + time_limit
    return await asyncio.to_thread(reduce_voice, data, ratio=ratio, deadline=deadline)

