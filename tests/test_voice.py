"""Voice-reduced copies (nazaha/storage/voice.py): pitch moved, duration kept, tags dropped."""

from __future__ import annotations

import io
import itertools

import av
import numpy as np
import pytest

from nazaha.storage import voice
from nazaha.flows.report_flow import looks_like_audio
from nazaha.storage.voice import reduce_voice, reduce_voice_async

RATE = 48_000


def tone(
    freq: float = 440.0,
    seconds: float = 1.5,
    *,
    fmt: str = "ogg",
    codec: str = "libopus",
    rate: int = RATE,
    tags: bool = True,
) -> bytes:
    """A sine tone encoded in the test, tagged like a phone recorder would tag it."""
    buf = io.BytesIO()
    with av.open(buf, "w", format=fmt) as out:
        stream = out.add_stream(codec, rate=rate, layout="mono")
        if tags:
            out.metadata.update({"title": "Statement of Ahmad", "artist": "Ahmad Khalil"})
            stream.metadata.update({"title": "Statement of Ahmad", "artist": "Ahmad Khalil",
                                    "location": "+31.90+035.20/"})
        t = np.arange(int(seconds * rate)) / rate
        samples = (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
        step = 1024
        for start in range(0, len(samples), step):
            frame = av.AudioFrame.from_ndarray(
                samples[start : start + step].reshape(1, -1), format="flt", layout="mono"
            )
            frame.sample_rate = rate
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


def decode(data: bytes) -> tuple[np.ndarray, int, dict[str, str]]:
    """Mono samples, sample rate and every tag (container and streams) of ``data``."""
    with av.open(io.BytesIO(data)) as container:
        tags = dict(container.metadata)
        for stream in container.streams:
            tags.update(stream.metadata)
        rate = container.streams.audio[0].codec_context.sample_rate
        samples = np.concatenate(
            [frame.to_ndarray()[0].astype(np.float64) for frame in container.decode(audio=0)]
        )
    return samples, rate, tags


def dominant(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.argmax(spectrum)) * rate / len(samples)


@pytest.mark.parametrize("freq", [220.0, 440.0])
def test_pitch_moves_by_the_ratio_and_duration_is_kept(freq: float) -> None:
    original = tone(freq)
    result = reduce_voice(original)
    assert result.flagged is None and result.mime_type == "audio/ogg"
    before, before_rate, _ = decode(original)
    after, after_rate, _ = decode(result.data)
    assert dominant(before, before_rate) == pytest.approx(freq, rel=0.01)
    assert dominant(after, after_rate) == pytest.approx(freq * voice.RATIO, rel=0.02)
    assert len(after) / after_rate == pytest.approx(len(before) / before_rate, abs=0.05)


def test_no_tag_survives() -> None:
    original = tone()
    assert "artist" in decode(original)[2]  # the test file really is tagged
    result = reduce_voice(original)
    _, _, tags = decode(result.data)
    assert set(tags) <= {"encoder"}
    assert b"Ahmad" not in result.data and b"+31.90" not in result.data


def test_other_containers_and_rates_are_reduced() -> None:
    # An M4A/AAC at 44.1 kHz, as phones record, with a different ratio.
    original = tone(300.0, fmt="mp4", codec="aac", rate=44_100)
    result = reduce_voice(original, ratio=1.25)
    assert result.flagged is None
    after, rate, tags = decode(result.data)
    assert dominant(after, rate) == pytest.approx(375.0, rel=0.02)
    assert set(tags) <= {"encoder"}


def test_not_audio_is_flagged() -> None:
    assert reduce_voice(b"%PDF-1.7 not a recording" * 50).flagged == voice.NOT_AUDIO
    assert reduce_voice(b"").flagged == voice.NOT_AUDIO


def test_truncated_audio_is_flagged_not_half_reduced() -> None:
    original = tone()
    assert reduce_voice(original[:60]).flagged in (voice.NOT_AUDIO, voice.CORRUPT_AUDIO)


def test_too_long_is_flagged() -> None:
    assert reduce_voice(tone(seconds=1.0), max_seconds=0.5).flagged == voice.TOO_LONG


def test_deadline_stops_the_work() -> None:
    ticks = itertools.count()
    result = reduce_voice(tone(), deadline=3, clock=lambda: next(ticks))
    assert result.flagged == voice.TIMED_OUT and result.data is None


async def test_async_runs_in_a_thread() -> None:
    result = await reduce_voice_async(tone(seconds=0.5))
    assert result.flagged is None
    assert (await reduce_voice_async(tone(seconds=0.5), time_limit=-1)).flagged == voice.TIMED_OUT


def test_looks_like_audio() -> None:
    assert looks_like_audio("voice", None, None)
    assert looks_like_audio("audio", "audio/mpeg", "song.mp3")
    assert looks_like_audio("document", "audio/ogg", None)
    assert looks_like_audio("document", "application/octet-stream", "رسالة.m4a")
    assert not looks_like_audio("document", "application/pdf", "report.pdf")
    assert not looks_like_audio("photo", "image/jpeg", None)
    assert not looks_like_audio("video", "video/mp4", "clip.mp4")
