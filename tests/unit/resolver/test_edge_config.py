"""The HTTP edge's settings: defaults, the three sources, and bad values named."""

from __future__ import annotations

import pytest

from resolver import config as config_mod
from resolver.cli import _parser
from resolver.handle.transport import HandleLimits
from resolver.http.connections import ConnectionLimits


def test_defaults() -> None:
    config = config_mod.load(env={})
    assert (config.header_timeout, config.body_timeout, config.keepalive_timeout) == (10.0, 60.0, 75.0)
    assert config.max_connections == 1024
    assert config.max_connections_per_address == config.connections_per_address == 128


def test_env_and_flags_set_them() -> None:
    env = {"IDNODE_HEADER_TIMEOUT": "2.5", "IDNODE_MAX_CONNECTIONS": "50"}
    args = _parser().parse_args(["serve", "--body-timeout", "7", "--keepalive-timeout", "9"])
    flags = {k: v for k, v in vars(args).items() if k not in ("command", "config")}
    config = config_mod.load(env=env, flags=flags)
    assert (config.header_timeout, config.body_timeout, config.keepalive_timeout) == (2.5, 7.0, 9.0)
    assert config.max_connections == 50


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("header_timeout", "0"),
        ("header_timeout", "-1"),
        ("header_timeout", "301"),
        ("header_timeout", "soon"),
        ("body_timeout", "0"),
        ("body_timeout", "3601"),
        ("keepalive_timeout", "0"),
        ("max_connections", "0"),
        ("max_connections", "1.5"),
        ("max_connections", "2000000"),
        ("max_connections_per_address", "0"),
        ("max_connections_per_address", "-3"),
        ("max_connections_per_address", "1.5"),
    ],
)
def test_a_bad_value_names_the_setting(setting: str, value: str) -> None:
    with pytest.raises(config_mod.ConfigError, match=setting):
        config_mod.load(env={f"IDNODE_{setting.upper()}": value})


def test_the_per_address_cap_is_set_by_flag_and_env_and_never_above_the_worker_cap() -> None:
    args = _parser().parse_args(["serve", "--max-connections-per-address", "8"])
    flags = {k: v for k, v in vars(args).items() if k not in ("command", "config")}
    assert config_mod.load(env={}, flags=flags).connections_per_address == 8
    env = {"IDNODE_MAX_CONNECTIONS_PER_ADDRESS": "300", "IDNODE_MAX_CONNECTIONS": "200"}
    config = config_mod.load(env=env)
    assert (config.max_connections_per_address, config.connections_per_address) == (300, 200)
    assert HandleLimits.of(config).per_address == ConnectionLimits.of(config).per_address == 200
