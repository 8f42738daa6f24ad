"""docs/config.md stays true to the schema: every key documented, every example valid, every error real."""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import annotated_types
import openstack.config.loader
import pytest
import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from hammersmith import config as config_mod
from hammersmith.cloud.connection import cloud_problems
from hammersmith.config import Settings, parse
from hammersmith.errors import ConfigError

DOC = Path(__file__).resolve().parents[1] / "docs" / "config.md"

#: mapping fields -> the placeholder the docs use for their keys
PLACEHOLDERS = {"sites": "<name>", "hammers": "<hammer>", "alerts": "<alert>"}

FENCE = re.compile(r"^```(?P<lang>[\w-]*)\n(?P<body>.*?)^```[ \t]*$", re.M | re.S)
VALIDATE = re.compile(r"^\$ hammersmith --config (?P<file>\S+) config validate$")


def _text() -> str:
    return DOC.read_text()


def _section(heading: str) -> str:
    """The text under a `## heading`, up to the next `## ` heading."""
    text = _text()
    match = re.search(rf"^## {re.escape(heading)}[ \t]*$", text, re.M)
    assert match, f"docs/config.md has no '## {heading}' heading"
    rest = text[match.end() :]
    following = re.search(r"^## ", rest, re.M)
    return rest[: following.start()] if following else rest


def _blocks(text: str) -> list[tuple[str, str]]:
    return [(m["lang"], m["body"]) for m in FENCE.finditer(text)]


def _first_yaml(heading: str) -> str:
    found = [body for lang, body in _blocks(_section(heading)) if lang == "yaml"]
    assert found, f"no ```yaml block under '## {heading}'"
    return found[0]


def _model(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model an annotation holds (directly or as `Model | None`), if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        models = [m for arg in typing.get_args(annotation) if (m := _model(arg)) is not None]
        return models[0] if len(models) == 1 else None
    return None


def schema_paths(model: type[BaseModel] = Settings, prefix: str = "") -> list[str]:
    """Every key path of the config file, mappings written with their placeholder: sites.<name>.cloud."""
    paths: list[str] = []
    for name, field in model.model_fields.items():
        path = prefix + name
        paths.append(path)
        annotation = field.annotation
        nested = _model(annotation)
        if nested is not None:
            paths.extend(schema_paths(nested, path + "."))
        elif typing.get_origin(annotation) is dict:
            assert name in PLACEHOLDERS, f"mapping key {path!r}: add its placeholder to PLACEHOLDERS and docs/config.md"
            item = f"{path}.{PLACEHOLDERS[name]}"
            value_model = _model(typing.get_args(annotation)[1])
            if value_model is not None:
                paths.extend(schema_paths(value_model, item + "."))
            else:
                paths.append(item)
        elif typing.get_origin(annotation) is list and (item_model := _model(typing.get_args(annotation)[0])):
            paths.extend(schema_paths(item_model, path + "[]."))
    return paths


def _yaml_paths(data: dict[str, Any], prefix: str = "") -> set[str]:
    """Key paths used in a parsed YAML document, with mapping keys replaced by their placeholder."""
    paths: set[str] = set()
    for key, value in data.items():
        path = prefix + str(key)
        paths.add(path)
        if key in PLACEHOLDERS and isinstance(value, dict):
            for item in value.values():
                item_path = f"{path}.{PLACEHOLDERS[key]}"
                paths.add(item_path)
                if isinstance(item, dict):
                    paths |= _yaml_paths(item, item_path + ".")
        elif isinstance(value, dict):
            paths |= _yaml_paths(value, path + ".")
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, dict):
                    paths |= _yaml_paths(item, path + "[].")
    return paths


def test_schema_walk_finds_nested_keys() -> None:
    paths = schema_paths()
    assert "sites.<name>.policy.stuck_after_minutes" in paths
    assert "sites.<name>.policy.hammers.<hammer>" in paths
    assert len(paths) == len(set(paths))


@pytest.mark.parametrize("path", schema_paths())
def test_every_key_is_documented(path: str) -> None:
    assert f"`{path}`" in _text(), f"docs/config.md does not mention `{path}` (in backticks)"


