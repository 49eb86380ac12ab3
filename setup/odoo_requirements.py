"""Prints the Python requirements of an Odoo source tree that apply to the running Python.

Odoo's ``requirements.txt`` pins one version per Python version and platform through
environment markers; this keeps the lines whose marker holds here. With ``--reuse-installed``,
a requirement whose distribution the running Python already has (for instance from the system's
site-packages) is printed without its pin, so that pip keeps the installed version and needs no
network.

    python setup/odoo_requirements.py [--reuse-installed] ODOO_TREE/requirements.txt
"""

import argparse
import sys
from importlib import metadata

from pip._vendor.packaging.requirements import InvalidRequirement, Requirement


def applicable_requirements(lines, reuse_installed=False):
    for line in lines:
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        try:
            requirement = Requirement(text)
        except InvalidRequirement:
            raise SystemExit(f"unreadable requirement in Odoo's requirements.txt: {text!r}") from None
        if requirement.marker and not requirement.marker.evaluate():
            continue
        if reuse_installed and _installed(requirement.name):
            yield requirement.name
        else:
            yield str(Requirement(f"{requirement.name}{requirement.specifier}"))


def _installed(name):
    try:
        metadata.version(name)
    except metadata.PackageNotFoundError:
        return False
    return True


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reuse-installed", action="store_true")
    parser.add_argument("requirements")
    args = parser.parse_args(argv)
    with open(args.requirements, encoding="utf-8") as handle:
        for requirement in dict.fromkeys(applicable_requirements(handle, args.reuse_installed)):
            print(requirement)


if __name__ == "__main__":
    main(sys.argv[1:])
