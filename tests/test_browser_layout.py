"""Every text of every page fits its box at 1280 and 1024 px wide, in Chromium: nothing cut off with an ellipsis or
clipped, no select box or number input too narrow for its value or placeholder, no input pushed out of line by a label
that wraps more than its neighbours', no table cell narrower than its text, no table in a narrow column scrolling
sideways and none as wide as the page scrolling without its first column pinned, no chart axis labels on top of each
other and no chart text cut by the chart's edge (OVERFLOWS says how each is found;
test_the_check_finds_every_kind_of_text_that_does_not_fit plants one of each).

One dashboard serves a copy of the trained data home with a failed run and a second finished run, so that every page
shows real content (the gallery, a face box being fixed, the settings, the confusion matrix, two runs compared, a zip
scored, the model files, an annotated photo). Screenshots of each view go to test-output/browser/layout-*.png (or
$MASKDET_TEST_OUTPUT/browser/).
"""

import copy
import io
import re
import shutil
import zipfile
from pathlib import Path

import pytest

from tests.browser_support import chromium, dashboard, open_page, screenshot_dir, wait_for_script
from tests.conftest import data_home, photo_pairs, two_person_photo

WIDTHS = (1280, 1024)
NOT_IN_NAMES = r"\W+"  # of a view, in a screenshot's file name
PAGES = {  # name: (path, heading)
    "Home": ("", "maskdet: face-mask detection studio"),
    "Dataset": ("/Dataset", "Dataset"),
    "Train": ("/Train", "Train a model"),
    "Metrics": ("/Metrics", "Metrics"),
    "Models": ("/Models", "Models"),
    "Live": ("/Live", "Live"),
}

FAILED = ("The backbone weights file /srv/models/mobilenet_v2.pth does not exist: set MASKDET_BACKBONE_WEIGHTS to a "
          "mobilenet_v2 state_dict and train again.")  # a failed run's error, as the runs tables show it
