"""The broadcast image (nazaha/awareness/broadcast_image.py): only 8-bit, still JPEG, PNG and
WebP pictures of at most 25 megapixels are decoded, everything else is refused from its
header before a pixel is decoded; what is accepted comes out as a clean, upright JPEG; and
the console decodes one upload at a time."""

from __future__ import annotations

import asyncio
import io
import struct
import threading
import zlib

import pytest
from PIL import Image, ImageFile

from nazaha.awareness import broadcast_image
from nazaha.awareness.broadcast_image import (
    MAX_INPUT_PIXELS,
    MAX_INPUT_SIDE,
    MAX_SIDE,
    MAX_UPLOAD_BYTES,
    ImageRefused,
    prepare_image,
    prepare_image_async,
)
from tests.test_scrub import assert_no_metadata, exif_with_gps, gradient

CLEAN_KEYS = {"jfif", "jfif_version", "jfif_unit", "jfif_density", "dpi", "progressive", "progression"}


def encoded(image: Image.Image, fmt: str, **options) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_header_only(width: int, height: int, *, depth: int = 8, colour_type: int = 2) -> bytes:
    """A PNG whose header claims ``width`` × ``height`` pixels, with almost no pixel data:
    a decompression bomb's header (tens of bytes)."""
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
            + png_chunk(b"IEND", b""))


@pytest.fixture
def decoded(monkeypatch) -> list[str]:
    """The formats whose pixels were decoded (ImageFile.load with tiles to decode) during
    the test."""
    calls: list[str] = []
    original = ImageFile.ImageFile.load

    def load(self):
        if self.tile:  # emptied once decoded
            calls.append(self.format)
        return original(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)
    return calls


def refusal(data: bytes) -> str:
    with pytest.raises(ImageRefused) as refused:
        prepare_image(data)
    return refused.value.code


def test_a_photo_with_exif_and_gps_comes_out_clean_and_upright(decoded):
    photo = encoded(gradient("RGB", (96, 64)), "JPEG", exif=exif_with_gps(orientation=6), comment=b"secret note",
                    quality=95)
    with Image.open(io.BytesIO(photo)) as original:
        assert original.getexif()[0x0112] == 6 and original.getexif().get_ifd(0x8825)
    jpeg = prepare_image(photo)
    assert decoded == ["JPEG"]
    assert_no_metadata(jpeg)
    assert b"secret note" not in jpeg
    with Image.open(io.BytesIO(jpeg)) as clean:
        assert clean.format == "JPEG" and clean.mode == "RGB"
        assert clean.size == (64, 96)  # orientation 6: turned a quarter, as the camera meant
        assert set(clean.info) <= CLEAN_KEYS and not clean.getexif()


@pytest.mark.parametrize("mode,fmt,options,out_mode", [
    ("RGBA", "PNG", {}, "RGB"),
    ("LA", "PNG", {}, "RGB"),
    ("P", "PNG", {"transparency": 0}, "RGB"),
    ("1", "PNG", {}, "L"),
    ("L", "JPEG", {}, "L"),
    ("CMYK", "JPEG", {}, "RGB"),
    ("RGB", "WEBP", {}, "RGB"),
    ("RGBA", "WEBP", {"lossless": True}, "RGB"),
])
def test_eight_bit_jpeg_png_and_webp_are_accepted(mode, fmt, options, out_mode):
    jpeg = prepare_image(encoded(gradient("RGB").convert(mode), fmt, **options))
    with Image.open(io.BytesIO(jpeg)) as clean:
        assert clean.format == "JPEG" and clean.mode == out_mode and clean.size == (96, 64)
        assert set(clean.info) <= CLEAN_KEYS


def test_transparency_is_flattened_onto_white():
    image = Image.new("RGBA", (20, 10), (0, 0, 0, 0))
    with Image.open(io.BytesIO(prepare_image(encoded(image, "PNG")))) as clean:
        assert all(channel > 245 for channel in clean.getpixel((10, 5)))


def test_a_large_photo_is_scaled_down_and_a_large_jpeg_decoded_at_a_smaller_scale(monkeypatch):
    photo = encoded(gradient("RGB", (6000, 1000)), "JPEG", quality=80)
    original = ImageFile.ImageFile.load
    sizes = []

    def load(self):
        if self.tile:
            sizes.append(self.size)
        return original(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)
    jpeg = prepare_image(photo)
    assert sizes == [(3000, 500)]  # libjpeg's DCT scaling: half the size, still above 2560
    with Image.open(io.BytesIO(jpeg)) as clean:
        assert clean.size == (MAX_SIDE, 427)


