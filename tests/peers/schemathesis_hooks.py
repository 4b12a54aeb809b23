"""schemathesis hooks for tests/api_schema.rs: STOW-RS bodies.

schemathesis has no serializer for multipart/related (the STOW-RS request type), and
its multipart encoders pick their own boundary and subtype. Here a generated body (the
bytes the schema describes) becomes one part of a well-formed
`multipart/related; type="application/dicom"` request with a fixed boundary, so the
fuzzed bytes reach drscreen's DICOM ingest instead of stopping at the media type.
"""

import schemathesis

BOUNDARY = "drscreen-schemathesis-stow"
STOW_PATH = "/dicomweb/studies"


@schemathesis.serializer("multipart/related")
def multipart_related(ctx, value):
    if value is None:
        return None
    part = value if isinstance(value, bytes) else str(value).encode("utf-8")
    return (
        f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode("ascii")
        + part
        + f"\r\n--{BOUNDARY}--\r\n".encode("ascii")
    )


@schemathesis.hook
def before_call(context, case, kwargs):
    """The boundary the serializer uses, on STOW-RS requests sent as multipart/related."""
    if case.operation.path == STOW_PATH and case.media_type == "multipart/related":
        case.headers = {**(case.headers or {}), "Content-Type": f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'}
