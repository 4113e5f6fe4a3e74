"""Image scrubbing: metadata removed, mislabelled, corrupt and oversized files flagged."""

from __future__ import annotations

import io
import struct
import time
import tracemalloc
import zipfile
import zlib

import pytest
from PIL import Image, ImageCms, PngImagePlugin

from nazaha.storage.scrub import (
    CORRUPT_IMAGE,
    MAX_IMAGE_PIXELS,
    NOT_AN_IMAGE,
    TOO_LARGE,
    ScrubResult,
    looks_like_image,
    scrub_image,
)

ARTIST = "Reporter Full Name"
MAKE = "PhoneMakerXYZ"
XMP = (
    b'<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?>'
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
    b'<rdf:Description xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmp:CreatorTool="SecretTool-XMP"/>'
    b"</rdf:RDF></x:xmpmeta><?xpacket end=\"w\"?>"
)
COMMENT = b"comment-by-reporter-QX7"


def gradient(mode: str = "RGB", size: tuple[int, int] = (96, 64)) -> Image.Image:
    image = Image.new("RGB", size)
    image.putdata([(x * 2 % 256, y * 3 % 256, (x + y) % 256) for y in range(size[1]) for x in range(size[0])])
    return image.convert(mode)


def exif_with_gps(orientation: int | None = None) -> Image.Exif:
    exif = Image.Exif()
    exif[0x013B] = ARTIST  # Artist
    exif[0x010F] = MAKE  # Make
    if orientation:
        exif[0x0112] = orientation
    gps = exif.get_ifd(0x8825)  # GPSInfo IFD
    gps[1] = "N"
    gps[2] = (31.0, 54.0, 13.0)
    gps[3] = "E"
    gps[4] = (35.0, 12.0, 34.0)
    return exif


def loaded_jpeg() -> bytes:
    out = io.BytesIO()
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    gradient().save(out, "JPEG", exif=exif_with_gps(), icc_profile=icc, comment=COMMENT, xmp=XMP, quality=95)
    return out.getvalue()


def assert_no_metadata(data: bytes) -> None:
    for needle in (b"Exif", b"http://ns.adobe.com/xap", b"SecretTool", ARTIST.encode(), MAKE.encode(),
                   COMMENT, b"GPS", b"acsp", b"sRGB", b"tEXt", b"iTXt", b"zTXt", b"eXIf", b"iCCP"):
        assert needle not in data, needle
    with Image.open(io.BytesIO(data)) as image:
        assert not image.getexif()
        for key in ("exif", "icc_profile", "xmp", "XML:com.adobe.xmp", "comment", "Author"):
            assert key not in image.info, key


def test_fixture_really_carries_the_metadata():
    data = loaded_jpeg()
    with Image.open(io.BytesIO(data)) as image:
        assert image.getexif()[0x013B] == ARTIST
        assert image.getexif().get_ifd(0x8825)[1] == "N"
        assert {"exif", "icc_profile", "xmp", "comment"} <= set(image.info)
    assert b"http://ns.adobe.com/xap" in data and b"Exif" in data


def test_jpeg_metadata_is_removed_and_pixels_kept():
    original = loaded_jpeg()
    result = scrub_image(original)
    assert result.flagged is None and result.format == "JPEG" and result.data
    assert_no_metadata(result.data)
    with Image.open(io.BytesIO(result.data)) as clean, Image.open(io.BytesIO(original)) as source:
        assert clean.format == "JPEG" and clean.size == source.size
        # Roughly the same pixels: mean absolute difference of a few levels at most.
        a, b = clean.convert("RGB").tobytes(), source.convert("RGB").tobytes()
        assert sum(abs(x - y) for x, y in zip(a, b)) / len(a) < 4
        # Only the JFIF basics remain among the APP markers.
        assert set(clean.applist and [marker for marker, _ in clean.applist]) <= {"APP0"}


def test_exif_orientation_is_applied_to_the_pixels():
    out = io.BytesIO()
    gradient(size=(80, 40)).save(out, "JPEG", exif=exif_with_gps(orientation=6))  # rotate 90° CW
    result = scrub_image(out.getvalue())
    assert result.data is not None
    assert_no_metadata(result.data)
    with Image.open(io.BytesIO(result.data)) as clean:
        assert clean.size == (40, 80)


def test_png_text_icc_and_exif_are_removed():
    info = PngImagePlugin.PngInfo()
    info.add_text("Author", ARTIST)
    info.add_itxt("Comment", "iTXt-" + MAKE)
    info.add_text("XML:com.adobe.xmp", XMP.decode())
    out = io.BytesIO()
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    gradient("RGBA").save(out, "PNG", pnginfo=info, icc_profile=icc, exif=exif_with_gps())
    with Image.open(io.BytesIO(out.getvalue())) as check:
        assert check.info["Author"] == ARTIST and "icc_profile" in check.info
    result = scrub_image(out.getvalue())
    assert result.flagged is None and result.format == "PNG" and result.data
    assert_no_metadata(result.data)
    with Image.open(io.BytesIO(result.data)) as clean:
        assert clean.mode == "RGBA" and clean.size == (96, 64) and clean.info == {}


