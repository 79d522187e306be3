"""Stage 2, data: load from a URI, validate against the spec, build the feature pipeline, fingerprint."""

from loopml.data.features import build_preprocessor, prepare
from loopml.data.fingerprint import fingerprint
from loopml.data.load import load_frame
from loopml.data.validate import DataError, validate

__all__ = ["load_frame", "validate", "DataError", "build_preprocessor", "prepare", "fingerprint"]
