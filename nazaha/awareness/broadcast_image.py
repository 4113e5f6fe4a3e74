"""The optional image of a broadcast: whatever a volunteer uploads becomes a fresh JPEG that
Telegram accepts as a photo, with no metadata (EXIF, GPS, XMP, ICC, comments).

The console decodes what a member uploads, so what it accepts bounds its memory. The checks
run on the header, before a single pixel is decoded (``Image.open`` reads only the header):

* the file: at most :data:`MAX_UPLOAD_BYTES` (10 MB, Telegram's own limit for a photo);
* the format: JPEG (and MPO, a JPEG with extra preview frames, of which the first is the
  photo), PNG or WebP only; any other format, or no image at all, is ``not_an_image``;
* the depth: 8 bits per channel or fewer (:data:`EIGHT_BIT_MODES`, and a PNG's own bit depth,
  since Pillow opens a 16-bit RGB PNG as "RGB"); 16-bit and floating-point images are
  ``depth`` (Pillow would widen them to 32 bits a pixel, or more);
* one frame: an animated PNG or WebP is ``animated`` (Telegram shows a photo, not a film);
* the size: at most :data:`MAX_INPUT_SIDE` pixels on a side and :data:`MAX_INPUT_PIXELS` in
  all (``too_large``), and sides at most :data:`MAX_RATIO` times apart (``bad_shape``).
  Telegram refuses a photo whose width and height add up to more than 10,000 or differ more
  than 20 times; the largest photo it takes is therefore 5,000 × 5,000, 25 megapixels, and
  no side can pass 10,000. Anything a member could post as a Telegram photo fits; a bigger
  picture only costs memory, since it is scaled down to :data:`MAX_SIDE` anyway.

The worst accepted image then needs one 25-megapixel bitmap of at most 4 bytes a pixel
(100 MB) and its flattened copy; peak figures are in docs/benchmarks.md ("Broadcast image
memory", ``bench/image_memory.py``). A JPEG is decoded directly at a reduced scale when it
is at least twice too large (libjpeg's DCT scaling: ``Image.draft``). :func:`prepare_image_async`
decodes one upload at a time, on a single worker thread, so that uploads arriving together
cannot add their bitmaps up.

The pixels are then flattened onto white if they have transparency, scaled down to at most
:data:`MAX_SIDE` pixels on the longer side (what Telegram shows at most), turned upright
(EXIF orientation) and copied into a brand-new image holding nothing but the pixels, which is
saved as JPEG. The output is opened again and checked for metadata before it is returned.
"""

from __future__ import annotations

import asyncio
import io
import logging
from concurrent.futures import ThreadPoolExecutor

from PIL import ExifTags, Image, UnidentifiedImageError

__all__ = [
    "MAX_UPLOAD_BYTES", "MAX_SIDE", "MAX_INPUT_SIDE", "MAX_INPUT_PIXELS", "MIME_TYPE", "ImageRefused",
    "prepare_image", "prepare_image_async", "REFUSALS",
]

log = logging.getLogger(__name__)

MAX_UPLOAD_BYTES = 10 * 1024 * 1024  # what the console accepts from the browser: Telegram's photo limit
MAX_INPUT_SIDE = 10_000  # pixels, either side of the upload (Telegram: width + height <= 10,000)
MAX_INPUT_PIXELS = 25_000_000  # pixels in all: 5,000 x 5,000, the largest photo Telegram takes
MAX_SIDE = 2560  # pixels, the longer side of the output: Telegram shows photos at most this large
MAX_RATIO = 20  # Telegram refuses photos whose sides differ more than this
JPEG_QUALITY = 87
MIME_TYPE = "image/jpeg"
ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP")  # Image.open tries these plugins only
# The modes Pillow gives an 8-bit (or fewer bits) JPEG, PNG or WebP; "I;16", "I" and "F"
# (16-bit and floating point) are not among them.
EIGHT_BIT_MODES = frozenset({"1", "L", "LA", "P", "PA", "RGB", "RGBA", "CMYK"})

TOO_BIG = "too_big"  # more than MAX_UPLOAD_BYTES
NOT_AN_IMAGE = "not_an_image"  # not a JPEG, PNG or WebP
DEPTH = "depth"  # 16-bit or floating-point channels
ANIMATED = "animated"  # more than one frame
TOO_LARGE = "too_large"  # a side over MAX_INPUT_SIDE or more than MAX_INPUT_PIXELS
BAD_SHAPE = "bad_shape"  # a strip Telegram would refuse
CORRUPT_IMAGE = "corrupt_image"  # the header passed, the pixels cannot be decoded
REFUSALS = (TOO_BIG, NOT_AN_IMAGE, DEPTH, ANIMATED, TOO_LARGE, BAD_SHAPE, CORRUPT_IMAGE)

_CLEAN_INFO_KEYS = frozenset({"jfif", "jfif_version", "jfif_unit", "jfif_density", "dpi", "progressive", "progression"})
_PNG_BIT_DEPTH_OFFSET = 24  # signature (8), IHDR length and type (8), width and height (8)
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