@pytest.mark.parametrize("name,data,code", [
    ("16-bit grey PNG", encoded(Image.new("I;16", (8, 8)), "PNG"), "depth"),
    ("16-bit RGB PNG (Pillow opens it as RGB)", png_header_only(8, 8, depth=16, colour_type=2), "depth"),
    ("16-bit RGBA PNG", png_header_only(8, 8, depth=16, colour_type=6), "depth"),
    ("float TIFF", encoded(Image.new("F", (8, 8)), "TIFF"), "not_an_image"),
    ("8-bit TIFF", encoded(Image.new("RGB", (8, 8)), "TIFF"), "not_an_image"),
    ("BMP", encoded(Image.new("RGB", (8, 8)), "BMP"), "not_an_image"),
    ("GIF", encoded(Image.new("RGB", (8, 8)), "GIF"), "not_an_image"),
    ("animated GIF", encoded(Image.new("P", (8, 8)), "GIF", save_all=True,
                             append_images=[Image.new("P", (8, 8), 1)]), "not_an_image"),
    ("animated WebP", encoded(Image.new("RGB", (8, 8)), "WEBP", save_all=True,
                              append_images=[Image.new("RGB", (8, 8), (255, 0, 0))]), "animated"),
    ("animated PNG", encoded(Image.new("RGB", (8, 8)), "PNG", save_all=True,
                             append_images=[Image.new("RGB", (8, 8), (255, 0, 0))]), "animated"),
    ("PDF", b"%PDF-1.7\n" + b"0" * 100, "not_an_image"),
    ("empty", b"", "not_an_image"),
    ("bomb: 30000 x 30000 in a few bytes", png_header_only(30_000, 30_000), "too_large"),
    ("a side over 10,000", png_header_only(MAX_INPUT_SIDE + 1, 1000), "too_large"),
    ("30 megapixels", png_header_only(6000, 5000), "too_large"),
    ("a strip Telegram refuses", png_header_only(2100, 100), "bad_shape"),
])
def test_refused_from_the_header_before_any_pixel_is_decoded(decoded, name, data, code):
    assert len(data) < 2000, name  # tiny files: the size of the file says nothing
    assert refusal(data) == code, name
    assert decoded == [], name


def test_the_largest_accepted_size_is_what_telegram_takes():
    # Telegram: width + height <= 10,000 and sides at most 20 times apart. 5,000 x 5,000 is
    # its largest photo; the caps leave it in and little more.
    assert 5000 * 5000 <= MAX_INPUT_PIXELS < 5001 * 5001
    assert refusal(png_header_only(5001, 5000)) == "too_large"


def test_a_file_over_the_upload_limit_is_refused_unread(decoded):
    assert refusal(b"\xff\xd8\xff" + b"\x00" * MAX_UPLOAD_BYTES) == "too_big"
    assert decoded == []


def test_a_truncated_or_corrupt_image_is_refused():
    png = encoded(gradient(), "PNG")
    assert refusal(png[: len(png) // 2]) == "corrupt_image"
    assert refusal(png_header_only(64, 64)) == "corrupt_image"  # the header passes, the pixels are missing
    assert refusal(png[:8] + png_chunk(b"tEXt", b"a\x00b") + png[8:]) == "corrupt_image"  # IHDR not first


async def test_the_console_decodes_one_image_at_a_time(monkeypatch):
    """prepare_image_async runs on one worker thread: while one image is being decoded, the
    next waits (with a pool of several threads, the held call would not stop the others)."""
    lock = threading.Lock()
    events: list[tuple[str, bytes]] = []
    threads: set[str] = set()
    release = threading.Event()

    def fake_prepare(data: bytes) -> bytes:
        with lock:
            events.append(("start", data))
            threads.add(threading.current_thread().name)
        if data == b"first":
            release.wait(timeout=20)
        with lock:
            events.append(("end", data))
        return data

    monkeypatch.setattr(broadcast_image, "prepare_image", fake_prepare)
    calls = [asyncio.ensure_future(prepare_image_async(d)) for d in (b"first", b"second", b"third")]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while not events:
        assert loop.time() < deadline, "the first image never started"
        await asyncio.sleep(0.01)
    # While the first is held, give the others every chance to start (they must not).
    others_started = loop.time() + 0.5
    while loop.time() < others_started:
        assert len(events) == 1, events
        await asyncio.sleep(0.01)
    release.set()
    assert await asyncio.gather(*calls) == [b"first", b"second", b"third"]
    assert events == [("start", b"first"), ("end", b"first"), ("start", b"second"), ("end", b"second"),
                      ("start", b"third"), ("end", b"third")]
    assert len(threads) == 1
