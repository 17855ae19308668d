"""Tests for the semantic OpenAPI diff (refapi.openapi.diff) and its command line (bin/spec-diff)."""

from __future__ import annotations

import copy
import importlib.machinery
import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from refapi.openapi.diff import RULES, Level, SpecError, diff_specs

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bin" / "spec-diff"
CASES = ROOT / "tests" / "openapi" / "cases"
CASE_DIRS = sorted(path for path in CASES.iterdir() if path.is_dir())

Spec = dict[str, Any]
Run = Callable[..., tuple[int, str, str]]


@pytest.fixture(scope="module")
def cli() -> ModuleType:
    """bin/spec-diff imported as a module, so most CLI tests need no subprocess."""
    loader = importlib.machinery.SourceFileLoader("spec_diff_cli", str(SCRIPT))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


@pytest.fixture
def run(cli: ModuleType, capsys: pytest.CaptureFixture[str]) -> Run:
    """Run spec-diff in-process; returns (exit status, stdout, stderr)."""

    def invoke(*args: str | Path) -> tuple[int, str, str]:
        status = cli.main([str(arg) for arg in args])
        captured = capsys.readouterr()
        return status, captured.out, captured.err

    return invoke


def load(path: Path) -> Spec:
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


def write(path: Path, document: Spec) -> Path:
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path


def codes(old: Spec, new: Spec) -> set[str]:
    return {change.code for change in diff_specs(old, new)}


def api(paths: Spec, schemas: Spec | None = None, **components: Spec) -> Spec:
    """A minimal valid document around `paths`."""
    document: Spec = {"openapi": "3.1.0", "info": {"title": "refapi", "version": "1.0.0"}, "paths": paths}
    if schemas is not None:
        components["schemas"] = schemas
    if components:
        document["components"] = components
    return document


def returning(schema: Any, path: str = "/items") -> Spec:
    """A GET operation whose 200 response body has `schema`."""
    return {
        path: {
            "get": {"responses": {"200": {"description": "OK", "content": {"application/json": {"schema": schema}}}}}
        }
    }


def accepting(schema: Any) -> Spec:
    """A POST operation whose required JSON request body has `schema`."""
    body = {"required": True, "content": {"application/json": {"schema": schema}}}
    return {"/items": {"post": {"requestBody": body, "responses": {"200": {"description": "OK"}}}}}


def obj(**properties: Any) -> Spec:
    return {"type": "object", "properties": properties}


# One directory per rule ------------------------------------------------------------------------------------


def test_every_rule_has_exactly_one_case_directory() -> None:
    assert {path.name for path in CASE_DIRS} == set(RULES)


@pytest.mark.parametrize("case", CASE_DIRS, ids=lambda path: path.name)
def test_case_triggers_exactly_its_rule(case: Path) -> None:
    changes = diff_specs(load(case / "old.yaml"), load(case / "new.yaml"))

    assert {change.code for change in changes} == {case.name}
    assert {change.level for change in changes} == {RULES[case.name]}


@pytest.mark.parametrize("case", CASE_DIRS, ids=lambda path: path.name)
def test_case_exit_status(case: Path, run: Run) -> None:
    status, out, err = run(case / "old.yaml", case / "new.yaml")

    expected_level = RULES[case.name]
    assert status == (1 if expected_level is Level.ERROR else 0)
    assert out.splitlines()[0].startswith(f"{expected_level.value.upper():<5} {case.name}  ")
    assert err == ""


def test_location_names_operation_response_and_field() -> None:
    case = CASES / "response-field-removed"

    [change] = diff_specs(load(case / "old.yaml"), load(case / "new.yaml"))

    assert change.location == "GET /examples/cache/{key} → response 200 → body.ttl"


# Command line ------------------------------------------------------------------------------------------------


def test_identical_documents_have_no_differences(run: Run) -> None:
    document = CASES / "path-added" / "new.yaml"

    assert run(document, document) == (0, "spec-diff: no differences\n", "")
    assert run("--strict", document, document)[0] == 0


