"""Kiln's status codes as Python exceptions. Every KilnError carries Kiln's message (with its
context chain) and the numeric `code` of kiln_status_t."""


class KilnError(RuntimeError):
    code = None

    def __init__(self, message, code=None):
        super().__init__(message)
        if code is not None:
            self.code = code


class InvalidArgumentError(KilnError, ValueError):
    code = 1


class NotFoundError(KilnError):
    code = 2


class UnsupportedError(KilnError, NotImplementedError):
    code = 3


class ParseError(KilnError):
    code = 4


class CorruptEngineError(KilnError):
    code = 5


class VersionMismatchError(KilnError):
    code = 6


class OutOfRangeError(KilnError, ValueError):
    code = 7


class KilnIOError(KilnError, OSError):
    code = 8


class KilnRuntimeError(KilnError):
    code = 9


class InternalError(KilnError):
    code = 10


_BY_CODE = {c.code: c for c in (InvalidArgumentError, NotFoundError, UnsupportedError, ParseError,
                                  CorruptEngineError, VersionMismatchError, OutOfRangeError, KilnIOError,
                                  KilnRuntimeError, InternalError)}


def from_code(code, message):
    return _BY_CODE.get(code, KilnError)(message, code)
