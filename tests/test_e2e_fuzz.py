"""Random requests shaped after the tracking API's own OpenAPI document: none may be a server error.

Requests are drawn from the document itself (every operation, its path parameters and request
body schema), then spoiled now and then the way careless or hostile clients do: a wrong body,
bytes that are not UTF-8, odd Authorization and Accept-Language headers, paths that do not
exist. Every answer must be below 500 and the server must log no error. Hypothesis runs
derandomized with a bounded number of examples, so that the test takes the same time and
draws the same requests on every run.
"""

import json
import urllib.parse

import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

API_ROOT = "/gobysend/api/v1"
MAX_EXAMPLES = 150
# Contacts identified before the run: drawn requests name them often enough to get past the
# "unknown contact" answer into the rest of the service.
KNOWN_IDS = ("F-1", "F-2", "F-3")
TIMEOUT = 30

# Any JSON value, kept small.
JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=8,
)
# Header values as HTTP carries them: bytes, Latin-1 text at best, never a line break.
HEADER_TEXT = st.text(
    alphabet=st.characters(min_codepoint=0, max_codepoint=0xFF, exclude_characters="\r\n"), max_size=40
).map(lambda text: text.lstrip().encode("latin-1"))
ACCEPT_LANGUAGES = st.sampled_from(
    [b"fr;q=#E", b"en;q=", b";;;", b"vi-VN,vi;q=0.9,en;q=0.8", b"*", b"en;q=nan", b"zz-ZZ", b"en;q=1e999"]
)


def resolve(schema, document):
    while "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = document["components"]["schemas"][name]
    return schema


def from_schema(schema, document):
    """A strategy for values that the JSON schema describes (the subset FastAPI produces)."""
    schema = resolve(schema, document)
    for combinator in ("anyOf", "oneOf"):
        if combinator in schema:
            return st.one_of([from_schema(option, document) for option in schema[combinator]])
    if "const" in schema:
        return st.just(schema["const"])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if kind == "string":
        if schema.get("format") == "email":
            return st.emails() | st.text(max_size=30)
        if "pattern" in schema:
            strategy = st.from_regex(schema["pattern"])
        else:
            strategy = st.text(min_size=schema.get("minLength", 0), max_size=min(schema.get("maxLength", 60), 60))
        if "maxLength" in schema:
            strategy = strategy.filter(lambda text, limit=schema["maxLength"]: len(text) <= limit)
        return strategy
    if kind == "integer":
        return st.integers()
    if kind == "number":
        return st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    if kind == "array":
        items = from_schema(schema.get("items", {}), document)
        return st.lists(items, max_size=min(schema.get("maxItems", 4), 4))
    if kind == "object":
        properties = schema.get("properties", {})
        if not properties:
            return st.dictionaries(st.text(max_size=10), JSON_VALUES, max_size=4)
        required = set(schema.get("required", ()))
        return st.fixed_dictionaries(
            {name: from_schema(sub, document) for name, sub in properties.items() if name in required},
            optional={name: from_schema(sub, document) for name, sub in properties.items() if name not in required},
        )
    return JSON_VALUES


def operations(document):
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            yield path, method.upper(), operation


def request_strategy(document, key):
    """(method, path, headers, body bytes) of one request, mostly valid, now and then spoiled."""

    @st.composite
    def one_request(draw):
        path, method, operation = draw(st.sampled_from(sorted(operations(document))))
        for parameter in operation.get("parameters", ()):
            if parameter["in"] == "path":
                value = draw(from_schema(parameter["schema"], document) | st.text(max_size=30))
                path = path.replace("{%s}" % parameter["name"], urllib.parse.quote(str(value), safe="") or "x")
        if draw(st.integers(0, 19)) == 0:
            path = "/" + urllib.parse.quote(draw(st.text(max_size=20)), safe="/")
        body = None
        if "requestBody" in operation:
            schema = operation["requestBody"]["content"]["application/json"]["schema"]
            value = draw(from_schema(schema, document) | JSON_VALUES)
            if isinstance(value, dict) and draw(st.booleans()):
                value = {name: part for name, part in value.items() if name not in ("email", "phone")}
                value["id"] = draw(st.sampled_from(KNOWN_IDS))
            body = json.dumps(value).encode()
        spoil = draw(st.integers(0, 9))
        if spoil == 0:
            body = draw(st.binary(max_size=60))  # anything, UTF-8 or not
        elif spoil == 1 and body:
            body = body.decode().encode("utf-16")
        headers = {"Content-Type": draw(st.sampled_from([b"application/json"] * 4 + [b"text/plain", b""]))}
        authorization = draw(st.integers(0, 9))
        if authorization < 7:
            headers["Authorization"] = f"Bearer {key}".encode()
        elif authorization == 7:
            headers["Authorization"] = b"Bearer " + draw(HEADER_TEXT)
        elif authorization == 8:
            headers["Authorization"] = draw(HEADER_TEXT)
        if draw(st.booleans()):
            headers["Accept-Language"] = draw(ACCEPT_LANGUAGES | HEADER_TEXT)
        return method, path, headers, body

    return one_request()


def test_no_request_drawn_from_the_openapi_document_is_a_server_error(admin, base_url, unique, server_log):
    # A rate limit out of reach: the point is what the API does with the requests, not 429s.
    workspace_id = admin.call("gobysend.workspace", "create", {"name": f"Fuzz {unique}", "api_rate_limit": 10**6})
    key = admin.call("gobysend.workspace", "api_key_create", [workspace_id], "Fuzz")
    document = requests.get(base_url + API_ROOT + "/openapi.json", timeout=TIMEOUT).json()
    session = requests.Session()
    for external_id in KNOWN_IDS:
        response = session.post(
            base_url + API_ROOT + "/identify",
            json={"id": external_id},
            headers={"Authorization": f"Bearer {key}"},
            timeout=TIMEOUT,
        )
        assert response.status_code == 200, response.text
    seen = {}

    @settings(
        max_examples=MAX_EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(request_strategy(document, key))
    def check(request):
        method, path, headers, body = request
        response = session.request(method, base_url + API_ROOT + path, headers=headers, data=body, timeout=TIMEOUT)
        seen[response.status_code] = seen.get(response.status_code, 0) + 1
        assert response.status_code < 500, (method, path, headers, body, response.text[:500])

    check()
    log = server_log()
    assert " ERROR " not in log and "Traceback" not in log, log[-5000:]
    # The requests reached the service, not only the key check or the validation.
    assert seen.get(200, 0) >= 5, seen
    assert {401, 422} <= set(seen), seen
