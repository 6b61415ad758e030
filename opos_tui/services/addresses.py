"""E-mail addresses as an admin or operator types them: ``addr@example.com`` or ``Name <addr@example.com>``."""

from __future__ import annotations

import re
from email.headerregistry import Address
from email.utils import getaddresses

from opos_tui.services.errors import InvalidValue

# Deliberately simple (RFC 5321 mailbox without quoted local parts or address literals): what accounting
# systems put in their customer records. Internationalised domains are allowed as UTF-8.
_ADDR_SPEC = re.compile(r"^[^\s@<>(),;:\"\[\]\\]+@[^\s@<>(),;:\"\[\]\\.]+(\.[^\s@<>(),;:\"\[\]\\.]+)+$")


class AddressError(InvalidValue):
    pass


def _line_break() -> AddressError:
    return AddressError("contains a line break", "enthält einen Zeilenumbruch")


def has_line_break(value: str) -> bool:
    return "\r" in value or "\n" in value


def check_addr_spec(value: str) -> str:
    """The bare address, or AddressError saying why it is not one."""
    value = value.strip()
    if has_line_break(value):
        raise _line_break()
    if not _ADDR_SPEC.match(value):
        raise AddressError(
            f"'{value}' is not an e-mail address (name@example.com)",
            f"'{value}' ist keine E-Mail-Adresse (name@example.com)",
        )
    return value


def parse_mailbox(value: str) -> Address:
    """``Name <addr>`` or a bare address, validated."""
    if has_line_break(value):
        raise _line_break()
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
