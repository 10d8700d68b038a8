"""The web page at / in a real headless Chromium (Debian's, driven by Selenium) against the live app."""

import json
import os
import shutil
from pathlib import Path

import httpx
import pytest

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (shutil.which("chromium") and shutil.which("chromedriver")), reason="needs Debian's chromium and chromedriver"),
]

STYLE = {"max_side": 32, "steps": 6, "scales": 1, "coarse_steps": 1, "optimizer": "adam", "preview_every": 1, "seed": 3}


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> Path:
    folder = Path(os.environ.get("CONVLENS_TEST_ARTIFACTS") or tmp_path_factory.mktemp("artifacts"))
    folder.mkdir(parents=True, exist_ok=True)
    print(f"\nscreenshots in {folder}")
    return folder


@pytest.fixture(scope="module")
def photos(tmp_path_factory, chelsea, coffee) -> Path:
    folder = tmp_path_factory.mktemp("page-photos")
    chelsea.save(folder / "chelsea.png")
    chelsea.resize((48, 32)).save(folder / "small_chelsea.png")
    coffee.resize((48, 32)).save(folder / "coffee.png")
    side = min(chelsea.size)
    chelsea.crop((0, 0, side, side)).save(folder / "square_chelsea.png")  # square: every fit gives the same picture
    return folder


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1400,1000",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def wait(browser, condition, timeout=120):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, timeout, poll_frequency=0.1).until(condition)


