"""The two error families of the codec, named for whose fault it is.

``LocalProtocolError``: *we* tried to build something invalid (a bad address,
a DI out of range, a value that overflows its format). Raised at once.

``RemoteDataError``: a *device* sent a frame whose content does not fit what
it claims to be (bad BCD, wrong length). Raised by the parse and decode
functions, never by :class:`~protocols.dlt645.Decoder`, which reports framing
problems as ``Discarded`` events instead.
"""

from __future__ import annotations


class LocalProtocolError(ValueError):
    """We tried to build an invalid frame or value; the message names the culprit."""


class RemoteDataError(ValueError):
    """A device's frame content is malformed; the message names the DI or function."""


class UnknownDataId(KeyError):
    """A data identifier that the registry does not know."""

    def __str__(self) -> str:
        # KeyError quotes its argument; a plain message reads better in logs.
        return str(self.args[0]) if self.args else "unknown data identifier"


class DataKindError(ValueError):
    """A DI was given to a function that does not handle its kind (e.g. a date to
    :func:`decode_payload`); the message says which function to use instead."""
