"""E-mail addresses as an admin or operator types them: ``addr@example.com`` or ``Name <addr@example.com>``,
and the text of one-line header values.

The one place that decides what an address may be, for the settings, ``enqueue``/``import`` and the
recipient editor alike: what passes here can be written into a mail and its envelope. Deliberately simple
(RFC 5321 mailbox without quoted local parts or address literals): what accounting systems put in their
customer records.

- The part before the @ is an ASCII dot-atom (RFC 5322): letters, digits and ``!#$%&'*+-/=?^_`{|}~``, dots
  only between them; at most 64 characters. Non-ASCII local parts would need SMTPUTF8 from every server on
  the way and are refused.
- The domain may be international (``müller.de``): it is kept as typed and written in its IDNA 2008 form
  (``xn--mller-kva.de``, UTS 46 mapping, ``ß`` kept as ``ß``) into headers and the envelope. Each label at
  most 63 characters in that form, the whole address at most 254.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from email.headerregistry import Address
from email.utils import getaddresses, make_msgid
from typing import Literal

from opos_tui.services.errors import BadInput

MAX_LOCAL = 64
MAX_LABEL = 63
MAX_ADDRESS = 254

_ATEXT = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]")
_LDH_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?")
# Line breaks of every kind (what str.splitlines() breaks on), other control characters, and unpaired
# surrogates (text that cannot be encoded); a tab is fine.
_NOT_IN_HEADER = ("Cc", "Zl", "Zp", "Cs")


class AddressError(BadInput, ValueError):
    """Why a text is not a usable e-mail address (or one-line header value), in English and German."""


def check_one_line(value: str) -> str:
    """``value`` if a one-line header value (or setting) can hold it, else AddressError naming the first
    character that it cannot: a line break of any kind, another control character, an unpaired surrogate."""
    for char in value:
        if char != "\t" and unicodedata.category(char) in _NOT_IN_HEADER:
            code = f"U+{ord(char):04X}"
            raise AddressError(
                f"contains a line break or another character a mail header cannot hold ({code})",
                f"enthält einen Zeilenumbruch oder ein anderes Zeichen, das in keine Kopfzeile darf ({code})",
            )
    return value


def _check_local(local: str) -> None:
    if not local:
        raise AddressError("nothing before the @", "nichts vor dem @")
    if not local.isascii():
        odd = next(c for c in local if not c.isascii())
        raise AddressError(
            f"the part before the @ contains {odd!r}: only ASCII letters, digits and .!#$%&'*+-/=?^_`{{|}}~ "
            "are possible there (an international domain after the @ is fine)",
            f"der Teil vor dem @ enthält {odd!r}: dort sind nur ASCII-Buchstaben, Ziffern und "
            ".!#$%&'*+-/=?^_`{|}~ möglich (eine internationale Domain nach dem @ ist kein Problem)",
        )
    if local.startswith(".") or local.endswith(".") or ".." in local:
        raise AddressError(
            "the part before the @ must not start or end with a dot or have two dots in a row",
            "der Teil vor dem @ darf nicht mit einem Punkt beginnen oder enden und keine zwei Punkte hintereinander"
            " haben",
        )
    other = next((c for c in local if c != "." and not _ATEXT.fullmatch(c)), None)
    if other is not None:
        raise AddressError(
            f"the part before the @ contains {other!r}, which an address cannot hold",
            f"der Teil vor dem @ enthält {other!r}, das in einer Adresse nicht vorkommen kann",
        )
    if len(local) > MAX_LOCAL:
        raise AddressError(
            f"the part before the @ has {len(local)} characters, at most {MAX_LOCAL} are allowed",
            f"der Teil vor dem @ hat {len(local)} Zeichen, höchstens {MAX_LOCAL} sind erlaubt",
        )


def _idna(domain: str, text: str, how: Literal["remap", "u-label", "a-label"]) -> str:
    """``text`` (``domain`` or one of its labels) through the idna package, imported only for the domains that
    need it (international ones, and ASCII ones with an ``xn--`` label): most never do."""
    import idna

    try:
        if how == "remap":
            return str(idna.uts46_remap(text, std3_rules=True, transitional=False))
        if how == "u-label":
            return str(idna.ulabel(text))
        return bytes(idna.alabel(text)).decode("ascii")
    except idna.IDNAError as exc:
        raise AddressError(
            f"the domain {domain!r} cannot be written in IDNA form: {exc}",
            f"die Domain {domain!r} lässt sich nicht in IDNA-Form schreiben: {exc}",
        ) from None


def ascii_domain(domain: str) -> str:
    """The domain as it goes into headers and the envelope: ASCII labels as typed, international ones as
    IDNA 2008 A-labels (``müller.de`` → ``xn--mller-kva.de``). AddressError if it is no valid domain."""
    mapped = domain if domain.isascii() else _idna(domain, domain, "remap")
    labels = mapped.split(".")
    if len(labels) < 2 or not all(labels):
        raise AddressError(
            f"the domain {domain!r} needs a dot (example.com), and no dot at its start or end or two in a row",
            f"die Domain {domain!r} braucht einen Punkt (example.com), aber keinen am Anfang oder Ende und keine"
            " zwei hintereinander",
        )
    encoded: list[str] = []
    for label in labels:
        size = len(label) if label.isascii() else len(label.encode("punycode")) + len("xn--")
        if size > MAX_LABEL:
            idna_en, idna_de = ("", "") if label.isascii() else (" in IDNA form", " in IDNA-Form")
            raise AddressError(
                f"the part {label!r} of the domain has {size} characters{idna_en}, at most {MAX_LABEL} are allowed",
                f"der Teil {label!r} der Domain hat {size} Zeichen{idna_de}, höchstens {MAX_LABEL} sind erlaubt",
            )
        if label.isascii() and not _LDH_LABEL.fullmatch(label):
            raise AddressError(
                f"the part {label!r} of the domain may hold only letters, digits and '-' (not at its start or end)",
                f"der Teil {label!r} der Domain darf nur Buchstaben, Ziffern und '-' enthalten (nicht am Anfang oder"
                " Ende)",
            )
        if not label.isascii():
            label = _idna(domain, label, "a-label")
        elif label.lower().startswith("xn--"):
            _idna(domain, label, "u-label")  # xn--…: must be a valid A-label
        encoded.append(label)
    return ".".join(encoded)


def _ascii_parts(value: str) -> tuple[str, str]:
    """(local part, IDNA domain) of a bare address, or AddressError saying why it is not one."""
    check_one_line(value)
    if value.count("@") != 1:
        raise AddressError(
            f"'{value}' is not an e-mail address (name@example.com)",
            f"'{value}' ist keine E-Mail-Adresse (name@example.com)",
        )
    local, _, domain = value.partition("@")
    _check_local(local)
    ascii_form = ascii_domain(domain)
    size = len(local) + 1 + len(ascii_form)
    if size > MAX_ADDRESS:
        raise AddressError(
            f"the address has {size} characters (its domain in IDNA form), at most {MAX_ADDRESS} are allowed",
            f"die Adresse hat {size} Zeichen (die Domain in IDNA-Form), höchstens {MAX_ADDRESS} sind erlaubt",
        )
    return local, ascii_form


def check_addr_spec(value: str) -> str:
    """The bare address as typed (stripped), or AddressError saying why it is not one that can be sent."""
    value = value.strip()
    _ascii_parts(value)
    return value


@functools.lru_cache(maxsize=256)
def ascii_addr_spec(value: str) -> str:
    """The bare address as it goes into MAIL FROM / RCPT TO: its domain in IDNA form; AddressError if it is
    not one that can be sent. Remembered: a run sends every mail from the same sender."""
    local, domain = _ascii_parts(value.strip())
    return f"{local}@{domain}"


def header_address(name: str, addr_spec: str) -> Address:
    """The mailbox as it goes into a From/To/Cc/Reply-To header: the name as typed (RFC 2047 encoded when it
    has umlauts), the domain in IDNA form (an encoded word inside an address would be invalid)."""
    local, domain = _ascii_parts(addr_spec.strip())
    return Address(display_name=check_one_line(name), username=local, domain=domain)


@functools.lru_cache(maxsize=256)
def parse_mailbox(value: str) -> Address:
    """``Name <addr>`` or a bare address, validated; the address as typed (its domain not yet in IDNA form).
    Remembered (an Address cannot be changed): a run parses the same sender for every mail."""
    check_one_line(value)
    found = getaddresses([value.strip()])
    if len(found) != 1 or not found[0][1]:
        raise AddressError(
            f"'{value.strip()}' is not one e-mail address (name@example.com)",
            f"'{value.strip()}' ist nicht genau eine E-Mail-Adresse (name@example.com)",
        )
    name, addr = found[0]
    addr = check_addr_spec(addr)
    local, _, domain = addr.rpartition("@")
    return Address(display_name=name, username=local, domain=domain)


def new_message_id(sender: str) -> str:
    """A new Message-ID in the domain of ``sender`` (``Name <addr>`` or an address; IDNA form, as a header
    holds ASCII only), in ``localhost`` while no sender is set."""
    domain = sender.rpartition("@")[2].rstrip(">").strip()
    return make_msgid(domain=ascii_domain(domain) if domain else "localhost")