def test_strict_fails_on_info_only_changes(run: Run) -> None:
    case = CASES / "path-added"

    assert run(case / "old.yaml", case / "new.yaml")[0] == 0
    assert run("--strict", case / "old.yaml", case / "new.yaml")[0] == 1


def test_human_output_lists_errors_first_then_a_summary(run: Run, tmp_path: Path) -> None:
    old = api({**returning(obj(a={"type": "string"}), "/a"), **returning(obj(), "/b")})
    new = api({**returning(obj(), "/a"), **returning(obj(), "/c")})

    status, out, _ = run(write(tmp_path / "old.yaml", old), write(tmp_path / "new.yaml", new))

    lines = out.splitlines()
    assert status == 1
    assert [line.split()[:2] for line in lines[:-1]] == [
        ["ERROR", "response-field-removed"],
        ["ERROR", "path-removed"],
        ["INFO", "path-added"],
    ]
    assert lines[1] == "ERROR path-removed  /b: Path /b was removed."
    assert lines[-1] == "spec-diff: 2 errors, 1 info"


def test_json_output_shape(run: Run) -> None:
    case = CASES / "response-field-removed"

    status, out, _ = run("--json", case / "old.yaml", case / "new.yaml")

    assert status == 1
    assert json.loads(out) == {
        "changes": [
            {
                "code": "response-field-removed",
                "level": "error",
                "location": "GET /examples/cache/{key} → response 200 → body.ttl",
                "message": "The response field ttl was removed.",
            }
        ],
        "errors": 1,
        "infos": 0,
    }


def test_json_output_without_differences(run: Run) -> None:
    document = CASES / "path-added" / "old.yaml"

    status, out, _ = run("--json", document, document)

    assert (status, json.loads(out)) == (0, {"changes": [], "errors": 0, "infos": 0})


def test_json_documents_are_accepted(run: Run, tmp_path: Path) -> None:
    case = CASES / "status-removed"
    old = tmp_path / "old.json"
    old.write_text(json.dumps(load(case / "old.yaml")), encoding="utf-8")

    status, out, _ = run(old, case / "new.yaml")

    assert status == 1
    assert out.startswith("ERROR status-removed  GET /items → response 404: ")


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "missing.yaml: no such file"),
        ("paths: [unclosed\n", "not valid YAML or JSON at line 2, column 1"),
        ("- just\n- a list\n", "not an OpenAPI document"),
        ("openapi: 3.1.0\npaths:\n  /a: {$ref: '#/components/pathItems/Nope'}\n", "does not resolve"),
    ],
    ids=["missing-file", "unparsable", "not-a-mapping", "broken-ref"],
)
def test_bad_documents_exit_2_with_one_line(run: Run, tmp_path: Path, content: str | None, expected: str) -> None:
    good = CASES / "path-added" / "old.yaml"
    bad = tmp_path / "missing.yaml"
    if content is not None:
        bad.write_text(content, encoding="utf-8")

    status, out, err = run(good, bad)

    assert (status, out) == (2, "")
    assert err.startswith("spec-diff: error: ")
    assert expected in err
    assert err.count("\n") == 1


@pytest.mark.parametrize("args", [["only-one.yaml"], ["--no-such-option", "a", "b"], ["a", "b", "c"]])
def test_bad_arguments_exit_2_with_one_line(run: Run, args: list[str]) -> None:
    status, out, err = run(*args)

    assert (status, out) == (2, "")
    assert err.startswith("spec-diff: error: ")
    assert err.count("\n") == 1