@pytest.mark.parametrize("fmt,expected", [("WEBP", "JPEG"), ("GIF", "PNG"), ("TIFF", "PNG"), ("BMP", "PNG")])
def test_other_formats_become_jpeg_or_png(fmt: str, expected: str):
    out = io.BytesIO()
    kwargs = {"exif": exif_with_gps()} if fmt in ("WEBP", "TIFF") else {}
    gradient().save(out, fmt, **kwargs)
    result = scrub_image(out.getvalue())
    assert result.flagged is None and result.format == expected
    assert_no_metadata(result.data)


def test_animated_gif_keeps_the_first_frame():
    frames = [Image.new("RGB", (20, 20), c) for c in ((255, 0, 0), (0, 255, 0))]
    out = io.BytesIO()
    frames[0].save(out, "GIF", save_all=True, append_images=frames[1:], comment=COMMENT)
    result = scrub_image(out.getvalue())
    assert result.flagged is None and result.format == "PNG"
    assert_no_metadata(result.data)
    with Image.open(io.BytesIO(result.data)) as clean:
        assert clean.convert("RGB").getpixel((5, 5)) == (255, 0, 0)
        assert getattr(clean, "n_frames", 1) == 1


def test_zip_named_jpg_is_not_an_image():
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("secret.txt", "not a photo")
    assert looks_like_image(None, "holiday.jpg")
    assert scrub_image(out.getvalue()) == ScrubResult(None, None, NOT_AN_IMAGE)


@pytest.mark.parametrize("data", [b"", b"%PDF-1.7\n...", b"hello world", b"\xff\xd8\xff"])
def test_other_non_images_are_flagged(data: bytes):
    assert scrub_image(data).flagged in (NOT_AN_IMAGE, CORRUPT_IMAGE)
    assert scrub_image(data).data is None


def test_formats_outside_the_allow_list_are_not_decoded():
    out = io.BytesIO()
    gradient().save(out, "PPM")  # Pillow reads it, but we do not accept it
    assert scrub_image(out.getvalue()).flagged == NOT_AN_IMAGE


def test_truncated_jpeg_is_flagged_corrupt():
    data = loaded_jpeg()
    for cut in (len(data) // 2, len(data) - 200):
        result = scrub_image(data[:cut])
        assert result == ScrubResult(None, None, CORRUPT_IMAGE)


def test_corrupt_png_is_flagged_corrupt():
    out = io.BytesIO()
    gradient().save(out, "PNG")
    raw = bytearray(out.getvalue())
    idat = raw.index(b"IDAT")
    raw[idat + 20 : idat + 60] = b"\x00" * 40
    assert scrub_image(bytes(raw)).flagged == CORRUPT_IMAGE


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims ``width x height`` with a tiny IDAT: a decompression bomb header."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("width,height", [(8000, 6000), (100_000, 100_000), (2**31 - 1, 2**31 - 1)])
def test_bomb_header_is_flagged_quickly_without_allocating(width: int, height: int):
    assert width * height > MAX_IMAGE_PIXELS
    data = png_header_only(width, height)
    tracemalloc.start()
    started = time.perf_counter()
    try:
        result = scrub_image(data)
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result == ScrubResult(None, None, TOO_LARGE)
    assert elapsed < 1.0
    assert peak < 2 * 1024 * 1024


def test_jpeg_bomb_header_is_flagged():
    out = io.BytesIO()
    Image.new("RGB", (16, 16)).save(out, "JPEG")
    raw = bytearray(out.getvalue())
    sof = raw.index(b"\xff\xc0")
    raw[sof + 5 : sof + 9] = struct.pack(">HH", 60000, 60000)  # height, width in SOF0
    assert scrub_image(bytes(raw)).flagged == TOO_LARGE


def test_grey_cmyk_and_palette_modes():
    for mode, fmt in (("L", "JPEG"), ("CMYK", "JPEG"), ("P", "PNG"), ("1", "PNG"), ("LA", "PNG")):
        out = io.BytesIO()
        image = gradient("RGB").convert(mode)
        if mode == "P":
            image.info["transparency"] = 0
        image.save(out, fmt)
        result = scrub_image(out.getvalue())
        assert result.flagged is None, mode
        assert_no_metadata(result.data)


@pytest.mark.parametrize(
    "mime,name,expected",
    [
        ("image/jpeg", None, True),
        ("IMAGE/PNG; charset=binary", None, True),
        (None, "IMG_0001.JPG", True),
        ("application/octet-stream", "scan.heic", True),
        ("application/zip", "photo.jpeg", True),
        (None, "C:\\Users\\x\\photo.webp", True),
        ("application/pdf", "minutes.pdf", False),
        ("text/plain", "notes.txt", False),
        (None, "jpg", False),
        (None, None, False),
    ],
)
def test_looks_like_image(mime, name, expected):
    assert looks_like_image(mime, name) is expected