OVERFLOWS = """() => {
  const problems = [];
  const clean = text => (text || "").replace(/\\s+/g, " ").trim();
  const short = text => { text = clean(text); return text.length > 70 ? text.slice(0, 67) + "..." : text; };
  const shown = el => el.checkVisibility({visibilityProperty: true});
  const main = document.querySelector("[data-testid='stMain']");
  const inside = el => { const box = el.getBoundingClientRect(); const left = box.left + el.clientLeft;
                         return {left, right: left + el.clientWidth}; };
  const widgetOf = el => el.closest("[data-testid^='st']")?.dataset.testid;
  const notText = `svg, .vega-embed, [data-testid='stDataFrame'], iframe, [data-testid='stCode']`;

  // 1. Text cut off: a text's box reaches past an ancestor that hides what overflows it (an ellipsis, or a clip).
  const walker = document.createTreeWalker(main, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const el = node.parentElement;
    if (!clean(node.textContent) || !shown(el) || el.closest(notText)) continue;
    const range = document.createRange();
    range.selectNodeContents(node);
    const text = range.getBoundingClientRect();
    if (!text.width) continue;
    for (let box = el; box && box !== main; box = box.parentElement) {
      const style = getComputedStyle(box);
      if (style.position === "absolute" && box.getBoundingClientRect().width <= 1) break;  // for screen readers only
      if (["auto", "scroll"].includes(style.overflowX)) break;  // it scrolls: nothing is lost
      if (!["hidden", "clip"].includes(style.overflowX) && style.textOverflow !== "ellipsis") continue;
      const edges = inside(box);
      if (text.right > edges.right + 1 || text.left < edges.left - 1) {
        problems.push(`text cut off (${widgetOf(el)}, ${Math.round(text.width)} px of text in `
                      + `${Math.round(edges.right - edges.left)} px): "${short(el.innerText || node.textContent)}"`);
        break;
      }
    }
  }

  // 2. A value wider than its input (a select box's choice, a number), or a placeholder.
  const measure = document.createElement("canvas").getContext("2d");
  for (const input of main.querySelectorAll("input")) {
    if (!["text", "number"].includes(input.type) || !shown(input)) continue;
    const style = getComputedStyle(input);
    measure.font = style.font;
    const room = input.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
    const kind = input.value ? "value" : "placeholder", text = input.value || input.placeholder;
    const width = input.value ? input.scrollWidth : measure.measureText(text || "").width;
    if (text && (input.value ? width > input.clientWidth + 1 : width > room + 1)) {
      const label = input.closest("[data-testid='stElementContainer']")?.querySelector("[data-testid='stWidgetLabel']");
      problems.push(`${kind} cut off (${Math.round(width)} px in ${input.clientWidth} px): "${short(text)}"`
                    + (label ? ` of "${short(label.innerText)}"` : ""));
    }
  }

  // 3. Inputs side by side (in the columns of a row, or a horizontal container) out of line: the label above one
  // wraps onto more lines than its neighbour's and pushes its input down.
  const above = ["stSlider", "stSelectbox", "stNumberInput", "stMultiSelect", "stTextInput", "stSelectSlider",
                 "stDateInput", "stTimeInput", "stTextArea"];
  const inputs = [...main.querySelectorAll("[data-testid='stWidgetLabel']")].filter(label =>
    shown(label) && above.includes(widgetOf(label.parentElement))).map(label => {
      const widget = label.parentElement.closest("[data-testid^='st']");
      return {label, row: widget.closest("[data-testid='stHorizontalBlock']"), box: widget.getBoundingClientRect(),
              bottom: label.getBoundingClientRect().bottom};
    }).filter(input => input.row);
  inputs.forEach((one, i) => inputs.slice(i + 1).forEach(other => {
    const beside = Math.min(one.box.bottom, other.box.bottom) - Math.max(one.box.top, other.box.top)
                   > Math.min(one.box.height, other.box.height) / 2;
    const apart = one.box.right <= other.box.left || other.box.right <= one.box.left;
    const drop = Math.abs(one.bottom - other.bottom);
    if (one.row === other.row && beside && apart && drop > 4) {
      const low = one.bottom > other.bottom ? one : other, high = low === one ? other : one;
      problems.push(`inputs out of line: the label "${short(low.label.innerText)}" pushes its input `
                    + `${Math.round(drop)} px `
                    + `below the one of "${short(high.label.innerText)}"`);
    }
  }));

  // 4. Tables drawn on a canvas (st.dataframe): each header and cell text fits its column, and a table in a narrow
  // column fits it (one as wide as the page may scroll sideways: the page has no more room to give). The columns and
  // the cells are the grid's own (read from its React props); the texts are measured in the grid's font.
  const block = document.querySelector("[data-testid='stMainBlockContainer']"), padding = getComputedStyle(block);
  const page = block.clientWidth - parseFloat(padding.paddingLeft) - parseFloat(padding.paddingRight);
  for (const canvas of main.querySelectorAll("[data-testid='data-grid-canvas']")) {
    if (!shown(canvas)) continue;
    const key = Object.keys(canvas).find(name => name.startsWith("__reactFiber$"));
    let fiber = key && canvas[key];
    while (fiber && !(fiber.memoizedProps?.columns && fiber.memoizedProps?.getCellContent)) fiber = fiber.return;
    if (!fiber) { problems.push("a table whose columns could not be read: this check needs updating"); continue; }
    const grid = fiber.memoizedProps, theme = grid.theme || {}, pad = theme.cellHorizontalPadding ?? 8;
    const family = theme.fontFamily || "sans-serif";
    const total = grid.columns.reduce((sum, column) => sum + column.width, 0);
    const spare = Math.max(0, canvas.clientWidth - total);  // shared out by "grow" when the table is stretched
    if (total > canvas.clientWidth + 1) {
      let left = 0;
      const hidden = grid.columns.filter(column => (left += column.width) > canvas.clientWidth)
        .map(column => column.title);
      if (canvas.clientWidth < 0.9 * page) {
        problems.push(`table scrolls sideways in a column ${canvas.clientWidth} px wide of the page's `
                      + `${Math.round(page)}: "${hidden.join('", "')}" cut off or out of view`);
      } else if (!grid.freezeColumns) {  // full width: it may scroll, keeping each row's name in view
        problems.push(`table scrolls sideways without its first column pinned: "${hidden.join('", "')}" out of view `
                      + `beside no "${grid.columns[0].title}"`);
      }
    }
    const grows = grid.columns.reduce((sum, column) => sum + (column.grow || 0), 0);
    grid.columns.forEach((column, index) => {
      const width = column.width + (grows ? spare * (column.grow || 0) / grows : 0);
      const texts = [[theme.headerFontStyle || "600 13px", column.title]];
      for (let row = 0; row < Math.min(grid.rows, 100); row++) {
        const cell = grid.getCellContent([index, row]);
        if (["text", "number", "uri", "markdown"].includes(cell.kind)) {
          texts.push([theme.baseFontStyle || "13px", String(cell.displayData ?? cell.data ?? ""), cell.allowWrapping]);
        }
      }
      // a wrapping cell holds as many lines as its row is tall (20 px a line), each a little less full than its
      // width (words are not cut)
      const lines = Math.max(1, Math.floor(((typeof grid.rowHeight === "number" ? grid.rowHeight : 35) - 8) / 20));
      const room = width - 2 * pad;
      for (const [font, text, wraps] of texts) {
        measure.font = `${font} ${family}`;
        const inside = measure.measureText(text).width;
        if (wraps ? Math.ceil(inside * 1.15 / room) > lines : inside > room + 1) {
          problems.push(`table cell cut off (${Math.round(inside)} px of text in the ${Math.round(room)} px column `
                        + `"${column.title}"${wraps ? `, on ${lines} lines` : ""}): "${short(text)}"`);
        }
      }
    });
  }

  // 5. Chart texts (Vega draws them as SVG text): axis labels on top of each other, and any text (a legend's, a
  // title) cut by the chart's edge.
  for (const chart of main.querySelectorAll(".vega-embed svg")) {
    if (!shown(chart)) continue;
    const edges = chart.getBoundingClientRect();
    for (const text of chart.querySelectorAll("text")) {
      const box = text.getBoundingClientRect();
      if (!text.textContent || !text.checkVisibility({opacityProperty: true}) || !box.width) continue;
      // a turned text's box spans its font's ascent and descent, a little beyond its ink
      const slack = (text.getAttribute("transform") || "").includes("rotate") ? 4 : 1;
      if (box.left < edges.left - slack || box.right > edges.right + slack) {
        problems.push(`chart text cut by the chart's edge: "${short(text.textContent)}"`);
      }
    }
  }
  for (const axis of main.querySelectorAll(".vega-embed svg .role-axis-label")) {
    const labels = [...axis.querySelectorAll("text")]  // Vega hides a label that would overlap (opacity 0)
      .filter(text => text.checkVisibility({opacityProperty: true}))
      .map(text => [text.textContent, text.getBoundingClientRect()]);
    labels.forEach(([a, one], i) => labels.slice(i + 1).forEach(([b, other]) => {
      const across = Math.min(one.right, other.right) - Math.max(one.left, other.left);
      const down = Math.min(one.bottom, other.bottom) - Math.max(one.top, other.top);
      if (across > 1 && down > 1) problems.push(`chart axis labels overlap: "${a}" and "${b}"`);
    }));
  }
  return problems;
}"""