def test_key_tables_list_only_real_keys() -> None:
    documented = re.findall(r"^\| `([^`]+)` \|", _section("Keys"), re.M)
    assert documented, "no key rows found in the '## Keys' tables"
    stale = sorted(set(documented) - set(schema_paths()))
    assert not stale, f"docs/config.md documents keys the schema does not have: {stale}"
    assert sorted(documented) == sorted(set(documented)), "a key is documented twice"


def test_full_example_is_valid_and_shows_every_key() -> None:
    text = _first_yaml("Full example")
    settings = parse(text, "docs/config.md#full-example")
    assert len(settings.sites) >= 2
    missing = set(schema_paths()) - _yaml_paths(yaml.safe_load(text))
    assert not missing, f"the full example should show every key; missing: {sorted(missing)}"


def test_minimal_example_is_valid() -> None:
    settings = parse(_first_yaml("Minimal example"), "docs/config.md#minimal-example")
    assert len(settings.sites) == 1


def _error_examples() -> list[tuple[str, str, str]]:
    """(file name, YAML, console output) for each YAML block followed by its `config validate` run."""
    examples: list[tuple[str, str, str]] = []
    blocks = _blocks(_section("Validation errors"))
    for (lang, body), (next_lang, output) in zip(blocks, blocks[1:], strict=False):
        if lang == "yaml" and next_lang == "console":
            command, _, shown = output.partition("\n")
            match = VALIDATE.match(command)
            assert match, f"console block after a YAML example should start with the command: {command!r}"
            examples.append((match["file"], body, shown.rstrip("\n")))
    return examples


def test_error_examples_found() -> None:
    assert len(_error_examples()) >= 3


@pytest.mark.parametrize(("name", "text", "shown"), _error_examples(), ids=[e[0] for e in _error_examples()])
def test_error_example_output_is_current(
    name: str, text: str, shown: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redo what `config validate` does (load, then the clouds.yaml lookup) and compare the message."""
    monkeypatch.chdir(tmp_path)
    Path(name).write_text(text)
    clouds = {cloud: {"auth": {"auth_url": "http://127.0.0.1:5000/v3"}} for cloud in ("chi-uc", "chi-tacc")}
    Path("clouds.yaml").write_text(yaml.safe_dump({"clouds": clouds}))
    # openstacksdk fixes its search path (./clouds.yaml included) at import: point it at this one only
    monkeypatch.setattr(openstack.config.loader, "CONFIG_FILES", [str(tmp_path / "clouds.yaml")])
    path = config_mod.config_path(name)
    try:
        settings = config_mod.load(path)
        problems = cloud_problems(settings, path)
        assert problems, f"{name} is valid, but docs/config.md shows it failing"
        error = ConfigError(problems)
    except ConfigError as exc:
        error = exc
    assert shown == f"error: {error}"


def test_anchor_example_is_valid() -> None:
    settings = parse(_first_yaml("Reusing settings: anchors, aliases and merge keys"), "docs/config.md#anchors")
    assert [site.policy.stuck_after_minutes for site in settings.sites.values()] == [90, 90, 30]
    assert settings.sites["nu"].policy.hammers == {"error-resetter": "apply"}


def _fields(model: type[BaseModel] = Settings, prefix: str = "") -> Iterator[tuple[str, FieldInfo]]:
    """(key path, field) of every key, mappings written with their placeholder, as schema_paths names them."""
    for name, field in model.model_fields.items():
        path = prefix + name
        yield path, field
        nested = _model(field.annotation)
        if nested is None and typing.get_origin(field.annotation) is dict:
            nested, path = _model(typing.get_args(field.annotation)[1]), f"{path}.{PLACEHOLDERS[name]}"
        if nested is not None:
            yield from _fields(nested, path + ".")


def test_every_upper_bound_is_in_the_type_column() -> None:
    rows = dict(re.findall(r"^\| `([^`]+)` \| ([^|]+) \|", _section("Keys"), re.M))
    bounded = {
        path: bound.le for path, field in _fields() for bound in field.metadata if isinstance(bound, annotated_types.Le)
    }
    assert "sites.<name>.sweep_interval_seconds" in bounded
    for path, bound in bounded.items():
        written = {f"{bound:g}", f"{bound:,}"} if bound % 1 else {f"{bound:.0f}", f"{bound:,.0f}"}
        shown = re.findall(r"(?<![\d.,])\d[\d,]*(?:\.\d+)?(?![\d.,]*\d)", rows[path])
        assert written & set(shown), f"{path}: its Type column should give its upper bound, {bound:g}"
