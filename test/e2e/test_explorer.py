"""``report.html`` of the GPT example in a real headless browser (Chromium from the distribution,
driven by selenium through its chromedriver): no console errors, one SVG unit element a placed
unit, hovering a unit shows its model line, searching a model line highlights its units. A
screenshot is left for a person (``report.png`` beside the report in the test's folder, its path
printed). Skipped, with the reason, only where no Chromium or chromedriver is installed
(``.ci/run`` installs both from Debian's packages).

Also, without a browser: the page is self-contained (nothing fetched) and lists what each unit
implements (the values fused into it, with their torch ops).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import ROOT, tool

from runtime.pef import read_pef
from runtime.pef.schema import Program

GPT = ROOT / "examples" / "gpt" / "model.py"
SMALL = ["--n-embd", "32", "--block-size", "16", "--n-head", "2"]  # as test_gpt.py


@pytest.fixture(scope="module")
def gpt_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("gpt-report")
    result = tool("rdu-compile", str(GPT), "-b", "8", "--output-folder", str(out), *SMALL)
    assert result.returncode == 0, result.stderr
    assert f"report: {out / 'gpt' / 'report.html'}" in result.stdout
    return out / "gpt" / "report.html"


def _data(page: str) -> dict[str, Any]:
    """The units the page embeds (its ``<script id="data">``)."""
    match = re.search(r'<script type="application/json" id="data">(.*?)</script>', page, re.S)
    assert match is not None
    return json.loads(match.group(1))


def _placed_units(program: Program) -> list[tuple[int, str, int]]:
    """(section, kind, index) of every placed unit, in the page's order."""
    units = []
    for s, section in enumerate(program.sections):
        units += [(s, "pcu", i) for i in range(len(section.pcus))]
        units += [(s, "pmu", i) for i in range(len(section.pmus))]
    return units


def test_the_report_is_self_contained_and_lists_what_units_implement(gpt_report: Path) -> None:
    page = gpt_report.read_text()
    assert "<link" not in page and " src=" not in page and "@import" not in page
    assert set(re.findall(r"https?://[^\s\"'<>)]+", page)) == {"http://www.w3.org/2000/svg"}
    program = read_pef(gpt_report.parent / "gpt.pef")
    units = _data(page)["units"]
    assert [(u["s"], u["kind"], u["i"]) for u in units] == _placed_units(program)
    pcus = [u for u in units if u["kind"] == "pcu"]
    for u in pcus:
        pcu = program.sections[u["s"]].pcus[u["i"]]
        assert u["name"] == pcu.name and pcu.loc in u["lines"]
        if pcu.value:
            assert pcu.value in u["values"]
        assert all(op.startswith("aten.") for op in u["ops"]), u
    # the token and position embeddings and their sum are one fused unit of the forward
    embed = next(u for u in pcus if "embedding" in u["values"])
    assert {"embedding", "embedding_1", "add"} <= set(embed["values"])
    assert "aten.embedding.default" in embed["ops"]
    assert (gpt_report.parent / "trace.json").exists() and (gpt_report.parent / "report.json")


def test_the_report_in_a_browser(gpt_report: Path, browser: Any) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    program = read_pef(gpt_report.parent / "gpt.pef")
    browser.get(gpt_report.as_uri())
    units = browser.execute_script("return DATA.units")  # the page's own data
    elements = browser.find_elements(By.CSS_SELECTOR, "svg.grid g.unit")
    # one SVG element a placed unit (every copy or PMU of a unit inside it), in the PEF's order
    placed = _placed_units(program)
    assert len(elements) == len(placed) == len(units)
    assert [int(e.get_attribute("data-u")) for e in elements] == list(range(len(placed)))
    for s, grid in enumerate(browser.find_elements(By.CSS_SELECTOR, "svg.grid")):
        section = program.sections[s]
        shown = grid.find_elements(By.CSS_SELECTOR, "g.unit")
        assert len(shown) == len(section.pcus) + len(section.pmus)

    # hovering a PCU of a later section shows its kernel's model line
    s = len(program.sections) - 1
    section = program.sections[s]
    i = next(k for k, p in enumerate(section.pcus) if p.loc)
    index = placed.index((s, "pcu", i))
    element = elements[index]
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
    ActionChains(browser).move_to_element(element).perform()
    info = browser.find_element(By.ID, "info").text
    assert section.pcus[i].name in info and section.pcus[i].loc in info

    # searching a model line highlights exactly the units that implement it, in every section
    line = max(
        {p.loc for sec in program.sections for p in sec.pcus if p.loc},
        key=lambda loc: sum(p.loc == loc for sec in program.sections for p in sec.pcus),
    )
    search = browser.find_element(By.ID, "search")
    search.send_keys(line)
    hits = {int(e.get_attribute("data-u")) for e in
            browser.find_elements(By.CSS_SELECTOR, "g.unit.hit")}  # fmt: skip
    at_line = {k for k, u in enumerate(units) if line in u["lines"]}
    own = {placed.index((s, "pcu", i)) for s, sec in enumerate(program.sections)
           for i, p in enumerate(sec.pcus) if p.loc == line}  # fmt: skip
    assert own and own <= hits == at_line
    assert len({units[k]["s"] for k in hits}) > 1  # the forward and its gradient
    count = len(hits)
    assert browser.find_element(By.ID, "hits").text == f"{count} unit{'s' if count > 1 else ''}"
    number = line.rsplit(":", 1)[1]  # the line number alone finds the same units
    search.clear()
    search.send_keys(number)
    assert {int(e.get_attribute("data-u")) for e in
            browser.find_elements(By.CSS_SELECTOR, "g.unit.hit")} == hits  # fmt: skip

    # for a person: the search's units highlighted, the first one clicked (its details kept)
    first = browser.find_element(By.CSS_SELECTOR, "g.unit.hit")
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", first)
    ActionChains(browser).move_to_element(first).click().perform()
    assert (
        units[int(first.get_attribute("data-u"))]["name"]
        in browser.find_element(By.ID, "info").text
    )
    shot = gpt_report.parent / "report.png"
    browser.save_screenshot(str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    print(f"screenshot: {shot}")

    errors = [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
    assert errors == []
