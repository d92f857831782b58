"""The web page driven in a real headless browser (Debian's chromium + chromedriver).

Nothing downloads a browser: the test uses /usr/bin/chromium and /usr/bin/chromedriver
(``apt-get install chromium chromium-driver``) through selenium, and skips with the
reason when they are missing. The page talks to a real ``astro-mantis serve --demo``
process on loopback. With ``ASTRO_MANTIS_UPDATE_SCREENSHOTS=1`` the screenshots taken
here replace those of the web service guide (``docs/_static/web_page*.png``).
"""
import os
import shutil
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
DOCS_STATIC = Path(__file__).resolve().parent.parent / "docs" / "_static"

if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
    pytest.skip(f"no browser: {CHROMIUM} and {CHROMEDRIVER} are needed (Debian: apt-get "
                "install chromium chromium-driver)", allow_module_level=True)
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support import expected_conditions as EC  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from astro_mantis.web.process import ServerProcess  # noqa: E402

# Contrast ratio (WCAG 2) of an element's text colour against the first opaque
# background found up its ancestors.
_CONTRAST_JS = """
function lum(c) {
  const m = c.match(/[\\d.]+/g).map(Number);
  const f = (v) => { v /= 255;
    return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
  return 0.2126 * f(m[0]) + 0.7152 * f(m[1]) + 0.0722 * f(m[2]);
}
function bg(el) {
  while (el) {
    const c = getComputedStyle(el).backgroundColor;
    const m = c.match(/[\\d.]+/g);
    if (m && (m.length < 4 || Number(m[3]) > 0.9)) return c;
    el = el.parentElement;
  }
  return "rgb(255, 255, 255)";
}
const out = [];
for (const el of document.querySelectorAll(arguments[0])) {
  if (!el.offsetParent && el.tagName !== "BODY") continue;
  const a = lum(getComputedStyle(el).color), b = lum(bg(el));
  out.push([el.tagName + (el.id ? "#" + el.id : "") + "." + el.className,
            (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05)]);
}
return out;
"""


@pytest.fixture(scope="module")
def service():
    with ServerProcess(["--demo", "--rate-limit", "1000"]) as server:
        yield server


@pytest.fixture(scope="module")
def examples(service):
    return httpx.get(f"{service.url}/examples", timeout=60).json()


@pytest.fixture
def browser(tmp_path):
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1200,1500",
                 f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options,
                              service=webdriver.ChromeService(executable_path=str(CHROMEDRIVER)))
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def _open(browser, service):
    browser.get(service.url + "/")
    wait = WebDriverWait(browser, 60)
    wait.until(lambda d: d.find_element(By.ID, "model-line").text)
    return wait


