# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the deepseek.h authors
"""Exceptions for ds_status codes (deepseek.h)."""

# ds_status values, by name (deepseek.h: never renumbered).
STATUS = {
    "OK": 0,
    "NOMEM": -1, "INVALID_ARG": -2, "IO": -3, "UNSUPPORTED": -4, "LIMIT": -5, "CANCELLED": -6,
    "EXISTS": -7, "INTERNAL": -8,
    "NOT_DSM": -100, "VERSION": -101, "TRUNCATED": -102, "CORRUPT": -103, "JSON": -104,
    "SAFETENSORS": -105, "MISSING_TENSOR": -106, "SHAPE": -107, "ARCH": -108, "CONFIG": -109, "GGUF": -110,
    "NOT_ADAPTER": -111, "ADAPTER": -112, "ADAPTER_BASE": -113, "CALIBRATION": -114,
    "WRONG_KEY": -200, "AUTH": -201, "NEED_KEY": -202, "NO_AES": -203, "CRYPTO": -204, "PLAINTEXT": -205,
    "BACKEND": -300, "NO_DEVICE": -301,
    "MISUSE": -400,
}
_NAMES = {v: k for k, v in STATUS.items()}


class Error(Exception):
    """A failed deepseek.h call.

    status: the ds_status code (negative int); status_name: its DS_ERR_ name
    without the prefix ("WRONG_KEY"); message: the library's message of the
    failure (what and where; never key material)."""

    def __init__(self, status, message):
        self.status = status
        self.status_name = _NAMES.get(status, str(status))
        self.message = message
        super().__init__(message)

    def __str__(self):
        return self.message

    def __reduce__(self):
        return (self.__class__, (self.status, self.message))


# generic -1 .. -99
class OutOfMemoryError(Error, MemoryError):
    """DS_ERR_NOMEM: an allocation failed."""


class InvalidArgumentError(Error, ValueError):
    """DS_ERR_INVALID_ARG: a parameter is out of range, or the text is not valid UTF-8."""


class FileError(Error, OSError):
    """DS_ERR_IO (open/read/mmap failed: a missing file, a directory) and DS_ERR_EXISTS."""


class UnsupportedError(Error):
    """DS_ERR_UNSUPPORTED: a feature this build or machine lacks (a chat template of another family, ...)."""


class LimitError(Error):
    """DS_ERR_LIMIT: a size exceeds a limit (the prompt does not fit the context, ...)."""


class CancelledError(Error):
    """DS_ERR_CANCELLED: a callback asked to stop."""


# file format -100 .. -199
class FormatError(Error):
    """-100 .. -199: not a container, a version this library does not read, truncated, corrupt,
    an unsupported architecture, a malformed GGUF file, a LoRA adapter that does not fit its
    model (or a model where an adapter was expected)."""


# crypto -200 .. -299
class CryptoError(Error):
    """-200 .. -299: keys, authentication, the cipher (DS_ERR_NO_AES: no AES instructions)."""


class WrongKeyError(CryptoError):
    """DS_ERR_WRONG_KEY: the key or passphrase does not open this file."""


class AuthenticationError(CryptoError):
    """DS_ERR_AUTH: a chunk or the header failed authentication (tampered or damaged)."""


class KeyRequiredError(CryptoError):
    """DS_ERR_NEED_KEY: the file is encrypted and no key or passphrase was given."""


class PlaintextError(CryptoError):
    """DS_ERR_PLAINTEXT: a key was given for a plaintext file (see allow_plaintext)."""


class BackendError(Error):
    """-300 .. -399: a compute backend failed, or the device is absent."""


class MisuseError(Error):
    """DS_ERR_MISUSE: a call in the wrong order or on a closed object."""


_BY_STATUS = {
    STATUS["NOMEM"]: OutOfMemoryError,
    STATUS["INVALID_ARG"]: InvalidArgumentError,
    STATUS["IO"]: FileError,
    STATUS["EXISTS"]: FileError,
    STATUS["UNSUPPORTED"]: UnsupportedError,
    STATUS["LIMIT"]: LimitError,
    STATUS["CANCELLED"]: CancelledError,
    STATUS["WRONG_KEY"]: WrongKeyError,
    STATUS["AUTH"]: AuthenticationError,
    STATUS["NEED_KEY"]: KeyRequiredError,
    STATUS["PLAINTEXT"]: PlaintextError,
    STATUS["MISUSE"]: MisuseError,
}


def error_class(status):
    """The exception class of a status: by code, else by its range."""
    cls = _BY_STATUS.get(status)
    if cls is not None:
        return cls
    if -199 <= status <= -100:
        return FormatError
    if -299 <= status <= -200:
        return CryptoError
    if -399 <= status <= -300:
        return BackendError
    return Error
