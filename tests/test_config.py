"""node.toml: good files load; every mistake names the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from bus.errors import ConfigError
from office_node.config import load_config, render_config

EXAMPLE = Path(__file__).resolve().parent.parent / "deploy" / "node.example.toml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "node.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_rendered_config_loads_with_embedded_nats_and_loopback_http(tmp_path):
    cfg = load_config(write(tmp_path, render_config("TH-MUK", "office", anchors={"TH-TCCC": "ab" * 32})))
    assert cfg.office == "TH-MUK"
    assert cfg.nats.embedded
    assert (cfg.http.host, cfg.http.port) == ("127.0.0.1", 8080)
    assert cfg.trust_anchors == {"TH-TCCC": "ab" * 32}
    assert cfg.data_dir == tmp_path / "data"


def test_shipped_example_config_loads(tmp_path):
    cfg = load_config(write(tmp_path, EXAMPLE.read_text(encoding="utf-8")))
    assert cfg.feeds == ("mekong-border",)


@pytest.mark.parametrize(
    ("change", "key"),
    [
        (('bind = "127.0.0.1:8080"', 'bind = "localhost"'), "http.bind"),
        (('bind = "127.0.0.1:8080"', "bind = 8080"), "http.bind"),
        (('role = "office"', 'role = "admin"'), "node.role"),
        (('office = "TH-MUK"', 'office = "mukdahan"'), "node.office"),
        (("urls = []", 'urls = ["10.0.0.5"]'), "nats.urls[0]"),
        (("ack_timeout_s = 120", "ack_timeout_s = -1"), "flash.ack_timeout_s"),
        (("ack_timeout_s = 120", "ack_timeout_s = true"), "flash.ack_timeout_s"),
        (('data_dir = "data"', 'data_dir = "data"\ndata_dri = "x"'), "node.data_dri"),
        (("[trust.anchors]", '[trust.anchors]\n"TH-TCCC" = "nothex"'), "trust.anchors.TH-TCCC"),
        (("subscribe = []", 'subscribe = ["mekong_border"]'), "feeds.subscribe"),  # one grammar: no "_"
    ],
)
def test_a_mistake_names_the_file_and_the_key(tmp_path, change, key):
    text = render_config("TH-MUK", "office").replace(*change)
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in info.value.message
    assert f": {key}:" in info.value.message


def test_broken_toml_and_missing_file_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[node\noffice="))
    with pytest.raises(ConfigError, match="blo init") as info:
        load_config(tmp_path / "absent.toml")
    assert "--home .blo-demo/TH-MUK" in info.value.message  # a first-time user is pointed at the demo's nodes