DRAWN = """() => [...document.querySelectorAll("[data-testid='stMain'] [data-testid='stVegaLiteChart']")].every(
    chart => !chart.checkVisibility() || chart.querySelector("svg, canvas"))
  && [...document.querySelectorAll("[data-testid='stMain'] [data-testid='stDataFrame']")].every(
    table => !table.checkVisibility() || table.querySelector("[data-testid='data-grid-canvas']")?.clientWidth > 0)"""
# (a table's canvas is 0 px wide until the grid has measured its column: on a busy machine, after the 300 ms below)

HEIGHT = """() => Math.max(...[...document.querySelectorAll(
    "[data-testid='stMain'], [data-testid='stMainBlockContainer'], [data-testid='stAppViewContainer']")].map(
    element => element.scrollHeight))"""


@pytest.fixture(scope="module")
def layout_root(trained_home, tmp_path_factory) -> Path:
    """A copy of the trained data home with a failed run (its error is the runs tables' longest note) and a second
    finished run: the first run's files under a new id, with other settings and timings (a copy, not a training: this
    test is about the pages' layout)."""
    from maskdet.core.settings import load_settings
    from maskdet.data.store import Store

    root = tmp_path_factory.mktemp("layout")
    for name in ("home", "models"):
        shutil.copytree(trained_home.root / name, root / name)
    with data_home(root):
        store = Store(load_settings())
        first = store.run(trained_home.run_id)
        store.update_run(first["id"], artefact_dir=str(store.settings.models_dir / first["id"]))
        failed = store.create_run({**first["config"], "seed": 3})
        store.update_run(failed, status="failed", started_at=first["started_at"], finished_at=first["started_at"],
                         error=FAILED)
        second = store.create_run({**first["config"], "seed": 7, "learning_rate": 0.0005})
        shutil.copytree(store.settings.models_dir / first["id"], store.settings.models_dir / second)
        metrics = copy.deepcopy(first["metrics"])
        metrics["onnx"]["ms_per_image_batch1"] = metrics["onnx"]["ms_per_image_batch1"] / 3.5
        metrics["timings"]["total"] = metrics["timings"]["total"] * 1.2
        store.update_run(second, status="succeeded", started_at=first["started_at"],
                         finished_at=first["finished_at"], metrics=metrics, progress=first["progress"],
                         artefact_dir=str(store.settings.models_dir / second))
        store.engine.dispose()
    return root


