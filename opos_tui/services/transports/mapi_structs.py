"""Simple MAPI's structures as ctypes declares them, with fixed-width fields only.

``ULONG`` and ``FLAGS`` are 32 bits on Windows (also on 64-bit Windows), but ``c_ulong`` is 64 bits on 64-bit
Linux, and ``c_wchar`` is UTF-16 on Windows but UTF-32 elsewhere: a layout spelled with them only works by
luck on one system. So every ``ULONG`` is a ``c_uint32``, every pointer a ``c_void_p`` (``ULONG_PTR`` and
``LHANDLE`` are pointer-sized, ``c_size_t``), and strings are explicit buffers: UTF-16-LE with a two-byte
terminator for the ``W`` structures, the ANSI code page for the old ones. On 64-bit Windows the ``W`` and the
ANSI structures alike are 96 (``MapiMessage``), 40 (``MapiRecipDesc``) and 40 (``MapiFileDesc``) bytes.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from ctypes import c_size_t, c_uint32, c_void_p
from typing import Any

SUCCESS_SUCCESS = 0
MAPI_ORIG, MAPI_TO, MAPI_CC, MAPI_BCC = 0, 1, 2, 3
MAPI_LOGON_UI = 0x00000001
"""Let the mail program ask for its profile (and sign-in) if it has no session yet."""
NO_POSITION = 0xFFFFFFFF
"""``nPosition`` of an attachment not placed inside the text: the mail program adds it at the end."""


class MapiRecipDesc(ctypes.Structure):
    """``MapiRecipDesc`` and ``MapiRecipDescW``: the string fields point to ANSI or UTF-16 buffers."""

    _fields_ = [
        ("ulReserved", c_uint32),
        ("ulRecipClass", c_uint32),
        ("lpszName", c_void_p),
        ("lpszAddress", c_void_p),
        ("ulEIDSize", c_uint32),
        ("lpEntryID", c_void_p),
    ]


class MapiFileDesc(ctypes.Structure):
    """``MapiFileDesc`` and ``MapiFileDescW``."""

    _fields_ = [
        ("ulReserved", c_uint32),
        ("flFlags", c_uint32),
        ("nPosition", c_uint32),
        ("lpszPathName", c_void_p),
        ("lpszFileName", c_void_p),
        ("lpFileType", c_void_p),
    ]


class MapiMessage(ctypes.Structure):
    """``MapiMessage`` and ``MapiMessageW``."""

    _fields_ = [
        ("ulReserved", c_uint32),
        ("lpszSubject", c_void_p),
        ("lpszNoteText", c_void_p),
        ("lpszMessageType", c_void_p),
        ("lpszDateReceived", c_void_p),
        ("lpszConversationID", c_void_p),
        ("flFlags", c_uint32),
        ("lpOriginator", c_void_p),
        ("nRecipCount", c_uint32),
        ("lpRecips", c_void_p),
        ("nFileCount", c_uint32),
        ("lpFiles", c_void_p),
    ]


LHANDLE = c_size_t
ULONG_PTR = c_size_t
Function = Callable[..., Any]


def declare(library: ctypes.CDLL) -> tuple[bool, Function]:
    """Declare the send function of a loaded ``mapi32``: ``MAPISendMailW`` where it exists (Windows 8 and
    later), else ``MAPISendMail`` with the ANSI structures. Returns (unicode?, function)."""
    try:
        function, unicode = library.MAPISendMailW, True
    except AttributeError:
        function, unicode = library.MAPISendMail, False
    # ULONG FAR PASCAL MAPISendMail[W](LHANDLE lhSession, ULONG_PTR ulUIParam, lpMapiMessage[W] lpMessage,
    #                                 FLAGS flFlags, ULONG ulReserved)
    function.argtypes = [LHANDLE, ULONG_PTR, ctypes.POINTER(MapiMessage), c_uint32, c_uint32]
    function.restype = c_uint32
    return unicode, function


def declare_logon(library: ctypes.CDLL) -> tuple[Function, Function]:
    """``MAPILogon`` and ``MAPILogoff`` (ANSI only; the profile and password are passed as NULL here)."""
    logon, logoff = library.MAPILogon, library.MAPILogoff
    # ULONG MAPILogon(ULONG_PTR ulUIParam, LPSTR lpszProfileName, LPSTR lpszPassword, FLAGS flFlags,
    #                 ULONG ulReserved, LPLHANDLE lplhSession)
    logon.argtypes = [ULONG_PTR, c_void_p, c_void_p, c_uint32, c_uint32, ctypes.POINTER(LHANDLE)]
    logon.restype = c_uint32
    # ULONG MAPILogoff(LHANDLE lhSession, ULONG_PTR ulUIParam, FLAGS flFlags, ULONG ulReserved)
    logoff.argtypes = [LHANDLE, ULONG_PTR, c_uint32, c_uint32]
    logoff.restype = c_uint32
    return logon, logoff


class Strings:
    """Keeps the string buffers a message points to alive until the call is over."""

    def __init__(self, unicode: bool, ansi_codec: str) -> None:
        self.unicode = unicode
        self.ansi_codec = ansi_codec
        self._buffers: list[ctypes.Array[ctypes.c_char]] = []

    def encode(self, text: str, *, strict: bool = False) -> bytes:
        if self.unicode:
            return text.encode("utf-16-le") + b"\0\0"
        return text.encode(self.ansi_codec, "strict" if strict else "replace") + b"\0"

    def fits(self, text: str) -> bool:
        """Whether ``text`` can be passed exactly (the ANSI code page has no ``€`` in some places, no ``Ł``)."""
        try:
            self.encode(text, strict=True)
        except UnicodeEncodeError:
            return False
        return True

    def pointer(self, text: str, *, strict: bool = False) -> int:
        data = self.encode(text, strict=strict)
        buffer = ctypes.create_string_buffer(data, len(data))
        self._buffers.append(buffer)
        return ctypes.addressof(buffer)
