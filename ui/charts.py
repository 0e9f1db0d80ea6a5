"""Charts the pages share."""

import altair as alt
import pandas as pd

from maskdet.runs.views import confusion_cells

CURVE_SCHEME = "category10"  # train and validation (or two runs) in blue and orange; Streamlit's default: two blues
LINE_SCHEME = "dark2"  # classes and measures: hues apart from the training curves' colours
# A class name's line breaks on a confusion matrix's predicted axis: a name wider than its column (at LABEL_CHAR_PX a
# character) breaks after each "_", "-" or space; a line still wider than its column ends in "…" (labelLimit), the
# cells' tooltips name the classes in full. Labels never run into each other, at any width.
LABEL_CHAR_PX = 7  # class names measure 4.9-5.5 px a character in 10 px sans-serif (Chromium), "mmm" 8.3: room to spare
COLUMN_ROOM = "(bandwidth('x') - 8)"  # a predicted class's column, less the space between labels
CLASS_LINES = (f"length(datum.label) * {LABEL_CHAR_PX} > {COLUMN_ROOM} "
               "? split(replace(datum.label, regexp('[_ -]', 'g'), '$&\\n'), '\\n') : datum.label")
CLASS_LIMIT = {"expr": f"max({COLUMN_ROOM}, 12)"}


def below(long_names: bool = False) -> alt.Legend:
    """A legend under its chart, so that a narrow column keeps its width for the chart; its entries side by side, or
    one under the other when their names are long (run ids, a class with its AUC)."""
    return alt.Legend(orient="bottom", direction="vertical" if long_names else "horizontal")


def curves_chart(points: list[dict], metric: str, color: str = "split", dash: str | None = None) -> alt.Chart:
    """Train and validation curves of one metric per epoch; a grey rule where fine-tuning starts."""
    data = pd.DataFrame([p for p in points if p["metric"] == metric])
    encoding = {"x": alt.X("epoch:Q", title="epoch", axis=alt.Axis(tickMinStep=1)),
                "y": alt.Y("value:Q", title=metric, scale=alt.Scale(zero=False)),
                "color": alt.Color(f"{color}:N", title=None, scale=alt.Scale(scheme=CURVE_SCHEME),
                                   legend=below(color == "run")),  # below: the lines keep a narrow column's width
                "tooltip": [alt.Tooltip(f, title=f) for f in data.columns if f not in ("metric",)]}
    if dash:
        encoding["strokeDash"] = alt.StrokeDash(f"{dash}:N", title=None, legend=below(True))
    chart = alt.Chart(data, title=metric).mark_line(point=True).encode(**encoding)
    starts = data[data["stage"] == "finetune"].groupby(color)["epoch"].min().reset_index() if len(data) else data
    if len(starts):
        starts["epoch"] = starts["epoch"] - 0.5
        chart += alt.Chart(starts).mark_rule(color="grey", strokeDash=[4, 4]).encode(
            x="epoch:Q", tooltip=[alt.Tooltip("epoch:Q", title="fine-tuning starts after epoch")])
    # the legends below take about 80 px of it, one under the other: side by side they may not fit a narrow column
    return chart.properties(height=340).configure_legend(
        layout=alt.ExprRef(expr="{bottom: {direction: 'vertical', anchor: 'start'}}"))


def confusion_chart(labels: list[str], matrix: list[list[int]]) -> alt.Chart:
    """Counts by true class (rows) and predicted class (columns), shaded by the share of the true class. The column
    labels stay level and apart however narrow the chart (CLASS_LINES); the legend sits below."""
    data = pd.DataFrame(confusion_cells({"labels": labels, "confusion_matrix": matrix}))
    base = alt.Chart(data).encode(
        x=alt.X("predicted:N", sort=labels, title="predicted",
                axis=alt.Axis(labelAngle=0, labelExpr=CLASS_LINES, labelLimit=CLASS_LIMIT, labelPadding=4)),
        y=alt.Y("true:N", sort=labels, title="true", axis=alt.Axis(labelLimit=100)))
    cells = base.mark_rect().encode(
        color=alt.Color("share:Q", scale=alt.Scale(scheme="blues", domain=[0, 1]), title="share of true class",
                        legend=alt.Legend(orient="bottom", direction="horizontal", gradientLength=100)),
        tooltip=["true", "predicted", "count", alt.Tooltip("share:Q", format=".1%")])
    text = base.mark_text(fontSize=18).encode(
        text="count:Q", color=alt.condition(alt.datum.share > 0.5, alt.value("white"), alt.value("black")))
    return (cells + text).properties(height=120 + 70 * len(labels))  # the legend below takes about 60 px
