"""The files of deploy/, loaded once for the checks that read them."""

from pathlib import Path

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parent.parent.parent / "deploy"


def load_documents(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


@pytest.fixture(scope="session")
def k8s_documents() -> list[tuple[str, dict]]:
    """(file name, document) for every manifest listed in the kustomization."""
    kustomization = yaml.safe_load((DEPLOY / "kubernetes" / "kustomization.yaml").read_text())
    return [
        (name, doc)
        for name in kustomization["resources"]
        for doc in load_documents(DEPLOY / "kubernetes" / name)
    ]