@pytest.fixture(scope="module")
def server(layout_root):
    with dashboard(layout_root) as server:
        yield server


@pytest.fixture(scope="module")
def browser():
    with chromium() as browser:
        yield browser


def evaluation_zip(shared_data: Path) -> bytes:
    """Two photos of each class the trained home has not seen, as a zip of class folders."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in photo_pairs(shared_data)[:2]:
            for label, file in (("with_mask", f"{name}-with-mask.jpg"), ("without_mask", f"{name}.jpg")):
                archive.writestr(f"{label}/{file}", (shared_data / label / file).read_bytes())
    return buffer.getvalue()


def settle(page) -> None:
    """Wait for the script run to end and for the charts and tables it sent to be drawn."""
    wait_for_script(page)
    page.wait_for_function(DRAWN, timeout=60_000)
    page.wait_for_timeout(300)  # Vega lays its labels out after the first draw


def open_expanders(page) -> None:
    for summary in page.locator("[data-testid='stMain'] [data-testid='stExpander'] summary").all():
        if summary.locator("xpath=..").get_attribute("open") is None:
            summary.click()
    settle(page)


def upload_in_tab(page, tab: str, uploader: str, file: dict) -> None:
    """Open a tab and give a file to the uploader whose label starts with `uploader`."""
    page.get_by_role("tab", name=tab).click()
    field = page.locator("[data-testid='stFileUploader']").filter(has_text=uploader).first
    field.locator("input[type=file]").set_input_files(file)


def reveal(page, name: str, shared_data: Path):
    """What a page shows beyond its first view (each step a view to check): a face box being fixed on Dataset, a
    photo scored on Metrics, a photo annotated on Live."""
    if name == "Dataset":
        page.get_by_text("Select", exact=True).first.click()
        page.get_by_text("The faces MTCNN finds").wait_for(timeout=60_000)
        settle(page)
        yield "face box"
    if name == "Metrics":
        upload_in_tab(page, "Evaluate on new photos", "Zip of class folders",
                      {"name": "new-photos.zip", "mimeType": "application/zip", "buffer": evaluation_zip(shared_data)})
        page.get_by_role("button", name="Evaluate", exact=True).click()
        page.get_by_text("uploaded photos").first.wait_for(timeout=120_000)
        settle(page)
        yield "evaluated"
    if name == "Live":
        upload_in_tab(page, "No camera? Upload a photo or video", "A photo or a short video",
                      {"name": "two-people.jpg", "mimeType": "image/jpeg", "buffer": two_person_photo(shared_data)})
        page.get_by_text("Add to the dataset").first.wait_for(timeout=120_000)
        settle(page)
        yield "photo"


def screenshot(page, path: Path, width: int) -> None:
    """The whole page: the viewport made as tall as the content (Streamlit scrolls inside its own element)."""
    page.set_viewport_size({"width": width, "height": min(12_000, max(900, page.evaluate(HEIGHT)))})
    page.wait_for_timeout(300)
    page.screenshot(path=str(path))
    page.set_viewport_size({"width": width, "height": 900})


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("name", PAGES)
def test_every_text_fits_its_box(server, browser, shared_data, name, width):
    path, heading = PAGES[name]
    context = browser.new_context(viewport={"width": width, "height": 900})
    page = context.new_page()
    problems: dict[str, list[str]] = {}  # problem: the views it was seen in
    try:
        open_page(page, f"{server.url}{path}", heading)
        settle(page)

        def check(view: str) -> None:
            open_expanders(page)
            for problem in page.evaluate(OVERFLOWS):
                problems.setdefault(problem, []).append(view)
            shot = screenshot_dir() / f"layout-{name}-{re.sub(NOT_IN_NAMES, '-', view)}-{width}.png"
            screenshot(page, shot, width)

        tabs = page.locator("[data-testid='stMain'] [role='tab']")
        names = tabs.all_inner_texts()
        check(names[0] if names else "page")
        for index in range(1, len(names)):
            tabs.nth(index).click()
            settle(page)
            check(names[index])
        for view in reveal(page, name, shared_data):
            check(view)
    finally:
        context.close()
    assert not problems, f"{name} at {width} px wide, text that does not fit its box:\n" + "\n".join(
        f"  {problem} [{', '.join(dict.fromkeys(views))}]" for problem, views in problems.items())


PLANTED = """<div data-testid="stMain"><div data-testid="stMainBlockContainer" style="width: 600px; padding: 0">
  <div data-testid="stButton" style="width: 60px"><div data-testid="stMarkdownContainer"
    style="overflow: hidden; text-overflow: ellipsis; white-space: nowrap">Clear selection</div></div>
  <div data-testid="stButton" style="width: 200px"><div data-testid="stMarkdownContainer"
    style="overflow: hidden; text-overflow: ellipsis; white-space: nowrap">Select page</div></div>
  <div data-testid="stElementContainer"><div data-testid="stSelectbox"><div data-testid="stWidgetLabel">Run a</div>
    <input type="text" style="width: 50px" value="20261205-162433-f58f30 (succeeded, accuracy 1.000)"></div></div>
  <div data-testid="stHorizontalBlock" style="display: flex; gap: 16px">
    <div data-testid="stSlider" style="width: 90px"><div data-testid="stWidgetLabel"><p>Class confidence threshold</p>
      </div><div style="height: 30px"></div></div>
    <div data-testid="stSlider" style="width: 90px"><div data-testid="stWidgetLabel"><p>Max faces</p></div>
      <div style="height: 30px"></div></div></div>
  <div data-testid="stDataFrame" style="width: 600px"><canvas data-testid="data-grid-canvas" width="600" height="70"
    style="width: 600px"></canvas></div>
  <div data-testid="stDataFrame" style="width: 600px"><canvas data-testid="data-grid-canvas" width="600" height="70"
    style="width: 600px"></canvas></div>
  <div class="vega-embed"><svg width="200" height="100"><g class="role-axis-label">
    <text x="10" y="50">with_mask</text><text x="40" y="50">without_mask</text></g>
    <text x="180" y="90">validation</text></svg></div>