def test_script_is_executable_and_runs_from_any_directory(tmp_path: Path) -> None:
    case = CASES / "enum-narrowed"
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}

    result = subprocess.run(
        [sys.executable, str(SCRIPT), str(case / "old.yaml"), str(case / "new.yaml")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )

    assert os.access(SCRIPT, os.X_OK)
    assert result.returncode == 1
    assert result.stdout.splitlines()[-1] == "spec-diff: 1 error, 0 infos"


def test_script_reports_a_missing_file_without_traceback(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path / "old.yaml"), str(tmp_path / "new.yaml")],
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode == 2
    assert result.stderr == f"spec-diff: error: {tmp_path / 'old.yaml'}: no such file\n"


# What is not a change ----------------------------------------------------------------------------------------


def documented(decorated: bool) -> Spec:
    """The same API with or without every kind of documentation-only keyword."""
    words = "words" if decorated else "other words"
    document = api(
        {
            "/items/{id}": {
                "summary": words,
                "description": words,
                "get": {
                    "summary": words,
                    "description": words,
                    "tags": ["items", "examples"] if decorated else ["examples", "items"],
                    "externalDocs": {"url": f"https://example.invalid/{words}"},
                    "parameters": [
                        {
                            "in": "path",
                            "name": "id",
                            "required": True,
                            "description": words,
                            "schema": {"type": "string"},
                        }
                    ],
                    "responses": {
                        "200": {
                            "description": words,
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/Item"},
                                    "example": {"id": words},
                                    "examples": {"one": {"value": {"id": words}}},
                                }
                            },
                        }
                    },
                },
            }
        },
        schemas={
            "Item": {
                "type": "object",
                "title": words,
                "description": words,
                "example": {"id": words},
                "properties": {"id": {"type": "string", "description": words, "examples": [words]}},
            }
        },
    )
    document["info"]["description"] = words
    document["info"]["title"] = words
    document["tags"] = [{"name": "items"}, {"name": "examples"}]
    if decorated:
        document["tags"].reverse()
        document["x-generator"] = "apispec"
        document["paths"]["x-paths-note"] = {"get": {}}
        document["paths"]["/items/{id}"]["get"]["x-internal"] = True
        document["paths"]["/items/{id}"]["get"]["responses"]["x-responses-note"] = {"description": words}
        document["components"]["schemas"]["Item"]["properties"]["id"]["x-order"] = 1
    return document


def test_documentation_only_changes_are_ignored(run: Run, tmp_path: Path) -> None:
    old = write(tmp_path / "old.yaml", documented(False))
    new = write(tmp_path / "new.yaml", documented(True))

    assert run("--strict", old, new) == (0, "spec-diff: no differences\n", "")


def test_openapi_30_nullable_equals_31_type_array() -> None:
    old = api(returning(obj(ttl={"type": "integer", "nullable": True})))
    new = api(returning(obj(ttl={"type": ["null", "integer"]})))

    assert diff_specs(old, new) == []


def test_result_does_not_depend_on_key_order() -> None:
    def reversed_keys(value: Any) -> Any:
        if isinstance(value, dict):
            return {key: reversed_keys(value[key]) for key in reversed(list(value))}
        return value

    old = load(CASES / "security-added" / "old.yaml")
    new = api({**returning(obj(b={"type": "string"}), "/b"), **accepting(obj(a={"type": "integer"}))})

    assert diff_specs(old, new) == diff_specs(reversed_keys(old), reversed_keys(new))


def test_media_type_parameters_and_unquoted_status_codes_are_normalised() -> None:
    old = api(returning(obj()))
    new = copy.deepcopy(old)
    response = new["paths"]["/items"]["get"]["responses"].pop("200")
    response["content"] = {"Application/JSON; charset=utf-8": response["content"]["application/json"]}
    new["paths"]["/items"]["get"]["responses"][200] = response

    assert diff_specs(old, new) == []


# $ref, allOf, recursion ---------------------------------------------------------------------------------------


