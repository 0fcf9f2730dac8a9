"""PII scrubbing: e-mail addresses, public IP addresses, API keys and tokens, private key blocks.

Each match becomes a fixed placeholder (the StarCoder convention: `<EMAIL>`, `<IP_ADDRESS>`, `<KEY>`,
`<PRIVATE_KEY>`) so the model learns where such values go without memorising anybody's. Only *public*
IP addresses are replaced: `127.0.0.1`, `0.0.0.0`, `192.168.1.1` and documentation ranges are code, not
personal data, and a model that never saw them would write worse network code.
"""
import ipaddress
import re

PLACEHOLDERS = {"email": "<EMAIL>", "ip_address": "<IP_ADDRESS>", "key": "<KEY>", "private_key": "<PRIVATE_KEY>"}

_PRIVATE_KEY = re.compile(
    r"-----BEGIN ((?:RSA |DSA |EC |OPENSSH |ENCRYPTED |PGP )?PRIVATE KEY(?: BLOCK)?)-----"
    r"[\s\S]*?-----END \1-----")
# The TLD must be letters only and the local part may not start with a dot; `x@self.weight` (a matrix
# product written without spaces) still looks like an address, so known code-ish domains are skipped.
_EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9_%+-][A-Za-z0-9._%+-]*@((?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,24})\b")
_CODE_DOMAINS = ("self.", "cls.", "np.", "torch.", "jnp.", "tf.")
# Address candidates are found with cheap patterns (no lookbehind at every position: 3x faster on the
# default corpus) and checked in Python: not part of a longer dotted number or identifier, and parsing
# as a public address.
_IPV4 = re.compile(r"\b\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}\b")
_IPV6 = re.compile(r"[0-9A-Fa-f]{0,4}:[0-9A-Fa-f]{0,4}:[0-9A-Fa-f:]*")
# Vendor token formats with a fixed prefix: these are never anything but secrets.
_VENDOR_KEYS = re.compile(
    r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"                      # AWS access key id
    r"|\bgh[pousr]_[A-Za-z0-9]{36,}\b|\bgithub_pat_[A-Za-z0-9_]{40,}\b"  # GitHub
    r"|\bxox[abposr]-[A-Za-z0-9-]{10,}\b"                 # Slack
    r"|\bAIza[0-9A-Za-z_-]{35}\b"                         # Google API
    r"|\bsk-(?:proj-|ant-)?[A-Za-z0-9_-]{32,}\b"          # OpenAI / Anthropic
    r"|\b[rs]k_(?:live|test)_[0-9A-Za-z]{24,}\b"          # Stripe
    r"|\bhf_[A-Za-z0-9]{30,}\b"                           # Hugging Face
    r"|\beyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}")  # JWT
# `api_key = "..."`-style assignments: only the quoted value is replaced, and only when the name before
# it says secret and the value looks random (letters and digits mixed, 16+ chars), so
# `password = "changeme"` in a docstring survives. The value is matched first (a cheap anchor), the name
# checked on the text just before it.
_QUOTED_VALUE = re.compile(r"""[:=][ \t]*(["'])([A-Za-z0-9_\-/+=.]{16,})\1""")
_SECRET_NAME = re.compile(r"(?i)(?:api[_-]?key|apikey|secret[_-]?key|client[_-]?secret|access[_-]?token|"
                          r"auth[_-]?token|secret|token|password|passwd)[\"']?[ \t]*$")


def _looks_random(value: str) -> bool:
    return any(c.isdigit() for c in value) and any(c.isalpha() for c in value) and len(set(value)) >= 8


def scrub(text: str) -> tuple[str, dict[str, int]]:
    """Returns the scrubbed text and how many of each PII kind were replaced."""
    counts = {kind: 0 for kind in PLACEHOLDERS}

    def replace(kind: str, keep=lambda m: False):
        def sub(match: re.Match) -> str:
            if keep(match):
                return match.group(0)
            counts[kind] += 1
            return PLACEHOLDERS[kind]
        return sub

    text = _PRIVATE_KEY.sub(replace("private_key"), text)
    text = _VENDOR_KEYS.sub(replace("key"), text)

    # (The closures below read `text` as it was before their own `sub`: Python assigns after it returns.)
    def secret(match: re.Match) -> str:
        if not _looks_random(match.group(2)) or not _SECRET_NAME.search(text, max(0, match.start() - 40),
                                                                           match.start()):
            return match.group(0)
        counts["key"] += 1
        return match.group(0)[:match.start(2) - match.start()] + PLACEHOLDERS["key"] + match.group(1)
    text = _QUOTED_VALUE.sub(secret, text)
    text = _EMAIL.sub(replace("email", lambda m: m.group(1).startswith(_CODE_DOMAINS)), text)

    def address(match: re.Match, ipv6: bool) -> str:
        candidate = match.group(0)
        before, after = text[max(0, match.start() - 1):match.start()], text[match.end():match.end() + 2]
        inside_something = before and (before.isalnum() or before in "_.:") or after[:1] in (":", "_") \
            or after[:1] == "." and after[1:2].isalnum()
        # An IPv6 candidate needs 3+ hex groups: `x[::2]` parses as an address but is a slice.
        if inside_something or ipv6 and sum(1 for g in candidate.split(":") if g) < 3 \
                or not _is_public_ip(candidate):
            return candidate
        counts["ip_address"] += 1
        return PLACEHOLDERS["ip_address"]
    text = _IPV4.sub(lambda m: address(m, False), text)
    text = _IPV6.sub(lambda m: address(m, True), text)
    return text, counts


def _is_public_ip(candidate: str) -> bool:
    try:
        return ipaddress.ip_address(candidate).is_global
    except ValueError:  # 999.1.1.1, a version string, a slice `1:2:3`: not an address
        return False
