"""Metadata-free copies of images for caseworkers.

Files sent to the bot as documents keep their EXIF (GPS position, camera serial, author),
XMP, ICC profile descriptions and comments; any of these can identify a reporter.  The bot
keeps the untouched original, sealed, as evidence and gives caseworkers a *clean copy*: the
pixels re-encoded by Pillow into a brand-new image that carries nothing else.

Decisions:

* Only common raster formats are decoded (``ALLOWED_FORMATS``): Pillow's rarer plugins are
  more attack surface, and its EPS plugin would run Ghostscript on the file.  Anything else,
  e.g. a zip or PDF renamed ``.jpg``, is flagged ``not_an_image``.
* The pixel count is checked from the header before any pixel is decoded (``too_large``).
* A truncated or corrupt image is flagged ``corrupt_image`` with no clean copy, even where
  Pillow could decode part of it (``ImageFile.LOAD_TRUNCATED_IMAGES`` stays off): a half
  grey picture would mislead a caseworker, and the original is kept for an expert.
* EXIF orientation is applied to the pixels first, so the copy looks as the sender saw it.
* JPEG-like photo formats (JPEG, MPO, WebP, AVIF, HEIF) without transparency become JPEG
  (quality 90); everything else becomes PNG.  Animated images keep their first frame.
* The output is re-opened and checked for metadata before it is returned (defence in depth).

:func:`scrub_image` is synchronous and CPU-bound: async callers use ``asyncio.to_thread``.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

from nazaha.flows.evidence_kinds import labelled_as

__all__ = [
    "MAX_IMAGE_PIXELS",
    "ALLOWED_FORMATS",
    "NOT_AN_IMAGE",
    "CORRUPT_IMAGE",
    "TOO_LARGE",
    "ScrubResult",
    "scrub_image",
    "looks_like_image",
    "sniff_image",
    "SNIFF_BYTES",
]

log = logging.getLogger(__name__)

MAX_IMAGE_PIXELS = 40_000_000  # decompression-bomb guard: 40 MP (a 160 MB RGBA bitmap)
JPEG_QUALITY = 90

NOT_AN_IMAGE = "not_an_image"
CORRUPT_IMAGE = "corrupt_image"
TOO_LARGE = "too_large"

# HEIF is decoded only if a plugin (pillow-heif) registered it; AVIF is built into Pillow.
ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "TIFF", "BMP", "AVIF", "HEIF")
_PHOTO_FORMATS = frozenset({"JPEG", "MPO", "WEBP", "AVIF", "HEIF"})
_IMAGE_EXTENSIONS = frozenset(
    {"jpg", "jpeg", "jpe", "jfif", "png", "gif", "webp", "bmp", "dib", "tif", "tiff",
     "heic", "heif", "avif"}
)
# The only keys Pillow reports when it opens our own output (JFIF basics); anything else
# (exif, icc_profile, xmp, comment, PNG text chunks, ...) means metadata leaked.
_OUTPUT_INFO_KEYS = frozenset({"jfif", "jfif_version", "jfif_unit", "jfif_density", "dpi"})


@dataclass(frozen=True)
class ScrubResult:
    data: bytes | None  # the clean copy, or None when flagged
    format: str | None  # "JPEG" or "PNG" (the clean copy's format)
    flagged: str | None  # NOT_AN_IMAGE, CORRUPT_IMAGE or TOO_LARGE


def _flag(reason: str) -> ScrubResult:
    return ScrubResult(data=None, format=None, flagged=reason)


def _allowed_formats() -> list[str]:
    Image.init()
    return [name for name in ALLOWED_FORMATS if name in Image.OPEN]


def _pixels_only(image: Image.Image) -> Image.Image:
    """A brand-new image holding only the pixels (no info dict, EXIF cache or palette
    comments), in a mode JPEG/PNG can store."""
    has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info
    if has_alpha:
        converted = image.convert("RGBA")
    elif image.mode in ("RGB", "L"):
        converted = image
    elif image.mode == "1":
        converted = image.convert("L")
    else:  # P, CMYK, YCbCr, LAB, HSV, I, I;16, F...
        converted = image.convert("RGB")
    fresh = Image.new(converted.mode, converted.size)
    fresh.paste(converted)
    return fresh


def _encode(image: Image.Image, source_format: str) -> tuple[bytes, str]:
    out = io.BytesIO()
    if source_format in _PHOTO_FORMATS and image.mode in ("RGB", "L"):
        image.save(out, "JPEG", quality=JPEG_QUALITY)
        return out.getvalue(), "JPEG"
    image.save(out, "PNG")
    return out.getvalue(), "PNG"


def _assert_clean(data: bytes) -> None:
    with Image.open(io.BytesIO(data)) as check:
        leaked = set(check.info) - _OUTPUT_INFO_KEYS
        if leaked or check.getexif():
            raise RuntimeError(f"scrubbed image still carries metadata: {sorted(leaked)}")


def scrub_image(data: bytes) -> ScrubResult:
    """A metadata-free re-encoding of ``data``, or a flag saying why there is none."""
    try:
        with Image.open(io.BytesIO(data), formats=_allowed_formats()) as image:
            source_format = image.format or ""
            width, height = image.size
            if width * height > MAX_IMAGE_PIXELS:
                return _flag(TOO_LARGE)
            if width < 1 or height < 1:
                return _flag(CORRUPT_IMAGE)
            image.load()  # first frame only; raises on truncated or corrupt data
            try:
                upright = ImageOps.exif_transpose(image)
            except Exception:  # unreadable EXIF: keep the pixels as stored
                upright = image
            clean = _pixels_only(upright)
            del upright
    except UnidentifiedImageError:
        return _flag(NOT_AN_IMAGE)
    except (Image.DecompressionBombError, MemoryError):
        return _flag(TOO_LARGE)
    except Exception as exc:  # Pillow's decoders raise OSError, SyntaxError, ValueError...
        log.info("image could not be decoded (%s)", type(exc).__name__)
        return _flag(CORRUPT_IMAGE)
    encoded, fmt = _encode(clean, source_format)
    _assert_clean(encoded)
    return ScrubResult(data=encoded, format=fmt, flagged=None)


def looks_like_image(mime_type: str | None, file_name: str | None) -> bool:
    """Whether to try :func:`scrub_image`: an ``image/*`` MIME type or an image extension.

    Deliberately generous: the sender chooses both labels, and scrubbing a mislabelled file
    is what flags it.
    """
    return labelled_as(mime_type, file_name, "image/", _IMAGE_EXTENSIONS)


SNIFF_BYTES = 16  # enough for every signature below


def sniff_image(head: bytes) -> bool:
    """Whether the first bytes of a file (``SNIFF_BYTES`` suffice) are those of an image
    format :func:`scrub_image` decodes, whatever the file is called or claims to be.

    Recognises JPEG, PNG, GIF, WebP, TIFF and HEIF/AVIF (ISO ``ftyp`` brands); BMP's two-byte
    signature is too weak to rely on alone.
    """
    if head.startswith((b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a")):
        return True
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return True
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return True
    return head[4:8] == b"ftyp" and head[8:12] in _HEIF_BRANDS


_HEIF_BRANDS = frozenset(
    {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1", b"avif", b"avis"}
)
