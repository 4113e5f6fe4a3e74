"""The optional image of a broadcast: whatever a volunteer uploads becomes a fresh JPEG that
Telegram accepts as a photo, with no metadata (EXIF, GPS, XMP, ICC, comments).

The pixels go through :func:`nazaha.storage.scrub.scrub_image` first (common raster formats
only, a pixel cap before decoding, EXIF orientation applied, a brand-new image holding only
the pixels); the clean copy is then flattened onto white if it has transparency, scaled down
to at most :data:`MAX_SIDE` pixels on its longer side (what Telegram shows at most) and saved
as JPEG. The output is opened again and checked for metadata before it is returned.

:func:`prepare_image` is synchronous and CPU-bound: async callers use ``asyncio.to_thread``.
"""

from __future__ import annotations

import io

from PIL import Image

from nazaha.storage.scrub import CORRUPT_IMAGE, NOT_AN_IMAGE, TOO_LARGE, scrub_image

__all__ = ["MAX_UPLOAD_BYTES", "MAX_SIDE", "MIME_TYPE", "ImageRefused", "prepare_image"]

MAX_UPLOAD_BYTES = 5 * 1024 * 1024  # what the console accepts from the browser
MAX_SIDE = 2560  # pixels, the longer side: Telegram shows photos at most this large
MAX_RATIO = 20  # Telegram refuses photos whose sides differ more than this
JPEG_QUALITY = 87
MIME_TYPE = "image/jpeg"
TOO_BIG = "too_big"  # more than MAX_UPLOAD_BYTES
BAD_SHAPE = "bad_shape"  # a strip Telegram would refuse
_CLEAN_INFO_KEYS = frozenset({"jfif", "jfif_version", "jfif_unit", "jfif_density", "dpi", "progressive", "progression"})


class ImageRefused(ValueError):
    """Why an upload cannot be a broadcast's image. ``code``: ``too_big``, ``not_an_image``,
    ``corrupt_image``, ``too_large`` (too many pixels) or ``bad_shape``."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


def prepare_image(data: bytes) -> bytes:
    """A metadata-free JPEG of the uploaded ``data`` (:class:`ImageRefused` if it is not a
    usable image)."""
    if len(data) > MAX_UPLOAD_BYTES:
        raise ImageRefused(TOO_BIG)
    if not data:
        raise ImageRefused(NOT_AN_IMAGE)
    scrubbed = scrub_image(data)
    if scrubbed.data is None:
        raise ImageRefused(scrubbed.flagged or CORRUPT_IMAGE)
    with Image.open(io.BytesIO(scrubbed.data)) as opened:
        opened.load()
        image = opened.copy()
    width, height = image.size
    if max(width, height) > MAX_RATIO * min(width, height):
        raise ImageRefused(BAD_SHAPE)
    if image.mode in ("RGBA", "LA", "P", "PA"):
        rgba = image.convert("RGBA")
        image = Image.new("RGB", rgba.size, (255, 255, 255))
        image.paste(rgba, mask=rgba.getchannel("A"))
    elif image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    if max(width, height) > MAX_SIDE:
        image.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=JPEG_QUALITY, optimize=True)
    jpeg = out.getvalue()
    _check_clean(jpeg)
    return jpeg


def _check_clean(jpeg: bytes) -> None:
    with Image.open(io.BytesIO(jpeg)) as check:
        leaked = set(check.info) - _CLEAN_INFO_KEYS
        if check.format != "JPEG" or leaked or check.getexif():
            raise RuntimeError(f"the broadcast image still carries metadata: {sorted(leaked)}")


# Re-exported for the console's messages.
REFUSALS = (TOO_BIG, NOT_AN_IMAGE, CORRUPT_IMAGE, TOO_LARGE, BAD_SHAPE)
