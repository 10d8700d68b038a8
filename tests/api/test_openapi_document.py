"""The OpenAPI document describes every operation for people and for client generators."""

import pytest

from engine.registry import all_methods

from tests.api.test_generic_routes import resolve


@pytest.fixture(scope="module")
def document(client):
    return client.get("/openapi.json").json()


def operations(document):
    return [(path, verb, operation) for path, item in document["paths"].items() for verb, operation in item.items()]


def test_every_operation_has_a_human_id_a_summary_and_problem_errors(document):
    ids = [operation["operationId"] for _, _, operation in operations(document)]
    assert len(ids) == len(set(ids))
    assert {"submit_job", "get_job", "cancel_job", "list_jobs", "saliency", "classify", "list_models"} <= set(ids)
    for path, verb, operation in operations(document):
        assert "_v1_" not in operation["operationId"] and not operation["operationId"].endswith(f"_{verb}"), path
        assert operation.get("summary"), (verb, path)
        problem = operation["responses"]["4XX"]["content"]["application/problem+json"]["schema"]
        assert set(resolve(document, problem)["required"]) >= {"type", "title", "status", "detail", "code"}
        for response in operation["responses"].values():
            assert "HTTPValidationError" not in str(response), (verb, path)
        json_body = operation.get("requestBody", {}).get("content", {}).get("application/json")
        if json_body is not None:
            assert "example" in json_body or "examples" in json_body, (verb, path)
    job = resolve(document, {"$ref": "#/components/schemas/JobOut"})
    assert job["examples"][0]["state"] in job["properties"]["state"]["enum"]


def test_submit_job_body_is_one_schema_per_method_discriminated_by_method(document):
    body = document["paths"]["/v1/jobs"]["post"]["requestBody"]["content"]["application/json"]
    mapping = body["schema"]["discriminator"]["mapping"]
    assert body["schema"]["discriminator"]["propertyName"] == "method"
    assert set(mapping) == {method.name for method in all_methods()}
    for method in all_methods():
        request = resolve(document, {"$ref": mapping[method.name]})
        assert request["properties"]["method"]["const"] == method.name
        params = resolve(document, request["properties"]["params"])
        expected = method.params.model_json_schema(ref_template="#/components/schemas/{model}")
        expected.pop("$defs", None)
        assert params == expected
        inputs = resolve(document, request["properties"]["inputs"])
        assert set(inputs.get("properties", {})) == {slot.name for slot in method.inputs}
        example = body["examples"][method.name]["value"]
        assert example["method"] == method.name and set(example["inputs"]) <= {slot.name for slot in method.inputs}


def test_job_answers_are_typed(document):
    submit = document["paths"]["/v1/jobs"]["post"]["responses"]
    for status in ("200", "202"):
        job = resolve(document, submit[status]["content"]["application/json"]["schema"])
        assert {"id", "state", "progress", "artifacts", "deadline_at"} <= set(job["properties"])
    states = resolve(document, {"$ref": "#/components/schemas/JobOut"})["properties"]["state"]["enum"]
    assert "aborted" in states
