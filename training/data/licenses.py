"""Which package a file belongs to and under which license it was published.

Installed distributions declare their license in `*.dist-info/METADATA` (PEP 639 `License-Expression`,
else the free-form `License` field, else trove classifiers, else the license file shipped alongside);
their `RECORD` lists the files they own. The standard library is under the PSF license. A directory the
user names is treated as a set of repositories: the nearest ancestor holding `.git` or a LICENSE file is
the repository, and that LICENSE file's text is classified. Licenses are reported as SPDX ids (or an
SPDX expression), `unknown` when nothing says.
"""
import importlib.metadata
import os
import re
from pathlib import Path

PERMISSIVE = frozenset({
    "MIT", "MIT-0", "MIT-CMU", "X11", "BSD", "BSD-2-Clause", "BSD-3-Clause", "0BSD", "Apache-2.0", "ISC",
    "PSF-2.0", "Python-2.0", "Zlib", "Unlicense", "CC0-1.0", "HPND", "BSL-1.0", "NCSA", "UPL-1.0",
    "AFL-2.1", "AFL-3.0"})

# Free-form spellings and trove classifier tails -> SPDX id. Matched case-insensitively on whole names.
_ALIASES = {
    "mit": "MIT", "mit license": "MIT", "the mit license": "MIT", "expat": "MIT",
    "bsd": "BSD", "bsd license": "BSD", "new bsd": "BSD-3-Clause", "new bsd license": "BSD-3-Clause",
    "3-clause bsd license": "BSD-3-Clause", "bsd 3-clause": "BSD-3-Clause", "bsd-3": "BSD-3-Clause",
    "modified bsd": "BSD-3-Clause", "simplified bsd": "BSD-2-Clause", "bsd 2-clause": "BSD-2-Clause",
    "apache": "Apache-2.0", "apache 2.0": "Apache-2.0", "apache-2": "Apache-2.0",
    "apache license 2.0": "Apache-2.0", "apache software license": "Apache-2.0",
    "apache license, version 2.0": "Apache-2.0", "apache software license 2.0": "Apache-2.0",
    "isc": "ISC", "isc license": "ISC", "isc license (iscl)": "ISC",
    "psf": "PSF-2.0", "python software foundation license": "PSF-2.0", "psfl": "PSF-2.0",
    "mozilla public license 2.0 (mpl 2.0)": "MPL-2.0", "mpl 2.0": "MPL-2.0",
    "the unlicense (unlicense)": "Unlicense", "public domain": "Unlicense", "zlib/libpng license": "Zlib",
    "gnu general public license v2 (gplv2)": "GPL-2.0", "gnu general public license v3 (gplv3)": "GPL-3.0",
    "gnu general public license v2 or later (gplv2+)": "GPL-2.0-or-later",
    "gnu general public license v3 or later (gplv3+)": "GPL-3.0-or-later",
    "gnu lesser general public license v2 (lgplv2)": "LGPL-2.0",
    "gnu lesser general public license v3 (lgplv3)": "LGPL-3.0",
    "gnu lesser general public license v2 or later (lgplv2+)": "LGPL-2.0-or-later",
    "gnu lesser general public license v3 or later (lgplv3+)": "LGPL-3.0-or-later",
    "gnu affero general public license v3": "AGPL-3.0", "gpl": "GPL", "lgpl": "LGPL",
}
# Text fingerprints, most specific first (the LGPL mentions the GPL; BSD-3 contains BSD-2's wording).
_TEXT_RULES = [
    ("AGPL-3.0", (r"GNU AFFERO GENERAL PUBLIC LICENSE",)),
    ("LGPL-3.0", (r"GNU LESSER GENERAL PUBLIC LICENSE", r"Version 3")),
    ("LGPL-2.1", (r"GNU LESSER GENERAL PUBLIC LICENSE",)),
    ("LGPL-2.0", (r"GNU LIBRARY GENERAL PUBLIC LICENSE",)),
    ("GPL-3.0", (r"GNU GENERAL PUBLIC LICENSE", r"Version 3")),
    ("GPL-2.0", (r"GNU GENERAL PUBLIC LICENSE",)),
    ("MPL-2.0", (r"Mozilla Public License,? (?:Version|v\.?) ?2\.0",)),
    ("Apache-2.0", (r"Apache License", r"Version 2\.0")),
    ("PSF-2.0", (r"PYTHON SOFTWARE FOUNDATION LICENSE",)),
    ("Unlicense", (r"This is free and unencumbered software released into the public domain",)),
    ("BSD-3-Clause", (r"Redistribution and use in source and binary forms", r"(?:Neither the name|names of (?:its|the) contributors)")),
    ("BSD-2-Clause", (r"Redistribution and use in source and binary forms",)),
    ("MIT", (r"Permission is hereby granted, free of charge",)),
    ("ISC", (r"Permission to use, copy, modify, and(?:/or)? distribute this software for any purpose",)),
    ("Zlib", (r"This software is provided 'as-is', without any express or implied",)),
]
_LICENSE_FILE = re.compile(r"^(?:LICEN[CS]E|COPYING|UNLICENSE)(?:[-._][\w.-]*)?$", re.IGNORECASE)


def classify_text(text: str) -> str:
    """SPDX id of a license text, from phrases every copy of that license contains. Only the head is
    read: bundles (scipy's LICENSE.txt) append third-party licenses after their own."""
    head = text[:6000]
    for spdx, patterns in _TEXT_RULES:
        if all(re.search(p, head, re.IGNORECASE) for p in patterns):
            return spdx
    return "unknown"


