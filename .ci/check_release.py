"""Build every distribution as the release workflow does and check it, without publishing.

    uv run python .ci/check_release.py [--out DIR] [--tag vX.Y.Z]

Checks, each failure one line and exit status 1:

- .github/workflows/release.yml parses, runs on ``v*`` tags, builds with this script, and publishes with
  pypa/gh-action-pypi-publish under trusted publishing (``id-token: write``, environment ``pypi``);
- one version: the VERSION file; every member's pyproject.toml takes its version from it (dynamic), and every
  dependency on another member admits it; CHANGELOG.md has its section (with ``--tag``: dated, and the tag is
  ``v`` + VERSION);
- every member has a LICENSE, authors, classifiers and project URLs, the same as butter-core's;
- ``uv build --all-packages`` (each sdist, then each wheel from its sdist) makes one sdist and one wheel per
  member, each with the LICENSE, the version and that metadata; ``twine check --strict`` passes on all.

The distributions are left in DIR (default: a temporary directory, removed): the published ones at its top,
the examples' (examples/*, never published) in DIR/examples, for .ci/check-wheels and .ci/check-readmes.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import tomllib
import zipfile
from email.parser import Parser
from pathlib import Path
from typing import Any

import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / ".github" / "workflows" / "release.yml"
SHARED = ("authors", "classifiers", "urls", "license")  # [project] keys every member has, equal to butter-core's


class Failed(Exception):
    """A check failed; its message says which and why."""


def check(condition: object, message: str) -> None:
    if not condition:
        raise Failed(message)


def members() -> dict[str, dict[str, Any]]:
    """Workspace member directory -> its [project] table."""
    root = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return {
        member: tomllib.loads((ROOT / member / "pyproject.toml").read_text())["project"]
        for member in root["tool"]["uv"]["workspace"]["members"]
    }


def check_workflow() -> None:
    workflow = yaml.safe_load(WORKFLOW.read_text())
    on = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` key as true
    check(on and on.get("push", {}).get("tags") == ["v*"], f"{WORKFLOW}: must run on pushed tags v*, and only then")
    check(workflow.get("permissions") == {}, f"{WORKFLOW}: top-level permissions must be {{}} (each job asks)")
    jobs = workflow["jobs"]
    build_runs = " ".join(step.get("run", "") for step in jobs["build"]["steps"])
    check(".ci/check_release.py" in build_runs and "--tag" in build_runs,
          f"{WORKFLOW}: the build job must run .ci/check_release.py --tag (the checks CI runs)")
    publish = jobs["publish"]
    check(publish.get("needs") == "build", f"{WORKFLOW}: publish must need build")
    check(publish.get("permissions") == {"id-token": "write"}, f"{WORKFLOW}: publish needs id-token: write, only")
    check(publish.get("environment", {}).get("name") == "pypi", f"{WORKFLOW}: publish must use environment pypi")
    uses = [step.get("uses", "") for step in publish["steps"]]
    check("pypa/gh-action-pypi-publish@release/v1" in uses, f"{WORKFLOW}: publish with pypa/gh-action-pypi-publish")
    check(not any("password" in step.get("with", {}) for step in publish["steps"]),
          f"{WORKFLOW}: trusted publishing takes no password or token")


def check_sources(projects: dict[str, dict[str, Any]], version: str, tag: str | None) -> None:
    names = {canonicalize_name(project["name"]) for project in projects.values()}
    core = projects["butter-core"]
    for member, project in projects.items():
        where = f"{member}/pyproject.toml"
        check("version" not in project and "version" in project.get("dynamic", []),
              f"{where}: the version must be dynamic (read from VERSION), not written out")
        check((ROOT / member / "LICENSE").read_text() == (ROOT / "LICENSE").read_text(),
              f"{member}/LICENSE must be the repository's LICENSE")
        check(project.get("license-files") == ["LICENSE"], f"{where}: license-files = [\"LICENSE\"]")
        for key in SHARED:
            check(project.get(key) and project.get(key) == core.get(key), f"{where}: {key} must equal butter-core's")
        optional = [r for extra in project.get("optional-dependencies", {}).values() for r in extra]
        for text in [*project.get("dependencies", []), *optional]:
            requirement = Requirement(text)
            if canonicalize_name(requirement.name) in names:
                check(requirement.specifier.contains(version, prereleases=True),
                      f"{where}: {text!r} does not admit VERSION {version}")
    changelog = (ROOT / "CHANGELOG.md").read_text()
    heading = re.search(rf"^## \[{re.escape(version)}\] - (.+)$", changelog, re.MULTILINE)
    check(heading, f"CHANGELOG.md: no '## [{version}] - ...' section for VERSION {version}")
    if tag is not None:
        check(tag == f"v{version}", f"tag {tag} is not v + VERSION ({version})")
        check(heading and re.fullmatch(r"\d{4}-\d\d-\d\d", heading[1]),
              f"CHANGELOG.md: the [{version}] section needs its release date, not {heading and heading[1]!r}")


def check_dists(out: Path, projects: dict[str, dict[str, Any]], version: str) -> None:
    built = sorted(out.glob("*.whl")) + sorted(out.glob("*.tar.gz"))
    check(len(built) == 2 * len(projects), f"expected a wheel and an sdist per member, got {[p.name for p in built]}")
    for project in projects.values():
        stem = f"{canonicalize_name(project['name']).replace('-', '_')}-{version}"
        wheel, sdist = out / f"{stem}-py3-none-any.whl", out / f"{stem}.tar.gz"
        check(wheel.exists() and sdist.exists(), f"{project['name']}: no {wheel.name} and {sdist.name}")
        with zipfile.ZipFile(wheel) as archive:
            files = set(archive.namelist())
            metadata = Parser().parsestr(archive.read(f"{stem}.dist-info/METADATA").decode())
        check(f"{stem}.dist-info/licenses/LICENSE" in files, f"{wheel.name}: no LICENSE")
        check(metadata["Version"] == version, f"{wheel.name}: version {metadata['Version']}, VERSION says {version}")
        for field in ("License-Expression", "License-File", "Author", "Classifier", "Project-URL"):
            check(metadata[field], f"{wheel.name}: no {field} in METADATA")
        with tarfile.open(sdist) as archive:
            names = set(archive.getnames())
        check({f"{stem}/LICENSE", f"{stem}/PKG-INFO"} <= names, f"{sdist.name}: no LICENSE or PKG-INFO")
    subprocess.run([sys.executable, "-m", "twine", "check", "--strict", *map(str, built)], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="where to leave the distributions (default: removed)")
    parser.add_argument("--tag", help="the git tag being released (vX.Y.Z)")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="butter-dists-"))
    try:
        version = (ROOT / "VERSION").read_text().strip()
        check(str(Version(version)) == version, f"VERSION: {version!r} is not a normalised version")
        projects = members()
        check_workflow()
        check_sources(projects, version, args.tag)
        out.mkdir(parents=True, exist_ok=True)
        check(not any(out.iterdir()), f"{out} must be empty")
        subprocess.run(["uv", "build", "--quiet", "--all-packages", "-o", str(out)], cwd=ROOT, check=True)
        check_dists(out, projects, version)
        examples = out / "examples"  # built and checked, never published
        examples.mkdir()
        for member, project in projects.items():
            if member.startswith("examples/"):
                stem = f"{canonicalize_name(project['name']).replace('-', '_')}-{version}"
                for dist in out.glob(f"{stem}[-.]*"):
                    shutil.move(dist, examples / dist.name)
        print(f"release: {len(projects)} distributions at version {version} build and pass twine check --strict; "
              f"{WORKFLOW.relative_to(ROOT)} valid")
    except Failed as failure:
        sys.exit(f"check_release: {failure}")
    finally:
        if args.out is None:
            shutil.rmtree(out)


if __name__ == "__main__":
    main()