def test_refs_are_resolved_before_comparing() -> None:
    limit = {"in": "query", "name": "limit", "schema": {"type": "integer"}}
    item = obj(id={"type": "string"})
    body = {"required": True, "content": {"application/json": {"schema": item}}}
    ok = {"description": "OK", "content": {"application/json": {"schema": item}}}
    inline = api({"/items": {"post": {"parameters": [limit], "requestBody": body, "responses": {"200": ok}}}})
    by_ref = api(
        {
            "/items": {
                "post": {
                    "parameters": [{"$ref": "#/components/parameters/Limit"}],
                    "requestBody": {"$ref": "#/components/requestBodies/Item"},
                    "responses": {"200": {"$ref": "#/components/responses/Item"}},
                }
            }
        },
        schemas={"Item": item},
        parameters={"Limit": limit},
        requestBodies={
            "Item": {**body, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Item"}}}}
        },
        responses={"Item": {**ok, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Item"}}}}},
    )

    assert diff_specs(inline, by_ref) == []
    assert diff_specs(by_ref, inline) == []


def test_change_inside_a_component_is_reported_where_it_is_used() -> None:
    old = api(returning({"$ref": "#/components/schemas/Entry"}), schemas={"Entry": obj(ttl={"type": "integer"})})
    new = api(returning({"$ref": "#/components/schemas/Entry"}), schemas={"Entry": obj()})

    [change] = diff_specs(old, new)

    assert (change.code, change.location) == ("response-field-removed", "GET /items → response 200 → body.ttl")


def test_unresolvable_ref_raises_spec_error() -> None:
    broken = api(returning({"$ref": "#/components/schemas/Missing"}))

    with pytest.raises(SpecError, match="does not resolve"):
        diff_specs(api(returning(obj())), broken)


def test_recursive_schemas_terminate_and_still_report_changes() -> None:
    def tree(label_type: str) -> Spec:
        node = obj(
            label={"type": label_type}, children={"type": "array", "items": {"$ref": "#/components/schemas/Node"}}
        )
        return api(returning({"$ref": "#/components/schemas/Node"}), schemas={"Node": node})

    assert diff_specs(tree("string"), tree("string")) == []
    assert [(c.code, c.location) for c in diff_specs(tree("string"), tree("integer"))] == [
        ("type-changed", "GET /items → response 200 → body.label")
    ]


def test_all_of_is_merged() -> None:
    base = obj(id={"type": "string"})
    composed = {"allOf": [{"$ref": "#/components/schemas/Base"}, {"properties": {"name": {"type": "string"}}}]}
    flat = api(returning(obj(id={"type": "string"}, name={"type": "string"})))

    assert diff_specs(flat, api(returning(composed), schemas={"Base": base})) == []
    assert codes(flat, api(returning(composed), schemas={"Base": obj()})) == {"response-field-removed"}


def test_nested_fields_are_compared() -> None:
    def entry(**fields: Any) -> Spec:
        return api(returning(obj(entries={"type": "array", "items": obj(meta=obj(**fields))})))

    [change] = diff_specs(entry(ttl={"type": "integer"}), entry())

    assert (change.code, change.location) == (
        "response-field-removed",
        "GET /items → response 200 → body.entries[].meta.ttl",
    )


def test_additional_properties_values_are_compared() -> None:
    def labels(value_type: str) -> Spec:
        return api(returning(obj(labels={"type": "object", "additionalProperties": {"type": value_type}})))

    [change] = diff_specs(labels("string"), labels("integer"))

    assert (change.code, change.location) == ("type-changed", "GET /items → response 200 → body.labels{}")


def test_closing_a_request_body_to_extra_fields_tightens_it() -> None:
    old = api(accepting(obj(name={"type": "string"})))
    new = api(accepting({**obj(name={"type": "string"}), "additionalProperties": False}))

    assert codes(old, new) == {"constraint-tightened"}
    assert codes(new, old) == {"constraint-relaxed"}


# Direction-sensitive rules ------------------------------------------------------------------------------------


def test_null_added_to_a_type_widens_a_request_and_breaks_a_response() -> None:
    def field(ttl: Any) -> Spec:
        return obj(ttl=ttl)

    nullable = {"type": ["integer", "null"]}
    assert codes(api(accepting(field({"type": "integer"}))), api(accepting(field(nullable)))) == {"type-widened"}
    assert codes(api(returning(field({"type": "integer"}))), api(returning(field(nullable)))) == {"type-changed"}


def test_nullable_ref_written_as_any_of_adds_a_null_variant() -> None:
    schemas = {"Entry": obj(key={"type": "string"})}
    plain = api(returning(obj(entry={"$ref": "#/components/schemas/Entry"})), schemas=schemas)
    nullable = api(
        returning(obj(entry={"anyOf": [{"$ref": "#/components/schemas/Entry"}, {"type": "null"}]})), schemas=schemas
    )

    [change] = diff_specs(plain, nullable)

    assert (change.code, change.location) == (
        "response-variant-added",
        "GET /items → response 200 → body.entry.anyOf[null]",
    )


def test_read_only_fields_are_not_part_of_a_request() -> None:
    old = api(accepting(obj(name={"type": "string"})))
    new = api(accepting(obj(name={"type": "string"}, id={"type": "string", "readOnly": True})))
    new["paths"]["/items"]["post"]["requestBody"]["content"]["application/json"]["schema"]["required"] = ["id"]

    assert diff_specs(old, new) == []


@pytest.mark.parametrize(
    ("old", "new", "code"),
    [
        ({"maximum": 10}, {"exclusiveMaximum": 10}, "constraint-tightened"),
        ({"maximum": 10, "exclusiveMaximum": True}, {"exclusiveMaximum": 10}, None),
        ({"minimum": 1}, {}, "constraint-relaxed"),
        ({"multipleOf": 4}, {"multipleOf": 2}, "constraint-relaxed"),
        ({"multipleOf": 2}, {"multipleOf": 4}, "constraint-tightened"),
        ({}, {"pattern": "^[a-z]+$"}, "constraint-tightened"),
    ],
)
def test_numeric_and_pattern_constraints_on_parameters(old: Spec, new: Spec, code: str | None) -> None:
    def with_limit(constraints: Spec) -> Spec:
        parameter = {"in": "query", "name": "limit", "schema": {"type": "integer", **constraints}}
        return api({"/items": {"get": {"parameters": [parameter], "responses": {"200": {"description": "OK"}}}}})

    assert codes(with_limit(old), with_limit(new)) == ({code} if code else set())


# Parameters ---------------------------------------------------------------------------------------------------


def test_path_level_parameters_are_merged_into_operations() -> None:
    limit = {"in": "query", "name": "limit", "schema": {"type": "integer"}}
    ok = {"200": {"description": "OK"}}
    at_operation = api({"/items": {"get": {"parameters": [limit], "responses": ok}}})
    at_path = api({"/items": {"parameters": [limit], "get": {"responses": ok}}})
    overridden = api(
        {"/items": {"parameters": [limit], "get": {"parameters": [{**limit, "required": True}], "responses": ok}}}
    )

    assert diff_specs(at_operation, at_path) == []
    assert codes(at_path, overridden) == {"parameter-made-required"}


def test_header_parameter_names_are_case_insensitive() -> None:
    def with_header(name: str) -> Spec:
        parameter = {"in": "header", "name": name, "schema": {"type": "string"}}
        return api({"/items": {"get": {"parameters": [parameter], "responses": {"200": {"description": "OK"}}}}})

    assert diff_specs(with_header("X-Request-ID"), with_header("x-request-id")) == []


def test_parameters_are_identified_by_location_and_name() -> None:
    def with_parameter(location: str) -> Spec:
        parameter = {"in": location, "name": "token", "schema": {"type": "string"}}
        return api({"/items": {"get": {"parameters": [parameter], "responses": {"200": {"description": "OK"}}}}})

    assert codes(with_parameter("query"), with_parameter("header")) == {"parameter-removed", "parameter-added-optional"}
