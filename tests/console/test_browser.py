"""The console in Debian's Chromium (headless, through selenium and /usr/bin/chromedriver), end to end.

One story, as people would live it: an investigator searches a face photo, sees the candidate's
enrolled image beside the probe and records an identification (and excludes a stranger); a second
investigator confirms it blind from the verification queue; the oversight body sees one confirmed
identification and one exclusion; everyone signs out; the Urdu pages read right to left.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.console.conftest import FACES, PASSWORD, needs_faces
from tests.conftest import REPO

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[test]')")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.common.exceptions import WebDriverException  # noqa: E402
from selenium.webdriver.support.wait import WebDriverWait  # noqa: E402

pytestmark = [
    needs_faces,
    pytest.mark.skipif(not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
                       reason="Chromium not installed: apt-get install chromium chromium-driver (make test does it)"),
]
#: Where the pages are photographed: the test's own folder, or (``CONSOLE_SCREENSHOTS=docs``) the README's.
SCREENSHOTS_ENV = "CONSOLE_SCREENSHOTS"


def screenshot(browser, folder: Path, name: str) -> None:
    """Save the page with every image blurred: evaluation photos stay in ../shared/data, never in the repository."""
    browser.execute_script("for (const img of document.images) { img.style.filter = 'blur(18px)'; }")
    browser.save_screenshot(str(folder / name))
    browser.execute_script("for (const img of document.images) { img.style.filter = ''; }")


@pytest.fixture(scope="module")
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1400",
                     "--lang=en-GB", "--disable-extensions", "--no-first-run"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=str(CHROMEDRIVER)), options=options)
    driver.implicitly_wait(2)
    yield driver
    driver.quit()


def sign_in(browser, stack, user: str) -> None:
    browser.delete_all_cookies()
    browser.get(stack.url + "/signin")
    browser.find_element(By.ID, "user").send_keys(user)
    browser.find_element(By.ID, "password").send_keys(PASSWORD)
    click_and_wait(browser, browser.find_element(By.ID, "signin"))
    assert browser.find_elements(By.ID, "signout"), browser.page_source[-2000:]


def detached(element):
    """A wait condition: ``element`` has left the document.  Chromium reports a node detached mid-navigation
    either as a stale reference or as "Node with given id does not belong to the document"; both mean gone."""
    def gone(_driver) -> bool:
        try:
            element.is_enabled()
        except WebDriverException:
            return True
        return False
    return gone


def click_and_wait(browser, element) -> None:
    """Click a button that submits a form, and wait for the page that answers it."""
    page = browser.find_element(By.TAG_NAME, "html")
    element.click()
    WebDriverWait(browser, 30).until(detached(page))


def sign_out(browser) -> None:
    click_and_wait(browser, browser.find_element(By.ID, "signout"))
    assert "/signin" in browser.current_url and not browser.find_elements(By.ID, "signout")


def image_loaded(browser, element) -> bool:
    return bool(browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", element))


def decide(article, kind: str, reason: str) -> None:
    article.find_element(By.CSS_SELECTOR, f"input[name=kind][value={kind}]").click()
    article.find_element(By.CSS_SELECTOR, "input[name=reason]").send_keys(reason)
    article.find_element(By.CSS_SELECTOR, "button.record").click()
    WebDriverWait(article.parent, 30).until(detached(article))  # the answer's page has replaced this one


def candidate(browser, subject: str):
    return next(a for a in browser.find_elements(By.CSS_SELECTOR, "article.candidate")
                if a.find_element(By.CSS_SELECTOR, ".subject").text == subject)


def test_search_decide_verify_blind_oversee_and_read_in_urdu(browser, stack, tmp_path):
    shots = REPO / os.environ[SCREENSHOTS_ENV] if os.environ.get(SCREENSHOTS_ENV) else tmp_path
    shots.mkdir(exist_ok=True)
    # 1. The first investigator searches a photo of the wanted person (not one of the enrolled photos).
    sign_in(browser, stack, "inv.asad")
    browser.get(stack.url + "/search")
    browser.find_element(By.ID, "purpose").send_keys("FIR 311/2026 Lahore")
    for box in browser.find_elements(By.CSS_SELECTOR, "input[name=gallery]"):
        if box.is_selected() != (box.get_attribute("value") == "criminal_records"):
            box.click()
    browser.find_element(By.ID, "face").send_keys(str(FACES / "val" / "ben_afflek" / "2.jpg"))
    click_and_wait(browser, browser.find_element(By.ID, "search"))
    assert "/searches/" in browser.current_url
    search_id = browser.current_url.rsplit("/", 1)[1]
    first = browser.find_elements(By.CSS_SELECTOR, "article.candidate")[0]
    assert first.find_element(By.CSS_SELECTOR, ".subject").text == "CR-0001"
    assert float(first.find_element(By.CSS_SELECTOR, ".score").text) > 4
    assert first.find_element(By.CSS_SELECTOR, ".fpir").text
    # The probe and the candidate's enrolled image are both shown.
    assert image_loaded(browser, first.find_element(By.CSS_SELECTOR, "img.candidate-image"))
    assert image_loaded(browser, first.find_element(By.CSS_SELECTOR, "img.probe-image"))
    screenshot(browser, shots, "console-search.png")

    decide(candidate(browser, "CR-0001"), "identification", "same ear shape and scar above the left eyebrow")
    stranger = next(a.find_element(By.CSS_SELECTOR, ".subject").text for a in browser.find_elements(By.CSS_SELECTOR, "article.candidate")
                    if a.find_element(By.CSS_SELECTOR, ".subject").text != "CR-0001")
    decide(candidate(browser, stranger), "exclusion", "different nose and jaw line")
    assert "awaiting verification" in candidate(browser, "CR-0001").text
    sign_out(browser)

    # 2. A second investigator verifies blind: the queue shows the candidate, not the first decision.
    sign_in(browser, stack, "inv.bilal")
    browser.get(stack.url + "/queue")
    items = browser.find_elements(By.CSS_SELECTOR, "article.queued")
    mine = [i for i in items if "CR-0001" in i.text and "FIR 311/2026" in i.text]
    assert len(mine) == 1
    assert "scar above the left eyebrow" not in browser.page_source and "inv.asad" not in browser.page_source
    assert image_loaded(browser, mine[0].find_element(By.CSS_SELECTOR, "img.candidate-image"))
    decide(mine[0], "identification", "independent comparison: same person")
    assert "Decision recorded" in browser.page_source
    browser.get(f"{stack.url}/searches/{search_id}")  # the second examiner may read the record now that they decided
    sign_out(browser)

    # 3. The oversight body sees the confirmed identification and the exclusion, and no image.
    sign_in(browser, stack, "ovs.dar")
    browser.get(stack.url + "/oversight")
    assert int(browser.find_element(By.ID, "identifications").text) >= 1
    assert int(browser.find_element(By.ID, "exclusions").text) >= 1
    assert "intact" in browser.find_element(By.ID, "audit").text
    assert not browser.find_elements(By.CSS_SELECTOR, "main img")
    assert browser.find_elements(By.CSS_SELECTOR, "svg.chart.confirmed rect.bar")
    screenshot(browser, shots, "console-oversight.png")

    # 4. In Urdu the page reads right to left, with a translated heading.
    click_and_wait(browser, browser.find_element(By.CSS_SELECTOR, "button[name=lang][value=ur]"))
    assert browser.find_element(By.TAG_NAME, "html").get_attribute("dir") == "rtl"
    assert browser.find_element(By.TAG_NAME, "h1").text == "نگرانی"
    sign_out(browser)
    assert browser.find_element(By.TAG_NAME, "h1").text == "سائن ان"  # the language stays for the sign-in page
    click_and_wait(browser, browser.find_element(By.CSS_SELECTOR, "button[name=lang][value=en]"))
    assert browser.find_element(By.TAG_NAME, "html").get_attribute("dir") == "ltr"