def normalize(name: str) -> str:
    """One license name or an SPDX expression, spelled as SPDX. Long free text is classified."""
    name = name.strip()
    if not name or name.lower() in ("unknown", "none", "other", "other/proprietary license", "unlicensed"):
        return "unknown"
    if "\n" in name or len(name) > 80:
        return classify_text(name)
    if name.lower() in _ALIASES:
        return _ALIASES[name.lower()]
    parts = re.split(r"(\s+(?:OR|AND|WITH)\s+|[()])", name)
    return "".join(_ALIASES.get(p.strip().lower(), p.strip() if p.strip() in ("(", ")") else p)
                   if p.strip() else p for p in parts)


def is_permissive(expression: str) -> bool:
    """SPDX semantics: `A OR B` is permissive when either is, `A AND B` when both are; `A WITH X` is A."""
    tokens = re.findall(r"\(|\)|[^\s()]+", expression)
    pos = 0

    def parse_or() -> bool:
        nonlocal pos
        value = parse_and()
        while pos < len(tokens) and tokens[pos].upper() == "OR":
            pos += 1
            value = parse_and() or value
        return value

    def parse_and() -> bool:
        nonlocal pos
        value = parse_atom()
        while pos < len(tokens) and tokens[pos].upper() == "AND":
            pos += 1
            value = parse_atom() and value
        return value

    def parse_atom() -> bool:
        nonlocal pos
        if pos >= len(tokens):
            return False
        token, pos = tokens[pos], pos + 1
        if token == "(":
            value = parse_or()
            pos += 1  # the closing parenthesis
        else:
            value = token.removesuffix("+").removesuffix("-or-later") in PERMISSIVE
        if pos < len(tokens) and tokens[pos].upper() == "WITH":
            pos += 2
        return value

    return bool(tokens) and parse_or()


def distribution_license(dist: importlib.metadata.Distribution) -> str:
    meta = dist.metadata
    if meta.get("License-Expression"):
        return normalize(meta["License-Expression"])
    free_text = meta.get("License") or ""
    if free_text and "\n" not in free_text.strip() and normalize(free_text) != "unknown":
        return normalize(free_text)
    classifiers = [c.split(" :: ")[-1] for c in meta.get_all("Classifier") or [] if c.startswith("License ::")]
    names = sorted({normalize(c) for c in classifiers} - {"unknown", "OSI Approved", "DFSG approved"})
    if names:
        return " OR ".join(names)  # several license classifiers mean a dual license
    if free_text and classify_text(free_text) != "unknown":  # the whole license pasted into METADATA
        return classify_text(free_text)
    for file in dist.files or []:
        if _LICENSE_FILE.match(file.name) and ".dist-info" in str(file):
            try:
                return classify_text(Path(file.locate()).read_text(encoding="utf-8", errors="replace"))
            except OSError:
                continue
    return "unknown"


class SitePackages:
    """Maps each file of a site-packages directory to (distribution, license) through the RECORDs."""

    def __init__(self, root: Path):
        self.by_file: dict[str, tuple[str, str]] = {}
        self.by_top: dict[str, tuple[str, str]] = {}
        self.by_dist: dict[str, str] = {}
        for dist in importlib.metadata.distributions(path=[str(root)]):
            name = dist.metadata["Name"] or "unknown"
            owner = (name, distribution_license(dist))
            self.by_dist[name] = owner[1]
            for file in dist.files or []:
                rel = file.as_posix()
                if rel.startswith("..") or ".dist-info/" in rel:
                    continue
                self.by_file[rel] = owner
                self.by_top.setdefault(rel.split("/")[0].removesuffix(".py"), owner)

    def lookup(self, relpath: str) -> tuple[str, str]:
        top = relpath.split("/")[0].removesuffix(".py")
        return self.by_file.get(relpath) or self.by_top.get(top) or (top, "unknown")


class Repositories:
    """A user-named directory: the repository of a file is its nearest ancestor holding `.git` or a
    LICENSE file (else the named directory itself); its license is the nearest LICENSE file's text."""

    def __init__(self, root: Path, label: str):
        self.root, self.label = root, label
        self._license_files: dict[Path, Path | None] = {}
        self._licenses: dict[Path, str] = {}

    def lookup(self, relpath: str) -> tuple[str, str]:
        chain = self._ancestors((self.root / relpath).parent)
        repo = next((d for d in chain if self._license_file(d) or (d / ".git").exists()), self.root)
        name = repo.relative_to(self.root).as_posix()
        package = self.label if name == "." else f"{self.label}/{name}"
        license_dir = next((d for d in chain if self._license_file(d)), None)
        if license_dir is None:
            return package, "unknown"
        if license_dir not in self._licenses:
            self._licenses[license_dir] = _read_license(self._license_file(license_dir))
        return package, self._licenses[license_dir]

    def _ancestors(self, directory: Path) -> list[Path]:
        chain = [directory]
        while chain[-1] != self.root and chain[-1].parent != chain[-1]:
            chain.append(chain[-1].parent)
        return chain

    def _license_file(self, directory: Path) -> Path | None:
        if directory not in self._license_files:
            names = sorted(n for n in os.listdir(directory) if _LICENSE_FILE.match(n))
            self._license_files[directory] = next((directory / n for n in names if (directory / n).is_file()), None)
        return self._license_files[directory]


def _read_license(path: Path) -> str:
    try:
        return classify_text(path.read_text(encoding="utf-8", errors="replace")[:50_000])
    except OSError:
        return "unknown"
