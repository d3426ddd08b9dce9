"""Every package installed from the project's requirement files is pinned, directly or by
constraints.txt, at the version installed: a fresh install gets the same set of packages as
the one the suite and the benchmarks ran on, not whatever a dependency's dependency released
since."""

import re
from importlib import metadata
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
PINNING_FILES = [
    REPO_ROOT / "requirements.txt",
    REPO_ROOT / "requirements-dev.txt",
    REPO_ROOT / "bench" / "requirements.txt",
    REPO_ROOT / "constraints.txt",
]
# The installer's own tools come with the virtualenv, not from our files.
INSTALLER_TOOLS = {"pip", "setuptools", "wheel"}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins() -> dict[str, str]:
    pinned = {}
    for path in PINNING_FILES:
        for line in path.read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if not line or line.startswith("-"):
                continue
            name, _, version = line.partition("==")
            assert version, f"{path.name}: {line!r} is not pinned with =="
            pinned[canonical(name.split("[", 1)[0])] = version.strip()
    return pinned


def test_every_installed_package_is_pinned_at_its_installed_version():
    pinned = pins()
    installed = {
        canonical(dist.metadata["Name"]): dist.version for dist in metadata.distributions()
    }
    unpinned = sorted(set(installed) - set(pinned) - INSTALLER_TOOLS)
    other_version = sorted(
        f"{name}: {installed[name]} installed, {pinned[name]} pinned"
        for name in set(installed) & set(pinned)
        if installed[name] != pinned[name]
    )
    assert (unpinned, other_version) == ([], [])


def test_every_requirement_file_applies_the_constraints():
    # requirements-dev.txt reads requirements.txt, and with it its -c line.
    def lines(path: Path) -> list[str]:
        return [line.strip() for line in path.read_text().splitlines()]

    assert "-c constraints.txt" in lines(REPO_ROOT / "requirements.txt")
    assert "-r requirements.txt" in lines(REPO_ROOT / "requirements-dev.txt")
    assert "-c ../constraints.txt" in lines(REPO_ROOT / "bench" / "requirements.txt")
