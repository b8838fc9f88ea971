"""E-mail addresses as mail systems need them: one place that parses, normalises and formats.

- A display name is never pasted into a header string: headers are built from
  `email.headerregistry.Address` objects, which quote a comma or a quote and
  RFC 2047-encode non-ASCII letters and emoji, so "Müller, Hans" stays one address.
- A domain with non-ASCII letters (an IDN) is encoded per IDNA 2008 with UTS #46
  mapping (the `idna` package) for the envelope and for headers; a relay that
  offers SMTPUTF8 (RFC 6531) gets the Unicode form instead. A mailbox name (the
  part before the @) with non-ASCII letters can only travel with SMTPUTF8; without
  it the recipient is refused with that reason, not retried.
- `address_key` is the one form suppressions, the frequency cap and inbound mail
  compare: lower-cased, with the domain in its Unicode form, so
  `Dana@XN--MNCHEN-3YA.example` and `dana@münchen.example` are the same person.

The security review adds its own refusal of header-unsafe characters in activities/email.py;
`display_name` here only keeps a name on one line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.headerregistry import Address
from functools import lru_cache

import idna

from core.text import header_safe

# RFC 5321 limits: 64 octets before the @, 254 in all (a path of 256 with its brackets).
MAX_LOCAL = 64
MAX_ADDRESS = 254
_LOCAL_ATOM = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
# An all-ASCII host name without A-labels is valid IDNA 2008 exactly when it follows the LDH rule;
# checking that is much cheaper than the idna package's full check, which a survey batch would pay
# a thousand times.
_LDH = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)(?:\.(?!-)[a-z0-9-]{1,63}(?<!-))+$")


class AddressProblem(ValueError):
    """Why an address cannot be used; the message is shown to people as it is."""


@dataclass(frozen=True)
class MailAddress:
    """One recipient, ready for a header and an envelope."""

    name: str
    address: str  # as given
    local: str
    domain: str  # Unicode form (what people read)
    ascii_domain: str  # IDNA 2008 A-label form (what DNS and plain SMTP need)

    @property
    def key(self) -> str:
        return f"{self.local}@{self.domain}".lower()

    @property
    def needs_smtputf8(self) -> bool:
        return not self.local.isascii()

    def envelope(self, smtputf8: bool) -> str:
        """The address for MAIL FROM / RCPT TO. Raises AddressProblem when it cannot travel."""
        if smtputf8:
            return f"{self.local}@{self.domain}"
        if self.needs_smtputf8:
            raise AddressProblem(
                f"{self.address}: the mailbox name has non-ASCII letters and the mail relay does not offer "
                "SMTPUTF8 (RFC 6531)")
        return f"{self.local}@{self.ascii_domain}"

    def header(self, smtputf8: bool) -> Address:
        """The address for To/Cc/From: the display name stays one quoted or encoded phrase."""
        domain = self.domain if smtputf8 else self.ascii_domain
        if self.needs_smtputf8 and not smtputf8:
            raise AddressProblem(f"{self.address}: needs SMTPUTF8 for its non-ASCII mailbox name")
        return Address(display_name=display_name(self.name), username=self.local, domain=domain)


def display_name(name: str) -> str:
    """A display name on one line (a newline must never start a new header), without control
    characters, bidi overrides or zero-width characters, at most 200 characters (core.text.header_safe)."""
    return header_safe(name or "", 200)


@lru_cache(maxsize=8192)
def _domain_forms(domain: str) -> tuple[str, str]:
    """(Unicode form, ASCII form) of a domain, per IDNA 2008 with UTS #46 mapping."""
    domain = domain.strip().rstrip(".")
    lowered = domain.lower()
    if len(lowered) <= 253 and _LDH.match(lowered) and "xn--" not in lowered and not any(
            label[2:4] == "--" for label in lowered.split(".")):
        return lowered, lowered
    if not domain or len(domain) > 253:
        raise AddressProblem("the domain is empty or longer than 253 characters")
    if domain.startswith("[") and domain.endswith("]"):
        raise AddressProblem("address literals ([1.2.3.4]) are not accepted for customer mail")
    try:
        ascii_form = idna.encode(domain, uts46=True).decode("ascii")
        unicode_form = idna.decode(ascii_form)
    except (idna.IDNAError, UnicodeError) as exc:
        raise AddressProblem(f"the domain {domain!r} is not a valid internationalised domain name (IDNA 2008: {exc})") from None
    if "." not in ascii_form:
        raise AddressProblem(f"the domain {domain!r} has no dot: not a public mail domain")
    return unicode_form.lower(), ascii_form.lower()


@lru_cache(maxsize=16384)
def parse_address(address: str, name: str = "") -> MailAddress:
    """Split and check one address (`local@domain`). Raises AddressProblem saying what is wrong.
    (Cached: the same people are written to again and again; a MailAddress is immutable.)"""
    address = (address or "").strip()
    if not address:
        raise AddressProblem("no address")
    if _CONTROL.search(address) or " " in address or "<" in address or ">" in address or "," in address:
        raise AddressProblem(f"{address!r} is not a single bare address")
    local, at, domain = address.rpartition("@")
    if not at or not local:
        raise AddressProblem(f"{address!r} has no mailbox name before an @")
    if local.startswith('"'):
        raise AddressProblem(f"{address!r}: quoted mailbox names are not accepted")
    if len(local.encode()) > MAX_LOCAL:
        raise AddressProblem(f"{address!r}: the mailbox name is longer than {MAX_LOCAL} octets")
    if local.startswith(".") or local.endswith(".") or ".." in local:
        raise AddressProblem(f"{address!r}: dots must separate words of the mailbox name")
    if local.isascii() and not _LOCAL_ATOM.match(local):
        raise AddressProblem(f"{address!r}: the mailbox name has characters mail does not allow")
    unicode_domain, ascii_domain = _domain_forms(domain)
    if len(f"{local}@{ascii_domain}".encode()) > MAX_ADDRESS:
        raise AddressProblem(f"{address!r} is longer than {MAX_ADDRESS} octets")
    return MailAddress(name=display_name(name), address=address, local=local, domain=unicode_domain,
                       ascii_domain=ascii_domain)


def address_key(address: str) -> str:
    """The comparison form of an address; a malformed one is only lower-cased."""
    try:
        return parse_address(address).key
    except AddressProblem:
        return (address or "").strip().lower()


def key_forms(address: str) -> list[str]:
    """Every lower-cased form an address may be stored in (Unicode and A-label domain), for lookups
    in tables written by others (a CRM may hand over either form)."""
    try:
        parsed = parse_address(address)
    except AddressProblem:
        return [(address or "").strip().lower()]
    forms = [parsed.key, f"{parsed.local}@{parsed.ascii_domain}".lower()]
    return list(dict.fromkeys(forms))


def format_for_display(name: str, address: str) -> str:
    """'Name <address>' for lists and logs, built by the e-mail library (quoted where needed)."""
    try:
        parsed = parse_address(address, name)
        return str(Address(display_name=parsed.name, username=parsed.local, domain=parsed.domain))
    except (AddressProblem, ValueError):
        return f"{display_name(name)} <{address}>".strip()
