"""One error family for the toolchain.

Every message says what was wrong, where, and what to do next. The CLI prints these without a
traceback and exits with status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class PortraitError(Exception):
    """Base of all expected, user-facing errors."""

    def __init__(self, what: str, *, where: str | None = None, fix: str | None = None):
        self.what, self.where, self.fix = what, where, fix
        parts = [what]
        if where:
            parts.append(f"  where: {where}")
        if fix:
            parts.append(f"  what to do: {fix}")
        super().__init__("\n".join(parts))


class RegistryError(PortraitError):
    """The model registry file or an entry in it is wrong."""


class ModelNotFound(PortraitError):
    """A registered model file is not in any models directory or the cache."""


class ChecksumMismatch(PortraitError):
    """A model file exists but its SHA-256 is not the registered one."""


class ModelFormatError(PortraitError):
    """A model file is corrupt, truncated, or not the format it claims to be."""


class PhotoFormatError(ModelFormatError):
    """A photo's embedded depth / matte data is missing or corrupt; names the file format and the field.

    `absent` is True when the file simply does not carry that format (no GDepth XMP, no MPF index), False
    when it carries it but a field is broken: a reader fallback must not hide the second kind.
    """

    def __init__(self, what: str, *, format: str, field: str, absent: bool = False, **kw):
        self.format, self.field, self.absent = format, field, absent
        super().__init__(f"{format}: {field}: {what}", **kw)


class UnsupportedOp(PortraitError):
    """An importer met an operator it cannot translate."""


class InputError(PortraitError):
    """Inputs (images, shapes, values, calibration sets) are unusable."""


class BundleError(InputError):
    """A bundle is damaged or inconsistent: its manifest breaks the schema, a reference dangles, or a
    file is missing, unlisted or not the one the manifest recorded. Names the file, the field, what was
    expected and what was found."""

    def __init__(self, what: str, *, file: str, field: str, expected: str = "", found: str = "", **kw):
        self.file, self.field, self.expected, self.found = file, field, expected, found
        detail = f"{file}: {field}: {what}"
        if expected or found:
            detail += f" (expected {expected or '-'}, found {found or '-'})"
        super().__init__(detail, **kw)


class RecipeError(PortraitError):
    """An export recipe is missing or malformed."""


class ParityError(PortraitError):
    """A quantized model missed a parity budget; nothing is handed off."""

    def __init__(self, what: str, *, figures: dict | None = None, **kw):
        super().__init__(what, **kw)
        self.figures = figures or {}


class ExportError(PortraitError):
    """Conversion or a post-conversion check failed."""
