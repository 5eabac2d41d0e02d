"""JPEG image chunks: each (1, H, W, 3) uint8 chunk is one plain JPEG file.

Stores name the codec ``imagecodecs_jpeg`` (configuration ``{"level": 95}``), the name and
configuration of imagecodecs' zarr 3 JPEG codec, so a reader without robot_stack decodes them with
``pip install imagecodecs-zarr`` and ``zarr.open`` alone (Python >= 3.12, zarr >= 3.2; the package
registers the name through zarr's ``zarr.codecs`` entry points). Here the same bytes are encoded and
decoded with OpenCV (libjpeg-turbo); importing ``robot_stack.data`` registers this implementation
unless imagecodecs' own is installed. Stores written before used the name ``robot_stack.jpeg``
(configuration ``{"quality": 95}``): still read here.

Optional (``image_codec="jpeg"``): about 18x smaller than lossless Blosc for camera images and fast
to decode, but lossy.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, ClassVar

import numpy as np
from zarr.abc.codec import ArrayBytesCodec
from zarr.core.common import parse_named_configuration
from zarr.registry import register_codec

NAME = "imagecodecs_jpeg"
LEGACY_NAME = "robot_stack.jpeg"


@dataclass(frozen=True)
class JpegCodec(ArrayBytesCodec):
    """JPEG (RGB, 4:2:0) per chunk; chunks must be one frame ``(1, H, W, 3)`` or ``(1, H, W, 1)``."""

    quality: int = 95
    is_fixed_size = False
    name: ClassVar[str] = NAME
    quality_key: ClassVar[str] = "level"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JpegCodec:
        _, config = parse_named_configuration(data, cls.name, require_configuration=False)
        config = dict(config or {})
        quality = config.pop(cls.quality_key, 95)
        if config:  # options of imagecodecs' codec that change the bytes (colour spaces, tables...)
            raise ValueError(f"{cls.name}: options {sorted(config)} are not supported here; install imagecodecs-zarr")
        return cls(quality=95 if quality is None else int(quality))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "configuration": {self.quality_key: self.quality}}

    def decode_frame(self, data: Any, shape: tuple[int, ...]) -> np.ndarray:
        import cv2

        raw = np.frombuffer(data, dtype=np.uint8)
        channels = shape[-1]
        image = cv2.imdecode(raw, cv2.IMREAD_COLOR if channels == 3 else cv2.IMREAD_GRAYSCALE)
        if image is None:
            raise ValueError("corrupt JPEG chunk")
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB) if channels == 3 else image[:, :, None]
        return image.reshape(shape)

    def encode_frame(self, frame: np.ndarray) -> bytes:
        """One (H, W, C) or (1, H, W, C) uint8 RGB frame -> JPEG bytes (OpenCV, libjpeg-turbo)."""
        import cv2

        frame = frame[0] if frame.ndim == 4 else frame
        if frame.ndim != 3 or frame.dtype != np.uint8 or frame.shape[-1] not in (1, 3):
            raise ValueError(f"JPEG chunks must be one uint8 frame (1, H, W, 1|3), got {frame.shape} {frame.dtype}")
        image = cv2.cvtColor(frame, cv2.COLOR_RGB2BGR) if frame.shape[-1] == 3 else frame[:, :, 0]
        ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok:
            raise ValueError("JPEG encoding failed")
        return data.tobytes()

    def _decode_sync(self, chunk_bytes: Any, chunk_spec: Any) -> Any:
        image = self.decode_frame(chunk_bytes.as_array_like(), tuple(chunk_spec.shape))
        return chunk_spec.prototype.nd_buffer.from_ndarray_like(image)

    def _encode_sync(self, chunk_array: Any, chunk_spec: Any) -> Any:
        data = self.encode_frame(np.asarray(chunk_array.as_ndarray_like()))
        return chunk_spec.prototype.buffer.from_bytes(data)

    # OpenCV releases the GIL: chunks of one batch are encoded/decoded in parallel threads
    async def _decode_single(self, chunk_bytes: Any, chunk_spec: Any) -> Any:
        return await asyncio.to_thread(self._decode_sync, chunk_bytes, chunk_spec)

    async def _encode_single(self, chunk_array: Any, chunk_spec: Any) -> Any:
        return await asyncio.to_thread(self._encode_sync, chunk_array, chunk_spec)

    def compute_encoded_size(self, input_byte_length: int, _chunk_spec: Any) -> int:
        raise NotImplementedError


@dataclass(frozen=True)
class LegacyJpegCodec(JpegCodec):
    """The same JPEG chunks under the name stores used before (read only)."""

    name: ClassVar[str] = LEGACY_NAME
    quality_key: ClassVar[str] = "quality"


def is_jpeg(codec: Any) -> bool:
    """Whether ``codec`` (ours or imagecodecs') stores one JPEG file per chunk."""
    return isinstance(codec, JpegCodec) or codec.to_dict().get("name") == NAME


def _register_numcodecs() -> None:
    """zarr format 2 arrays (``data export --format zarr2``) name the codec in numcodecs' registry, as
    imagecodecs (and diffusion_policy, from it) does; register an OpenCV one unless that is there."""
    from numcodecs.abc import Codec
    from numcodecs.registry import get_codec, register_codec as register_numcodec

    try:
        get_codec({"id": NAME})
        return
    except (ValueError, TypeError, ImportError):
        pass

    class NumcodecsJpeg(Codec):
        codec_id = NAME

        def __init__(self, level: int | None = 95, **_: Any) -> None:
            self.level = 95 if level is None else int(level)

        def encode(self, buf: Any) -> bytes:
            return JpegCodec(self.level).encode_frame(np.asarray(buf))

        def decode(self, buf: Any, out: Any = None) -> np.ndarray:
            import cv2

            image = cv2.imdecode(np.frombuffer(buf, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
            if image is None:
                raise ValueError("corrupt JPEG chunk")
            image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB) if image.ndim == 3 else image[:, :, None]
            if out is not None:
                np.copyto(np.asarray(out).reshape(image.shape), image)
                return out
            return image

        def get_config(self) -> dict[str, Any]:
            return {"id": NAME, "level": self.level}

    register_numcodec(NumcodecsJpeg)


register_codec(LEGACY_NAME, LegacyJpegCodec)
_register_numcodecs()
if not entry_points(group="zarr.codecs", name=NAME):  # imagecodecs-zarr installed: zarr uses its codec
    register_codec(NAME, JpegCodec)
