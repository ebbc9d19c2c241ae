"""Integer settings: the default when unset or blank, the value when an integer, else a ConfigError
naming the variable."""

from __future__ import annotations

import pytest
from finfaas.platform.config import ConfigError, env_int


@pytest.mark.parametrize(("raw", "expected"), [(None, 7), ("", 7), ("  ", 7), ("12", 12), (" -3 ", -3),
                                               ("+4", 4)])
def test_an_integer_or_nothing_is_read(raw, expected):
    environ = {} if raw is None else {"SOME_LIMIT": raw}
    assert env_int("SOME_LIMIT", 7, environ) == expected


@pytest.mark.parametrize("raw", ["1.5", "ten", "1e3", "0x10", "--1", "١٢", "9" * 21])
def test_anything_else_is_refused_naming_the_variable(raw):
    with pytest.raises(ConfigError, match="SOME_LIMIT"):
        env_int("SOME_LIMIT", 7, {"SOME_LIMIT": raw})
