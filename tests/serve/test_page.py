"""The model page in a real headless Chromium against a real `cd4ml serve` on loopback.

The page is built from GET /inputs, so nothing here is hard-coded about the form
except the ids the page promises (`field-<name>`, `#prediction`, ...); the values
chosen come from the live model's known values.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from helpers import Service

pytestmark = pytest.mark.slow

ARTIFACTS = Path(__file__).parent / "artifacts"
DATE = "2024-09-02"  # the day after the small world's data ends: a real forecast


@pytest.fixture(scope="module")
def page_service(served_shop: Path) -> Iterator[Service]:
    """`cd4ml serve` over a project whose champion is version 1, polling the alias every 0.5 s."""
    with Service(served_shop, "--host", "127.0.0.1", poll=0.5) as svc:
        svc.wait_until("/ready", 200, timeout=60)
        yield svc


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    # A fixed locale and timezone: the number format and default date do not depend on the machine.
    context = browser.new_context(locale="en-US", timezone_id="UTC", viewport={"width": 1200, "height": 820})
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()


def _fields(service: Service) -> dict[str, dict[str, Any]]:
    return {f["name"]: f for f in service.client.get("/inputs").json()["fields"]}


def _shown_number(text: str) -> tuple[float, int]:
    """The number shown and its count of decimals (en-US format: `,` groups, `.` decimals)."""
    text = text.strip().replace(",", "")
    assert re.fullmatch(r"-?\d+(\.\d+)?", text), f"not a formatted number: {text!r}"
    return float(text), len(text.partition(".")[2])


def _submit(page: Page) -> dict[str, Any]:
    """Press Predict; the response of the page's POST /predict as {status, body, sent}."""
    with page.expect_response(lambda r: r.url.endswith("/predict") and r.request.method == "POST") as info:
        page.click("#submit")
    response = info.value
    return {"status": response.status, "body": response.json(), "sent": response.request.post_data_json}


def test_page_forecasts_what_the_api_predicts_and_shows_errors(page_service: Service, page: Page) -> None:
    base = page_service.url
    fields = _fields(page_service)
    store = fields["store_nbr"]["known_values"][1]
    item = fields["item_nbr"]["known_values"][2]
    record = {"date": DATE, "store_nbr": store, "item_nbr": item, "onpromotion": 1}

    page.goto(base + "/")
    live = page_service.client.get("/version").json()
    expect(page.locator("#release-version")).to_have_text("1")
    expect(page.locator("#release-model")).to_have_text(live["model_name"])
    expect(page.locator("#release-commit")).to_have_text(live["git_commit"][:7])
    expect(page.locator("#release-data")).to_contain_text(str(live["data_version"]))
    # Only required fields are in the main form; lookup attributes are optional, behind "More inputs".
    for name, field in fields.items():
        control = page.locator(f"#field-{name}")
        expect(control).to_have_count(1)
        if field["required"]:
            expect(control).to_be_visible()
        else:
            expect(control).to_be_hidden()

    page.select_option("#field-store_nbr", str(store))
    page.select_option("#field-item_nbr", str(item))
    page.fill("#field-date", DATE)
    page.check("#field-onpromotion")
    answer = _submit(page)
    assert answer["status"] == 200 and answer["sent"] == record

    expect(page.locator("#prediction")).to_be_visible()
    shown, decimals = _shown_number(page.inner_text("#prediction"))
    direct = httpx.post(base + "/predict", json=record, timeout=10).json()
    assert direct["model_version"] == "1" and direct["fallback"] is False
    assert abs(shown - direct["prediction"]) <= 0.5 * 10 ** -decimals + 1e-9, (shown, direct["prediction"])
    expect(page.locator("#result-version")).to_have_text("1")
    expect(page.locator("#result")).to_contain_text(answer["body"]["request_id"])
    expect(page.locator("#result")).to_contain_text(page_service.client.get("/inputs").json()["target"])
    expect(page.locator("#fallback")).to_have_count(0)
    expect(page.locator("#errors")).to_be_hidden()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "page.png"), full_page=True)

    # A value the model never saw (inside the schema's range) is answered, flagged as a fallback.
    seen = set(fields["item_nbr"]["known_values"])
    unseen = next(v for v in range(int(fields["item_nbr"]["min"]), int(fields["item_nbr"]["max"]) + 1)
                  if v not in seen)
    page.select_option("#field-item_nbr", label="Other value…")
    page.fill("#field-item_nbr-other", str(unseen))
    answer = _submit(page)
    assert answer["status"] == 200 and answer["body"]["fallback"] is True
    expect(page.locator("#fallback")).to_be_visible()
    expect(page.locator("#fallback")).to_contain_text("item_nbr")

    # Out of the schema's range: the service's 422 is shown next to the field and in the summary.
    page.fill("#field-item_nbr-other", str(int(fields["item_nbr"]["max"]) + 1))
    answer = _submit(page)
    assert answer["status"] == 422
    expect(page.locator("#errors")).to_be_visible()
    expect(page.locator("#errors")).to_contain_text("item_nbr")
    expect(page.locator("#errors")).to_contain_text("less than or equal to")
    expect(page.locator("[data-field=item_nbr] .field-error")).to_be_visible()
    expect(page.locator("#prediction")).to_have_count(0)

    # A required field left empty: the error names it; the field fixed, the errors go away.
    page.select_option("#field-item_nbr", str(item))
    page.fill("#field-date", "")
    answer = _submit(page)
    assert answer["status"] == 422 and "date" not in answer["sent"]
    expect(page.locator("#errors")).to_contain_text("date")
    expect(page.locator("#errors")).not_to_contain_text("item_nbr")
    expect(page.locator("[data-field=date] .field-error")).to_contain_text("required")
    expect(page.locator("#field-date")).to_have_attribute("aria-invalid", "true")
    page.screenshot(path=str(ARTIFACTS / "page-errors.png"), full_page=True)

    page.fill("#field-date", DATE)
    assert _submit(page)["status"] == 200
    expect(page.locator("#errors")).to_be_hidden()
    expect(page.locator("[data-field=date] .field-error")).to_be_hidden()
    assert _shown_number(page.inner_text("#prediction"))[0] == pytest.approx(shown, abs=10 ** -decimals)


