"""The limit parsers read what the CLI reads (cases of src/limits/parse.rs)."""
import pytest

from hatchery_sandbox import (LimitParseError, Limits, parse_count, parse_cpus,
                              parse_duration_ms, parse_limit, parse_size)


def test_sizes():
    assert parse_size("256M") == 256 << 20
    assert parse_size("1.5G") == 3 << 29
    assert parse_size("4096") == 4096 and parse_size("64B") == 64 and parse_size("0") == 0
    assert parse_size("1k") == 1024 and parse_size("10 MiB") == 10 << 20
    assert parse_size("2GB") == 2 << 30 and parse_size("1T") == 1 << 40
    for bad in ["", "M", "-1M", "1.2.3M", "1X", "ten", "4095"]:
        with pytest.raises(LimitParseError):
            parse_size(bad)
    with pytest.raises(LimitParseError) as error:
        parse_size("1X")
    assert str(error.value) == ("invalid size '1X': expected a number of bytes with an "
                                "optional K, M, G or T suffix")
    with pytest.raises(LimitParseError, match=r"did you mean 64M\? \(write 64B for bytes\)"):
        parse_size("64")


def test_durations_cpus_counts():
    assert parse_duration_ms("10s") == 10_000 and parse_duration_ms("250ms") == 250
    assert parse_duration_ms("1.5") == 1500 and parse_duration_ms("2m") == 120_000
    assert parse_duration_ms("1h") == 3_600_000 and parse_duration_ms("0.1s") == 100
    for bad in ["", "s", "1d", "fast"]:
        with pytest.raises(LimitParseError):
            parse_duration_ms(bad)
    assert parse_cpus("0.5") == 500 and parse_cpus("2") == 2000
    for bad in ["0", "x"]:
        with pytest.raises(LimitParseError):
            parse_cpus(bad)
    assert parse_count("256") == 256
    with pytest.raises(LimitParseError):
        parse_count("2.5")


@pytest.mark.parametrize("name,text,what", [
    ("wall-time", "-1", "a duration cannot be negative"),
    ("memory", "-1M", "a size cannot be negative"),
    ("cpus", "-0.5", "a CPU share cannot be negative"),
    ("pids", "-3", "a count cannot be negative"),
])
def test_negative_values_are_named_plainly(name, text, what):
    with pytest.raises(LimitParseError) as error:
        parse_limit(name, text)
    assert str(error.value).endswith(what)


def test_limits_parse_takes_the_flag_names():
    limits = Limits.parse(memory="256M", wall_time="10s", cpus="0.5", pids=64, nofile="256",
                          tmp_size="unlimited")
    assert (limits.memory_bytes, limits.wall_time_ms, limits.cpu_millicores, limits.pids,
            limits.open_files) == (256 << 20, 10_000, 500, 64, 256)
    assert limits.unlimited == {"tmp-size"}
    with pytest.raises(ValueError, match="unknown limit 'memroy'"):
        Limits.parse(memroy="1G")
    with pytest.raises(ValueError):
        Limits(unlimited={"everything"})