</div></div>"""

GRID = """() => {  // the props a glide grid's canvas carries in a Streamlit page, for check 4
  const [cut, wide] = document.querySelectorAll("canvas");
  cut.__reactFiber$planted = {memoizedProps: {
    rows: 1, theme: {cellHorizontalPadding: 8, fontFamily: "sans-serif", baseFontStyle: "14px"},
    columns: [{title: "run", width: 200, grow: 0}, {title: "note", width: 150, grow: 0}],
    getCellContent: ([column, row]) => ({kind: "text", displayData: ["20261205-165647-da312e",
      "The backbone weights file does not exist: set MASKDET_BACKBONE_WEIGHTS"][column]})}};
  wide.__reactFiber$planted = {memoizedProps: {  // as wide as the page, scrolling, its run column not pinned
    rows: 1, freezeColumns: 0, columns: [{title: "run", width: 400}, {title: "settings", width: 400}],
    getCellContent: ([column, row]) => ({kind: "text", displayData: ["20261205-165647-da312e", "lr 0.001"][column]})}};
}"""


def test_the_check_finds_every_kind_of_text_that_does_not_fit(browser):
    """Planted on a page of Streamlit's element names: a cut button label, a value wider than its select box, an input
    pushed out of line, a table cell cut, a full-width table scrolling with no pinned column, two axis labels on top of
    each other and a legend cut by its chart. What fits (a short button label, the table's run ids) is not named."""
    context = browser.new_context(viewport={"width": 1024, "height": 900})
    page = context.new_page()
    try:
        page.set_content(PLANTED)
        page.evaluate(GRID)
        problems = "\n".join(page.evaluate(OVERFLOWS))
    finally:
        context.close()
    for found in ('text cut off (stMarkdownContainer', '"Clear selection"', 'value cut off', 'of "Run a"',
                  'inputs out of line: the label "Class confidence threshold"', 'column "note"): "The backbone',
                  'chart axis labels overlap: "with_mask" and "without_mask"',
                  'chart text cut by the chart\'s edge: "validation"',
                  'table scrolls sideways without its first column pinned: "settings" out of view'):
        assert found in problems, f"{found!r} not in:\n{problems}"
    assert "Select page" not in problems and "20261205-165647-da312e" not in problems
