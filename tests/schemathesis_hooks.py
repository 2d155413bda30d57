"""schemathesis hooks for the serving API's contract test (``SCHEMATHESIS_HOOKS``): the
photo upload's media types generate real photos (a schema can say "binary" but not "a JPEG
Pillow reads"), so positive cases are photos and negative cases are everything else."""

import io

import schemathesis
from hypothesis import strategies as st


def _photo(fmt: str):
    def make(size: tuple[int, int], colour: tuple[int, int, int]) -> bytes:
        from PIL import Image

        buf = io.BytesIO()
        Image.new("RGB", size, colour).save(buf, format=fmt)
        return buf.getvalue()

    sizes = st.tuples(st.integers(1, 96), st.integers(1, 96))
    colours = st.tuples(*[st.integers(0, 255)] * 3)
    return st.builds(make, sizes, colours)


schemathesis.openapi.media_type("image/jpeg", _photo("JPEG"))
schemathesis.openapi.media_type("image/png", _photo("PNG"))
