"""Repository contracts: the README's test command is what CI runs; every config parses."""
import re

import pytest

from mma_dfer.config import load_config
from tests.conftest import ROOT


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci/run").read_text()
    cmd = re.search(r'^TEST_CMD="(.*)"$', ci, re.M).group(1)
    blocks = re.findall(r"```bash\n(.*?)\n```", (ROOT / "README.md").read_text(), re.S)
    assert blocks[1] == cmd


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_loads(path):
    load_config(path)