class ImageRefused(ValueError):
    """Why an upload cannot be a broadcast's image; ``code`` is one of :data:`REFUSALS`."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


def check_header(image: Image.Image, data: bytes) -> None:
    """Refuse (:class:`ImageRefused`) what the header of an opened, not yet decoded, image
    shows: another format, more than 8 bits a channel, several frames, too many pixels or
    a strip. ``data`` is the file the image was opened from."""
    if image.format not in ("JPEG", "MPO", "PNG", "WEBP"):
        raise ImageRefused(NOT_AN_IMAGE)
    if image.format == "PNG" and data[12:16] != b"IHDR":  # the PNG standard puts it first
        raise ImageRefused(CORRUPT_IMAGE)
    if image.mode not in EIGHT_BIT_MODES or (image.format == "PNG" and data[_PNG_BIT_DEPTH_OFFSET] > 8):
        raise ImageRefused(DEPTH)
    if image.format != "MPO" and getattr(image, "n_frames", 1) > 1:
        raise ImageRefused(ANIMATED)
    width, height = image.size
    if width < 1 or height < 1:
        raise ImageRefused(CORRUPT_IMAGE)
    if max(width, height) > MAX_INPUT_SIDE or width * height > MAX_INPUT_PIXELS:
        raise ImageRefused(TOO_LARGE)
    if max(width, height) > MAX_RATIO * min(width, height):
        raise ImageRefused(BAD_SHAPE)


def output_size(width: int, height: int) -> tuple[int, int]:
    """The size of the output for an input of ``width`` × ``height`` pixels: the same shape,
    the longer side at most :data:`MAX_SIDE`."""
    scale = min(1.0, MAX_SIDE / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def prepare_image(data: bytes) -> bytes:
    """A metadata-free JPEG of the uploaded ``data``, at most :data:`MAX_SIDE` pixels on its
    longer side; :class:`ImageRefused` if it is not a usable image.

    Synchronous and CPU-bound, and a large image takes ~200 MB while it runs: the console
    calls :func:`prepare_image_async`, which runs one at a time."""
    if len(data) > MAX_UPLOAD_BYTES:
        raise ImageRefused(TOO_BIG)
    if not data:
        raise ImageRefused(NOT_AN_IMAGE)
    try:
        clean = _pixels(data)
    except ImageRefused:
        raise
    except UnidentifiedImageError:
        raise ImageRefused(NOT_AN_IMAGE) from None
    except (Image.DecompressionBombError, MemoryError):
        raise ImageRefused(TOO_LARGE) from None
    except Exception as exc:  # Pillow's decoders raise OSError, SyntaxError, ValueError...
        log.info("broadcast image could not be decoded (%s)", type(exc).__name__)
        raise ImageRefused(CORRUPT_IMAGE) from None
    out = io.BytesIO()
    clean.save(out, "JPEG", quality=JPEG_QUALITY, optimize=True)
    jpeg = out.getvalue()
    _check_clean(jpeg)
    return jpeg


def _pixels(data: bytes) -> Image.Image:
    """The upright, flattened, scaled-down pixels of ``data`` in a brand-new image (no info,
    no EXIF). The decoded bitmap is dropped as soon as a smaller copy exists."""
    opened = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)  # the header only
    try:
        check_header(opened, data)
        target = output_size(*opened.size)
        # A JPEG at least twice too large is decoded at 1/2, 1/4 or 1/8 of its size (still
        # at least `target`); a no-op for PNG and WebP.
        opened.draft(None, target)
        opened.load()  # the first frame only; raises on truncated or corrupt data
        orientation = _orientation(opened)
        image = _flattened(opened)
        if image is not opened:
            opened.close()  # the decoded bitmap goes: only its flattened copy is left
        if image.size != target:
            image = image.resize(target, Image.Resampling.LANCZOS)
        if orientation in _UPRIGHT:
            image = image.transpose(_UPRIGHT[orientation])
        clean = Image.new(image.mode, image.size)
        clean.paste(image)
        return clean
    finally:
        opened.close()


# One worker thread: uploads wait in its queue (as futures, holding no thread) and are
# decoded one after another, so the console's memory holds one decoded upload at a time.
_DECODER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nazaha-image")


async def prepare_image_async(data: bytes) -> bytes:
    """:func:`prepare_image` on the console's single image worker thread (one image at a
    time, in the order they arrive); same result and errors."""
    return await asyncio.get_running_loop().run_in_executor(_DECODER, prepare_image, data)


def _orientation(image: Image.Image) -> int:
    """The EXIF orientation (1 to 8), 1 when absent or unreadable."""
    try:
        value = image.getexif().get(ExifTags.Base.Orientation, 1)
    except Exception:  # unreadable EXIF: keep the pixels as stored
        return 1
    return value if isinstance(value, int) else 1


def _flattened(image: Image.Image) -> Image.Image:
    """The decoded pixels as "RGB" or "L", transparency flattened onto white."""
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif image.mode in ("L", "RGB") and "transparency" in image.info:  # a PNG tRNS colour
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        rgba = image if image.mode == "RGBA" else image.convert("RGBA")
        flat = Image.new("RGB", rgba.size, (255, 255, 255))
        flat.paste(rgba, mask=rgba)  # the alpha band is the mask: no copy of it
        return flat
    if image.mode in ("L", "RGB"):
        return image
    return image.convert("L" if image.mode == "1" else "RGB")  # CMYK


def _check_clean(jpeg: bytes) -> None:
    with Image.open(io.BytesIO(jpeg)) as check:
        leaked = set(check.info) - _CLEAN_INFO_KEYS
        if check.format != "JPEG" or leaked or check.getexif():
            raise RuntimeError(f"the broadcast image still carries metadata: {sorted(leaked)}")
