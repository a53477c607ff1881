"""Specs that pass the type walk but would wedge the job queue are refused at create time.

Each attack gets a test asserting the error names the key path: Kubernetes
names (env vars, secrets, keys, mount paths), NUL bytes, unbounded retries,
parallelism and timeouts, and spec documents too large, too deep or expanding
exponentially through YAML aliases.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from pachlocal.spec import (
    SpecError,
    check_mount_targets,
    load_pipeline_specs,
    load_spec_documents,
    parse_pipeline_spec,
)
from pachlocal.spec import limits as speclimits

from .test_spec import minimal


def with_transform(**fields: Any) -> dict[str, Any]:
    return minimal(transform={"cmd": ["python3", "/edges.py"], **fields})


def with_secrets(*secrets: dict[str, str]) -> dict[str, Any]:
    return with_transform(secrets=list(secrets))


def error_of(doc: dict[str, Any]) -> SpecError:
    with pytest.raises(SpecError) as info:
        parse_pipeline_spec(doc)
    return info.value


def load_error(text: str) -> SpecError:
    with pytest.raises(SpecError) as info:
        load_spec_documents(text, "f.yaml")
    return info.value


# --- environment variables -------------------------------------------------

ENV_RULE = "use letters, digits, '_', '-' and '.', and do not start with a digit"


@pytest.mark.parametrize("name", ["A=B", "", "1X", "A B", "É"])
def test_env_keys_must_be_kubernetes_env_names(name: str) -> None:
    error = error_of(with_transform(env={"OK": "1", name: "x"}))
    assert str(error) == (
        f"transform.env: {name!r} is not a valid environment variable name: {ENV_RULE}"
    )


def test_env_names_with_dots_and_dashes_are_accepted() -> None:
    spec = parse_pipeline_spec(with_transform(env={"my.var-1": "x", "_A": "", "-x": "y"}))
    assert spec["transform"]["env"] == {"my.var-1": "x", "_A": "", "-x": "y"}


# --- NUL bytes -------------------------------------------------------------


@pytest.mark.parametrize(
    ("doc", "path"),
    [
        (with_transform(cmd=["python3", "x\x00y"]), "transform.cmd[1]"),
        (with_transform(stdin=["echo \x00"]), "transform.stdin[0]"),
        (with_transform(errCmd=["true", "\x00"]), "transform.errCmd[1]"),
        (with_transform(env={"A": "x\x00"}), "transform.env.A"),
        (minimal(pipeline={"name": "edges\x00"}), "pipeline.name"),
        (minimal(input={"pfs": {"repo": "images", "glob": "/*\x00"}}), "input.pfs.glob"),
        (minimal(description="\x00"), "description"),
    ],
)
def test_nul_bytes_in_values_are_refused_naming_the_key(doc: dict[str, Any], path: str) -> None:
    assert str(error_of(doc)) == f"{path}: contains a NUL byte"


def test_nul_bytes_in_keys_are_refused_naming_the_mapping() -> None:
    error = error_of(with_transform(env={"A\x00B": "1"}))
    assert str(error) == r"transform.env: key 'A\x00B' contains a NUL byte"
    assert str(error_of({**minimal(), "x\x00": 1})) == r"<root>: key 'x\x00' contains a NUL byte"


def test_nul_bytes_are_refused_by_the_loader_too() -> None:
    error = load_error('{"transform": {"cmd": ["a", "\\u0000"]}}')
    assert str(error) == "f.yaml, document 1: transform.cmd[1]: contains a NUL byte"
    error = load_error('transform: {stdin: ["x\\0"]}\n')
    assert str(error) == "f.yaml, document 1: transform.stdin[0]: contains a NUL byte"


# --- secrets ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("secret", "message"),
    [
        (
            {"name": "My_Secret", "mountPath": "/s"},
            "transform.secrets[0].name: 'My_Secret' is not a valid secret name",
        ),
        ({"name": "a..b", "mountPath": "/s"}, "transform.secrets[0].name: 'a..b' is not"),
        ({"name": "s" * 254, "mountPath": "/s"}, "transform.secrets[0].name: 'sss"),
        ({"name": "s", "key": "..", "envVar": "E"}, "transform.secrets[0].key: '..' is not"),
        ({"name": "s", "key": ".", "envVar": "E"}, "transform.secrets[0].key: '.' is not"),
        ({"name": "s", "key": "a/b", "envVar": "E"}, "transform.secrets[0].key: 'a/b' is not"),
        (
            {"name": "s", "key": "k", "envVar": "A=B"},
            f"transform.secrets[0].envVar: 'A=B' is not a valid environment variable name: "
            f"{ENV_RULE}",
        ),
    ],
)
def test_secret_names_keys_and_env_vars(secret: dict[str, str], message: str) -> None:
    assert str(error_of(with_secrets(secret))).startswith(message)


@pytest.mark.parametrize(
    ("mount", "message"),
    [
        ("var/secrets", "'var/secrets' must be an absolute path"),
        ("/var/../etc", "'/var/../etc' must be a clean path"),
        ("/var/./s", "'/var/./s' must be a clean path"),
        ("/var//s", "'/var//s' must be a clean path"),
        ("//var", "'//var' must be a clean path"),
        ("/var/s/", "'/var/s/' must be a clean path"),
        ("/var/s ", "'/var/s ' must not hold control characters or end in whitespace"),
        ("/var/s\n", r"'/var/s\n' must not hold control characters"),
        ("/", "'/' cannot be a mount path"),
        ("/pfs", "'/pfs' cannot be /pfs or under it"),
        ("/pfs/out", "'/pfs/out' cannot be /pfs or under it"),
        ("/proc/self", "'/proc/self' cannot be /proc or under it"),
        ("/sys", "'/sys' cannot be /sys or under it"),
        ("/dev/shm/s", "'/dev/shm/s' cannot be /dev or under it"),
    ],
)
def test_mount_paths(mount: str, message: str) -> None:
    error = error_of(with_secrets({"name": "s", "mountPath": mount}))
    assert str(error).startswith(f"transform.secrets[0].mountPath: {message}")


def test_mount_paths_must_not_nest_or_repeat() -> None:
    nested = with_secrets(
        {"name": "a", "mountPath": "/var/s/inner"},
        {"name": "b", "key": "k", "envVar": "B"},
        {"name": "c", "mountPath": "/var/s"},
    )
    assert str(error_of(nested)) == (
        "transform.secrets[0].mountPath: '/var/s/inner' is inside '/var/s', "
        "the mountPath of transform.secrets[2]"
    )
    twice = with_secrets({"name": "a", "mountPath": "/s"}, {"name": "b", "mountPath": "/s"})
    assert str(error_of(twice)) == (
        "transform.secrets[1].mountPath: '/s' is also the mountPath of transform.secrets[0]"
    )


def test_sibling_mount_paths_sharing_a_prefix_are_accepted() -> None:
    secrets = [
        {"name": "a", "mountPath": "/var/s"},
        {"name": "b.c-d", "mountPath": "/var/s-2"},
        {"name": "e", "mountPath": "/var/s2/x"},
    ]
    assert parse_pipeline_spec(with_secrets(*secrets))["transform"]["secrets"] == secrets


def test_check_mount_targets_refuses_a_file_on_the_way(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "hostname").write_text("host\n")
    spec = parse_pipeline_spec(
        with_secrets(
            {"name": "fine", "mountPath": "/var/secrets/fine"},
            {"name": "bad", "mountPath": "/etc/hostname/x"},
        )
    )
    with pytest.raises(SpecError) as info:
        check_mount_targets(spec, root=tmp_path)
    assert str(info.value) == (
        "transform.secrets[1].mountPath: '/etc/hostname/x': /etc/hostname exists and is not a "
        "directory"
    )


def test_check_mount_targets_refuses_a_file_or_dangling_link_at_the_path(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "hostname").write_text("host\n")
    (tmp_path / "gone").symlink_to(tmp_path / "nowhere")
    for mount, shown in (("/etc/hostname", "/etc/hostname"), ("/gone/s", "/gone")):
        spec = parse_pipeline_spec(with_secrets({"name": "s", "mountPath": mount}))
        with pytest.raises(SpecError, match=re.escape(f"{shown} exists and is not a directory")):
            check_mount_targets(spec, root=tmp_path)


def test_check_mount_targets_accepts_new_and_existing_directories(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    secrets = [
        {"name": "a", "mountPath": "/etc/app"},
        {"name": "b", "mountPath": "/var/secrets/b"},
        {"name": "c", "mountPath": "/link/c"},
        {"name": "d", "key": "k", "envVar": "D"},
    ]
    check_mount_targets(parse_pipeline_spec(with_secrets(*secrets)), root=tmp_path)
    check_mount_targets(parse_pipeline_spec(minimal()), root=tmp_path)


# --- retries, parallelism, timeouts ----------------------------------------


@pytest.mark.parametrize("tries", [2**63 - 1, 101, -1])
def test_datum_tries_are_bounded(tries: int) -> None:
    assert str(error_of(minimal(datumTries=tries))) == (
        f"datumTries: must be between 1 and 100 (default 3), got {tries}"
    )


def test_datum_tries_within_bounds_and_zero_as_default() -> None:
    assert parse_pipeline_spec(minimal(datumTries=100))["datumTries"] == 100
    assert parse_pipeline_spec(minimal(datumTries=0))["datumTries"] == 3
    assert parse_pipeline_spec(minimal(datumTries="1"))["datumTries"] == 1


def test_parallelism_is_bounded() -> None:
    assert str(error_of(minimal(parallelismSpec={"constant": 1001}))) == (
        "parallelismSpec.constant: must be at most 1000, got 1001"
    )
    assert str(error_of(minimal(parallelismSpec={"constant": str(2**64 - 1)}))).startswith(
        "parallelismSpec.constant: must be at most 1000"
    )
    assert parse_pipeline_spec(minimal(parallelismSpec={"constant": 1000}))


@pytest.mark.parametrize("key", ["datumTimeout", "jobTimeout"])
def test_timeouts_are_bounded(key: str) -> None:
    assert str(error_of(minimal(**{key: "2592000.5s"}))) == (
        f"{key}: must be at most 30 days (2592000s), got '2592000.500s'"
    )
    assert error_of(minimal(**{key: "-1s"})).path == key
    assert parse_pipeline_spec(minimal(**{key: "2592000s"}))[key] == "2592000s"


# --- globs the matcher cannot run -------------------------------------------


def test_globs_only_pachd_can_run_are_refused_at_create_time() -> None:
    inputs = [{"pfs": {"repo": "a", "glob": "/*"}}, {"pfs": {"repo": "b", "glob": "/!(!(x))"}}]
    assert str(error_of(minimal(input={"cross": inputs}))) == (
        "input.cross[1].pfs.glob: unsupported glob '/!(!(x))': "
        "a !(...) group inside another !(...) group"
    )


def test_bad_globs_are_accepted_at_create_time_as_pachd_does() -> None:
    # the job fails naming the glob, and an update recovers (tests/engine/test_faults_arguments.py)
    spec = parse_pipeline_spec(minimal(input={"pfs": {"repo": "a", "glob": "/[x"}}))
    assert spec["input"]["pfs"]["glob"] == "/[x"


# --- document size and shape -----------------------------------------------


def nested_yaml(levels: int) -> str:
    """A block mapping ``k0: {k1: {... k<levels-1>: x}}``: ``x`` is at depth levels + 1."""
    return "".join("  " * i + f"k{i}:\n" for i in range(levels - 1)) + (
        "  " * (levels - 1) + f"k{levels - 1}: x\n"
    )


def nested_json(levels: int) -> str:
    return '{"k": ' * levels + "1" + "}" * levels


def test_nesting_up_to_64_levels_loads() -> None:
    assert load_spec_documents(nested_yaml(63))[0]["k0"]["k1"]
    assert load_spec_documents(nested_json(63))[0]["k"]["k"]


def test_deeply_nested_yaml_is_refused_naming_the_key() -> None:
    error = load_error(nested_yaml(64))
    assert error.path == ".".join(f"k{i}" for i in range(64))
    assert str(error) == f"f.yaml: {error.path}: nested deeper than 64 levels"
    flow = load_error("pipeline: " + "[" * 200_000 + "]" * 200_000)  # no RecursionError
    assert str(flow) == "f.yaml: pipeline" + "[0]" * 63 + ": nested deeper than 64 levels"


@pytest.mark.parametrize("levels", [64, 900, 100_000])
def test_deeply_nested_json_is_refused_naming_the_key(levels: int) -> None:
    error = load_error(nested_json(levels))  # 100,000 levels runs json's recursion out
    assert error.path == ".".join(["k"] * 64)
    assert error.detail == "nested deeper than 64 levels"


def test_deep_nesting_is_refused_by_parse_pipeline_spec_too() -> None:
    deep: dict[str, Any] = {}
    for _ in range(1000):
        deep = {"k": deep}
    error = error_of(minimal(description=deep))
    assert (error.path, error.detail) == (
        "description" + ".k" * 63,
        "nested deeper than 64 levels",
    )


def billion_laughs(levels: int) -> str:
    lines = ["a0: &a0 [" + ", ".join(["lol"] * 10) + "]"]
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    return "\n".join(lines) + "\n"


def test_yaml_alias_bomb_is_refused_quickly() -> None:
    # 10**9 values once expanded; the check stops after 100,000
    error = load_error(billion_laughs(9))
    assert re.fullmatch(r"a\d(\[\d\])+", error.path), error.path
    assert str(error) == (
        f"f.yaml, document 1: {error.path}: expands to more than 100000 values (YAML aliases?)"
    )


def test_self_referencing_yaml_alias_stops_at_the_depth_limit() -> None:
    error = load_error("a: &a [*a]\n")
    assert (error.path, error.detail) == ("a" + "[0]" * 63, "nested deeper than 64 levels")


def test_alias_budget_is_shared_by_the_documents_of_a_file() -> None:
    doc = billion_laughs(4)  # 12,345 values each, counting the document itself
    load_spec_documents("---\n".join([doc] * 8))
    error = load_error("---\n".join([doc] * 9))
    assert error.source == "f.yaml, document 9"
    assert error.detail == "expands to more than 100000 values (YAML aliases?)"


def test_spec_text_over_one_mib_is_refused() -> None:
    text = json.dumps(minimal(description="x" * speclimits.MAX_SPEC_BYTES))
    assert str(load_error(text)) == f"f.yaml: larger than 1 MiB ({len(text)} bytes)"
    with pytest.raises(SpecError, match=r"^f\.yaml: larger than 1 MiB"):
        load_pipeline_specs("é" * (speclimits.MAX_SPEC_BYTES // 2 + 1), "f.yaml")


def test_many_keys_load_in_linear_time() -> None:
    # the duplicate-key checks were quadratic: minutes for a 1 MiB file of keys
    keys = [f"k{i}" for i in range(60_000)]
    as_json = "{" + ", ".join(f'"{k}": 1' for k in keys) + ', "k7": 2}'
    assert str(load_error(as_json)) == "f.yaml: duplicate key 'k7'"
    as_yaml = "".join(f"{k}: 1\n" for k in keys[:5000]) + "k7: 2\n"
    assert str(load_error(as_yaml)).startswith("f.yaml: invalid YAML: duplicate key 'k7'")


def test_numbers_too_long_to_read_are_a_spec_error() -> None:
    for text in ('{"datumTries": ' + "1" * 5000 + "}", "datumTries: " + "1" * 5000):
        assert str(load_error(text)).startswith("f.yaml: cannot read the spec: Exceeds the limit")