def _save_screenshot(browser, tmp_path, name, full_page=False):
    path = tmp_path / name
    if full_page:  # the whole page, form and answer, from the top
        height = browser.execute_script("return document.documentElement.scrollHeight")
        browser.set_window_size(1100, min(int(height) + 140, 3000))
        browser.execute_script("window.scrollTo(0, 0)")
    browser.save_screenshot(str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("ASTRO_MANTIS_UPDATE_SCREENSHOTS") == "1":
        shutil.copyfile(path, DOCS_STATIC / name)
    return path


def _active_id(browser):
    return browser.execute_script("return document.activeElement.id || "
                                  "document.activeElement.tagName")


def test_keyboard_only_estimate_with_cutouts_pdf_and_downloads(browser, service, examples,
                                                               tmp_path):
    wait = _open(browser, service)
    assert "simulated" in browser.find_element(By.ID, "demo-note").text
    wait.until(lambda d: d.find_element(By.ID, "examples-field").is_displayed())
    # the tab order follows the form: skip link, RA, Dec, name, sample galaxies, button
    order = []
    for _ in range(6):
        browser.switch_to.active_element.send_keys(Keys.TAB)
        order.append(_active_id(browser))
    assert order == ["A", "ra", "dec", "name", "examples", "single-submit"], order
    browser.find_element(By.ID, "ra").click()
    ex = examples[0]
    ra = browser.find_element(By.ID, "ra")
    ra.send_keys(str(ex["RA"]))
    ra.send_keys(Keys.TAB, str(ex["DEC"]), Keys.TAB, "my galaxy", Keys.ENTER)
    wait.until(EC.visibility_of_element_located((By.ID, "result")))
    wait.until(lambda d: d.execute_script(
        "const i = document.getElementById('panel'); return i.complete && i.naturalWidth > 0"))
    assert _active_id(browser) == "result"  # focus moves to the answer
    api = httpx.post(f"{service.url}/predict", json={"RA": ex["RA"], "DEC": ex["DEC"]},
                     timeout=60).json()
    summary = browser.find_element(By.ID, "summary").text
    assert f"{api['z_mean']:.3f} ± {api['z_std']:.3f}" in summary
    assert f"{api['intervals']['68'][0]:.3f}" in summary and "mantis-mini" in summary
    assert f"{api['z_odds']:.2f}" in summary and 0 <= api["z_odds"] <= 1
    status = browser.find_element(By.ID, "status").text
    assert status.startswith(f"Redshift {api['photo_z']:.3f}")
    # the PDF is drawn, with a text alternative
    assert browser.find_elements(By.CSS_SELECTOR, "#pdf-plot path")
    assert f"Mean {api['z_mean']:.3f}" in browser.find_element(By.ID, "pdf-desc").get_attribute(
        "textContent")
    assert "nine bands" in browser.find_element(By.ID, "panel").get_attribute("alt")
    links = {a.text: a.get_attribute("href") for a in
             browser.find_elements(By.CSS_SELECTOR, "#downloads a")}
    assert {"Redshift PDF (JSON)", "Redshift table (ECSV)", "Redshift table (FITS)",
            "Cutouts, all surveys (FITS)", "Cutout panel (PNG)"} <= set(links)
    for text, href in links.items():
        r = httpx.get(href, timeout=60)
        assert r.status_code == 200, (text, r.text[:200])
        assert len(r.content) > 500
    assert "my galaxy" in httpx.get(links["Redshift table (ECSV)"], timeout=60).text
    _save_screenshot(browser, tmp_path, "web_page.png", full_page=True)


def test_south_of_minus_30_is_refused_on_the_form(browser, service):
    _open(browser, service)
    browser.find_element(By.ID, "ra").send_keys("150.0")
    browser.find_element(By.ID, "dec").send_keys("-45", Keys.ENTER)
    alert = WebDriverWait(browser, 30).until(EC.visibility_of_element_located((By.ID, "alert")))
    assert "south of -30" in alert.text
    dec = browser.find_element(By.ID, "dec")
    assert dec.get_attribute("aria-invalid") == "true"
    assert _active_id(browser) == "dec"
    assert "south of -30" in browser.find_element(By.ID, "dec-error").text
    assert not browser.find_element(By.ID, "result").is_displayed()
    # a typo in the text the browser cannot check is refused by the service, clearly
    dec.clear()
    dec.send_keys("2.0")
    ra = browser.find_element(By.ID, "ra")
    ra.clear()
    ra.send_keys("12h3x", Keys.ENTER)
    WebDriverWait(browser, 30).until(lambda d: "RA must be" in d.find_element(By.ID, "alert").text)
    assert browser.find_element(By.ID, "ra").get_attribute("aria-invalid") == "true"


def test_pasted_list(browser, service, examples):
    wait = _open(browser, service)
    north = [e for e in examples if e["DEC"] > -30][:2]
    lines = [f"{e['RA']}, {e['DEC']}, {e['NAME']}" for e in north] + ["400, 1, bad one"]
    browser.find_element(By.ID, "positions").send_keys("\n".join(lines))
    browser.find_element(By.ID, "list-submit").click()
    wait.until(EC.visibility_of_element_located((By.ID, "list-result")))
    rows = browser.find_elements(By.CSS_SELECTOR, "#list-table tbody tr")
    assert len(rows) == 3
    assert north[0]["NAME"] in rows[0].text and "not estimated" in rows[2].text
    assert "BAD_COORDINATE" in rows[2].text
    rows[0].find_element(By.TAG_NAME, "button").send_keys(Keys.ENTER)  # keyboard too
    wait.until(lambda d: north[0]["NAME"] in d.find_element(By.ID, "result-title").text)


def test_phone_layout_and_contrast(browser, service, examples, tmp_path):
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                            {"width": 390, "height": 844, "deviceScaleFactor": 2,
                             "mobile": True})
    wait = _open(browser, service)
    ex = examples[0]
    browser.find_element(By.ID, "ra").send_keys(str(ex["RA"]))
    browser.find_element(By.ID, "dec").send_keys(str(ex["DEC"]), Keys.ENTER)
    wait.until(EC.visibility_of_element_located((By.ID, "result")))
    wait.until(lambda d: d.execute_script(
        "const i = document.getElementById('panel'); return i.complete && i.naturalWidth > 0"))
    # nothing wider than the screen; the cutouts come as a 3 x 3 grid; big touch targets
    assert browser.execute_script("return document.documentElement.scrollWidth "
                                  "<= window.innerWidth")
    assert "layout=grid" in browser.execute_script(
        "return document.getElementById('panel').currentSrc")
    for element_id in ("ra", "dec", "single-submit", "list-submit"):
        height = browser.execute_script(
            f"return document.getElementById('{element_id}').getBoundingClientRect().height")
        assert height >= 44, element_id
    # WCAG AA: text contrast at least 4.5:1
    ratios = browser.execute_script(_CONTRAST_JS, "body, h1, h2, label, p, dt, dd, a, button, "
                                                  "figcaption, .hint, .note, .small")
    assert len(ratios) > 20
    low = [(what, round(r, 2)) for what, r in ratios if r < 4.5]
    assert not low, low
    _save_screenshot(browser, tmp_path, "web_page_phone.png")
