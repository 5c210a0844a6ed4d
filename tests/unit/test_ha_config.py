"""`ha:` in tfops.yaml: failover and the instance id, validated like every section, shown by
check-config."""

from __future__ import annotations

import pytest

from tfops.config import load_settings
from tfops.config.summary import describe
from tfops.errors import ConfigError


def _load(tmp_path, text: str):
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "tfops.yaml"
    path.write_text(text)
    return load_settings(path, {"TFOPS_DATA_DIR": str(tmp_path / "data")})


def test_failover_and_instance_id_are_read_and_check_config_shows_them(tmp_path):
    settings = _load(
        tmp_path,
        "store: {url: 'postgresql+psycopg://tfops@db/tfops'}\nha: {failover: 30s, instance_id: vm-1}\n",
    )

    assert settings.ha.failover == 30.0
    assert settings.ha.heartbeat == 6.0
    [line] = [line for line in describe(settings).splitlines() if line.startswith("ha ")]
    assert (
        line.split(None, 1)[1] == "instance vm-1, failover 30s, several daemons share this PostgreSQL store"
    )


def test_the_default_instance_id_is_the_host_and_its_data_directory(tmp_path):
    settings = _load(tmp_path, "repo: {url: /x}\n")
    other = _load(tmp_path / "b", "repo: {url: /x}\n")

    mine = settings.ha.instance_for(settings.data_dir)
    assert mine == settings.ha.instance_for(settings.data_dir)  # a restart is the same instance
    assert mine != other.ha.instance_for(other.data_dir)
    [line] = [line for line in describe(settings).splitlines() if line.startswith("ha ")]
    assert line.endswith("failover 15s, one daemon per SQLite file")


@pytest.mark.parametrize(
    ("text", "field"),
    [("ha: {failover: 1s}", "ha.failover"), ("ha: {instance_id: 'two words'}", "ha.instance_id")],
)
def test_bad_ha_settings_name_the_field(tmp_path, text, field):
    with pytest.raises(ConfigError) as refused:
        _load(tmp_path, text + "\n")
    assert field in str(refused.value)