def _loopback_only(page: Page, base: str) -> tuple[list[str], list[str], list[str]]:
    """Abort every request not to `base` (no network but loopback: anything else fails and is recorded);
    returns the lists the page's requests, failed requests and script errors are recorded in."""
    requests: list[str] = []
    failed: list[str] = []
    errors: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.on("requestfailed", lambda r: failed.append(f"{r.url}: {r.failure}"))
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.context.route(re.compile(r"^(?!" + re.escape(base) + r"/)"), lambda route: route.abort())
    return requests, failed, errors


def test_page_makes_no_request_outside_the_service(page_service: Service, page: Page) -> None:
    base = page_service.url
    requests, failed, errors = _loopback_only(page, base)

    page.goto(base + "/")
    expect(page.locator("#release-version")).to_have_text("1")
    expect(page.locator("#submit")).to_be_enabled()
    page.fill("#field-date", DATE)
    assert _submit(page)["status"] == 200
    expect(page.locator("#prediction")).to_be_visible()
    page.wait_for_timeout(2_500)  # at least one /version poll after the prediction

    assert all(url.startswith(base + "/") for url in requests), [u for u in requests if not u.startswith(base)]
    paths = {url[len(base):] for url in requests}
    assert {"/", "/static/app.js", "/static/style.css", "/inputs", "/version", "/predict"} <= paths, paths
    assert sum(url == base + "/version" for url in requests) >= 2  # the release header polls
    assert not failed and not errors, (failed, errors)


def test_api_docs_render_every_operation_offline(page_service: Service, page: Page) -> None:
    base = page_service.url
    requests, failed, errors = _loopback_only(page, base)
    operations = [(method, route) for route, item in page_service.client.get("/openapi.json").json()["paths"].items()
                  for method in item]
    assert ("post", "/predict") in operations

    page.goto(base + "/docs")
    for method, route in operations:  # each operation is rendered by Swagger UI's own script
        block = page.locator(f".opblock-{method} .opblock-summary-path[data-path='{route}']")
        expect(block).to_have_count(1)
        expect(block).to_be_visible()

    assert all(url.startswith(base + "/") for url in requests), [u for u in requests if not u.startswith(base)]
    assert any(url.endswith("/swagger-ui-bundle.js") for url in requests)  # served by the service itself
    assert not failed and not errors, (failed, errors)
    # ReDoc would fetch its logo from a CDN: not served at all.
    assert page_service.client.get("/redoc").status_code == 404