def loaded_images(browser, css: str) -> list:
    """The <img> elements matching ``css`` that finished loading a real picture."""
    return [img for img in browser.find_elements("css selector", css)
            if browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", img)]


def open_page(browser, live):
    from selenium.webdriver.support.ui import Select

    browser.get(live.url + "/")
    wait(browser, lambda b: len(Select(b.find_element("id", "method")).options) > 10)


def choose(browser, element_id: str, value: str) -> None:
    from selenium.webdriver.support.ui import Select

    Select(browser.find_element("id", element_id)).select_by_value(value)


def test_first_load_is_under_300_kb(live):
    page = httpx.get(live.url + "/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    sizes = [len(page.content)] + [len(httpx.get(live.url + path).content) for path in ("/static/app.js", "/static/style.css")]
    sizes += [len(httpx.get(live.url + path).content) for path in ("/v1/models", "/v1/methods")]
    assert sum(sizes) < 300_000, sizes


def test_saliency_on_chelsea_shows_the_overlay(browser, live, photos, artifacts):
    open_page(browser, live)
    choose(browser, "method", "saliency")
    browser.find_element("id", "slot-image").send_keys(str(photos / "chelsea.png"))
    browser.find_element("id", "run").click()
    wait(browser, lambda b: {img.get_attribute("data-artifact") for img in loaded_images(b, "#results img")} >= {"input", "heatmap", "overlay"})
    overlay = browser.find_element("css selector", "#results img[data-artifact=overlay]")
    assert browser.execute_script("return arguments[0].naturalWidth", overlay) == 224
    assert "cat" in browser.find_element("id", "explained").text or "tabby" in browser.find_element("id", "explained").text
    browser.save_screenshot(str(artifacts / "saliency.png"))


def test_comparison_shows_at_least_four_methods_on_one_scale(browser, live, photos, artifacts):
    open_page(browser, live)
    browser.find_element("id", "tab-compare").click()
    browser.find_element("id", "compare-image").send_keys(str(photos / "chelsea.png"))
    chosen = [box.get_attribute("value") for box in browser.find_elements("css selector", "input[name=compare]:checked")]
    assert len(chosen) >= 4
    browser.find_element("id", "compare-run").click()
    wait(browser, lambda b: not b.find_elements("css selector", "#compare-grid .pending"), timeout=240)
    done = browser.find_elements("css selector", "#compare-grid figure.done")
    assert {cell.get_attribute("data-method") for cell in done} == set(chosen)
    assert len(loaded_images(browser, "#compare-grid figure.done img")) == len(chosen) >= 4
    for cell in done:  # each map carries its own colour bar, drawn from its result's colormap and range
        ramp = cell.find_element("css selector", ".colorbar-ramp").value_of_css_property("background-image")
        assert "linear-gradient" in ramp
    browser.save_screenshot(str(artifacts / "comparison.png"))


def test_style_job_progress_reaches_100_percent_and_its_result_shows(browser, live, photos, artifacts):
    open_page(browser, live)
    choose(browser, "method", "style_transfer")
    assert browser.find_element("id", "model").get_attribute("value") == "vgg19"
    browser.find_element("id", "slot-content").send_keys(str(photos / "small_chelsea.png"))
    browser.find_element("id", "slot-style").send_keys(str(photos / "coffee.png"))
    for name, value in STYLE.items():
        field = browser.find_element("id", f"param-{name}")
        if field.tag_name == "select":
            choose(browser, f"param-{name}", str(value))
        else:
            field.clear()
            field.send_keys(str(value))
    browser.find_element("id", "run").click()
    fractions = []
    wait(browser, lambda b: fractions.append(float(b.find_element("id", "progress").get_attribute("value")))
         or b.find_element("id", "job-state").text == "succeeded")
    assert browser.find_element("id", "progress-text").text.startswith("100%")
    assert float(browser.find_element("id", "progress").get_attribute("value")) == 1.0
    wait(browser, lambda b: "image.png" in {img.get_attribute("data-artifact") for img in loaded_images(b, "#results img")})
    assert fractions == sorted(fractions)
    assert not browser.find_element("id", "cancel").is_displayed()  # nothing left to cancel
    assert browser.find_element("id", "status").text == "style_transfer: succeeded"
    browser.execute_script("document.getElementById('progress').scrollIntoView()")
    browser.save_screenshot(str(artifacts / "style_job.png"))


def classify_on_page_and_by_api(browser, live, photo: Path) -> list[dict]:
    """Run the chosen classify on ``photo`` in the page (until its bars are drawn) and POST it with no params: the API's top list."""
    browser.find_element("id", "slot-image").send_keys(str(photo))
    browser.find_element("id", "run").click()
    wait(browser, lambda b: b.find_elements("css selector", "#readable .bar"))
    with open(photo, "rb") as picture:
        answer = httpx.post(live.url + "/v1/classify", data={"model": "efficientnet_lite0"},
                            files={"image": (photo.name, picture, "image/png")}, timeout=60)
    assert answer.status_code == 200, answer.text
    return answer.json()["data"]["top"]


def shown_bars(browser) -> list[dict]:
    """The classify bars as the page shows them: label text, probability, and the number written beside the bar."""
    rows = browser.find_elements("css selector", "#readable .bar")
    return [{"label": row.find_element("css selector", ".bar-label").text, "index": int(row.get_attribute("data-index")),
             "probability": float(row.get_attribute("data-probability")), "shown": row.find_element("css selector", ".bar-value").text}
            for row in rows]


def test_classify_shows_labelled_bars_equal_to_the_api(browser, live, photos, artifacts):
    open_page(browser, live)
    choose(browser, "method", "classify")
    top = classify_on_page_and_by_api(browser, live, photos / "square_chelsea.png")
    shown = shown_bars(browser)
    assert [(bar["label"], bar["index"], bar["probability"]) for bar in shown] == [(t["label"], t["index"], t["probability"]) for t in top]
    assert [bar["shown"] for bar in shown] == [f"{t['probability']:.3f}" for t in top]
    widths = browser.execute_script("return [...document.querySelectorAll('#readable .bar-fill')].map(e => e.getBoundingClientRect().width)")
    assert widths == sorted(widths, reverse=True) and widths[0] > widths[-1]
    assert not browser.find_element("id", "data").is_displayed()  # the JSON is folded away, not the answer
    browser.save_screenshot(str(artifacts / "classify_bars.png"))


def set_field(browser, name: str, value) -> None:
    field = browser.find_element("id", f"param-{name}")
    if field.tag_name == "select":
        choose(browser, f"param-{name}", str(value))
    else:
        field.clear()
        field.send_keys(str(value))


def test_goldfinch_chosen_by_typing_part_of_its_name(browser, live, artifacts):
    """The issue's acceptance test: choose goldfinch by typing part of its name and get a goldfinch visualisation."""
    open_page(browser, live)
    choose(browser, "method", "class_visualization")
    choose(browser, "model", "efficientnet_lite0")
    browser.find_element("id", "param-objectives").send_keys("goldf")
    wait(browser, lambda b: "goldfinch" in [li.text for li in b.find_elements("css selector", "#suggest-objectives li")], timeout=30)
    browser.save_screenshot(str(artifacts / "class_picker_suggestions.png"))
    next(li for li in browser.find_elements("css selector", "#suggest-objectives li") if li.text == "goldfinch").click()
    chips = browser.find_elements("css selector", "#chosen-objectives .chip")
    assert [chip.get_attribute("data-label") for chip in chips] == ["goldfinch"]
    assert browser.execute_script("return params().objectives") == [{"kind": "class", "target_class": 11}]
    for name, value in {"size": 64, "steps": 4}.items():
        set_field(browser, name, value)
    browser.find_element("id", "run").click()
    wait(browser, lambda b: b.find_element("id", "job-state").text in ("succeeded", "failed"), timeout=240)
    assert browser.find_element("id", "job-state").text == "succeeded", browser.find_element("id", "error").text
    wait(browser, lambda b: b.find_elements("css selector", "#targets li"))
    assert [li.get_attribute("data-label") for li in browser.find_elements("css selector", "#targets li")] == ["goldfinch"]
    data = json.loads(browser.execute_script("return document.getElementById('data').textContent"))
    assert list(data["target_probabilities"]) == ["goldfinch"] and "goldfinch" in data["judge"]
    wait(browser, lambda b: "image.png" in {img.get_attribute("data-artifact") for img in loaded_images(b, "#results img")})
    browser.execute_script("document.getElementById('targets').scrollIntoView()")
    browser.save_screenshot(str(artifacts / "class_visualization_goldfinch.png"))


def test_target_class_of_an_attribution_is_chosen_by_name(browser, live, photos, artifacts):
    open_page(browser, live)
    choose(browser, "method", "saliency")
    browser.find_element("id", "slot-image").send_keys(str(photos / "square_chelsea.png"))
    browser.find_element("id", "param-target_class").send_keys("tige")
    wait(browser, lambda b: "tiger cat" in [li.text for li in b.find_elements("css selector", "#suggest-target_class li")], timeout=30)
    next(li for li in browser.find_elements("css selector", "#suggest-target_class li") if li.text == "tiger cat").click()
    browser.find_element("id", "run").click()
    wait(browser, lambda b: "heatmap" in {img.get_attribute("data-artifact") for img in loaded_images(b, "#results img")})
    data = json.loads(browser.execute_script("return document.getElementById('data').textContent"))
    assert data["target"]["label"] == "tiger cat" and data["target"]["index"] == 282
    assert browser.find_element("id", "explained").text.startswith('Explains "tiger cat" (class 282')
    browser.save_screenshot(str(artifacts / "saliency_tiger_cat.png"))


def test_page_sends_only_what_the_user_changed_so_classify_equals_curl(browser, live, photos, artifacts):
    """The page's classify of a non-square photo equals a POST with no params (the model's own fit, not stretch)."""
    open_page(browser, live)
    choose(browser, "method", "classify")
    assert browser.execute_script("return params()") == {}
    top = classify_on_page_and_by_api(browser, live, photos / "chelsea.png")
    assert [(bar["label"], bar["probability"]) for bar in shown_bars(browser)] == [(t["label"], t["probability"]) for t in top]
    set_field(browser, "top_k", 3)
    set_field(browser, "fit", "stretch")
    assert browser.execute_script("return params()") == {"top_k": 3, "fit": "stretch"}
    choose(browser, "method", "saliency")
    assert browser.execute_script("return params()") == {}
    browser.find_element("id", "tab-compare").click()
    assert browser.execute_script("return document.getElementById('compare-colormap').value") == "auto"
    browser.find_element("id", "tab-run").click()
    browser.save_screenshot(str(artifacts / "classify_api_defaults.png"))


def test_signed_maps_get_a_diverging_colour_bar_centred_on_zero(browser, live, photos, artifacts):
    open_page(browser, live)
    browser.find_element("id", "tab-compare").click()
    browser.find_element("id", "compare-image").send_keys(str(photos / "chelsea.png"))
    for box in browser.find_elements("css selector", "input[name=compare]"):
        if (box.get_attribute("value") in ("integrated_gradients", "occlusion", "saliency")) != box.is_selected():
            box.click()
    browser.find_element("id", "compare-run").click()
    wait(browser, lambda b: not b.find_elements("css selector", "#compare-grid .pending"), timeout=240)
    bars = {cell.get_attribute("data-method"): cell.find_element("css selector", ".colorbar")
            for cell in browser.find_elements("css selector", "#compare-grid figure.done")}
    assert set(bars) == {"integrated_gradients", "occlusion", "saliency"}
    coolwarm_centre = "rgb(221, 221, 221)"  # the middle stop of the page's coolwarm ramp: the colour of 0
    for name in ("integrated_gradients", "occlusion"):
        bar = bars[name]
        low, high = json.loads(bar.get_attribute("data-range"))
        assert bar.get_attribute("data-sign") == "all" and bar.get_attribute("data-colormap") == "coolwarm"
        assert low == -high < 0
        assert bar.find_element("css selector", ".colorbar-middle").text == "0"
        assert coolwarm_centre in bar.find_element("css selector", ".colorbar-ramp").value_of_css_property("background-image")
        assert "red is evidence for the class" in bar.find_element("css selector", ".colorbar-meaning").text
    unsigned = bars["saliency"]
    low, high = json.loads(unsigned.get_attribute("data-range"))
    assert unsigned.get_attribute("data-sign") != "all" and unsigned.get_attribute("data-colormap") == "jet"
    assert 0 <= low < high and unsigned.find_element("css selector", ".colorbar-middle").text != "0"
    browser.save_screenshot(str(artifacts / "signed_colour_bars.png"))


def test_an_error_clears_the_running_state(browser, live, photos, artifacts):
    open_page(browser, live)
    choose(browser, "method", "saliency")
    browser.find_element("id", "slot-image").send_keys(str(photos / "square_chelsea.png"))
    browser.find_element("id", "param-target_class").send_keys("no such class")
    browser.find_element("id", "run").click()
    wait(browser, lambda b: b.find_element("id", "error").is_displayed(), timeout=60)
    status = browser.find_element("id", "status").text
    assert "running" not in status and status.startswith("saliency failed:"), status
    assert "no such class" in browser.find_element("id", "error").text or "422" in browser.find_element("id", "error").text
    assert browser.find_element("id", "run").is_enabled()
    browser.save_screenshot(str(artifacts / "error_state.png"))
