"""``robot_stack.jpeg``: a zarr 3 array->bytes codec storing each (1, H, W, 3) uint8 chunk as a JPEG.

Optional (``image_codec="jpeg"``): about 10x smaller than lossless Blosc for camera images and
fast to decode (libjpeg-turbo via OpenCV), but lossy. Reading such a store needs this codec to be
registered: ``import robot_stack.data`` does that (zarr finds it by the name ``robot_stack.jpeg``).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import numpy as np
from zarr.abc.codec import ArrayBytesCodec
from zarr.core.common import parse_named_configuration
from zarr.registry import register_codec

NAME = "robot_stack.jpeg"


@dataclass(frozen=True)
class JpegCodec(ArrayBytesCodec):
    """JPEG (RGB, 4:2:0) per chunk; chunks must be one frame ``(1, H, W, 3)`` or ``(1, H, W, 1)``."""

    quality: int = 95
    is_fixed_size = False

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JpegCodec:
        _, config = parse_named_configuration(data, NAME, require_configuration=False)
        return cls(**(config or {}))

    def to_dict(self) -> dict[str, Any]:
        return {"name": NAME, "configuration": {"quality": self.quality}}

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


register_codec(NAME, JpegCodec)
