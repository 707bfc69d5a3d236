"""node.toml's [misp] section (the centre's MISP bridge): a good one loads, every mistake
names the key and says what to write."""

from __future__ import annotations

from pathlib import Path

import pytest

from bus.errors import ConfigError
from office_node.config import load_config, render_config

GOOD = """
[misp]
url = "https://misp.example.org/"
key_file = "keys/misp.key"
verify_tls = true
ca_file = "keys/misp-ca.pem"
push_feeds = ["mekong-border"]
countries = ["TH", "LA"]
pull_tag = "blo-bus:pull"
every_s = 600
"""


def load(tmp_path: Path, misp: str, role: str = "centre"):
    path = tmp_path / "node.toml"
    path.write_text(render_config("TH-TCCC" if role == "centre" else "TH-MUK", role) + misp, encoding="utf-8")
    return load_config(path)


def test_a_misp_section_loads_with_paths_beside_the_file(tmp_path: Path) -> None:
    m = load(tmp_path, GOOD).misp
    assert m is not None and m.url == "https://misp.example.org"
    assert (m.key_file, m.ca_file) == (tmp_path / "keys" / "misp.key", tmp_path / "keys" / "misp-ca.pem")
    assert (m.push_feeds, m.countries, m.pull_tag, m.every_s, m.verify_tls) == (("mekong-border",), ("TH", "LA"), "blo-bus:pull", 600.0, True)
    assert load(tmp_path, "").misp is None


@pytest.mark.parametrize(
    ("change", "key", "words"),
    [
        (('url = "https://misp.example.org/"', 'url = "misp.example.org"'), "misp.url", "base URL"),
        (('key_file = "keys/misp.key"', 'key_env = "MISP_KEY"\nkey_file = "keys/misp.key"'), "misp.key_file", "one of them"),
        (('key_file = "keys/misp.key"', ""), "misp.key_file", "one of them"),
        (('countries = ["TH", "LA"]', 'countries = ["Thailand"]'), "misp.countries", "ISO country codes"),
        (('countries = ["TH", "LA"]', ""), "misp.countries", "required with push_feeds"),
        (('push_feeds = ["mekong-border"]', 'push_feeds = ["Mekong Border"]'), "misp.push_feeds", "feed names"),
        (("every_s = 600", "every_s = 1"), "misp.every_s", "10 to 86400"),
        (("every_s = 600", "every_s = 600\nkey = \"x\""), "misp.key", "unknown key"),
    ],
)
def test_each_mistake_in_the_misp_section_names_its_key(tmp_path: Path, change: tuple[str, str], key: str, words: str) -> None:
    with pytest.raises(ConfigError) as refused:
        load(tmp_path, GOOD.replace(*change))
    assert f": {key}: " in refused.value.message and words in refused.value.message


def test_an_office_node_may_not_run_a_misp_bridge(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="centre node only"):
        load(tmp_path, GOOD, role="office")
