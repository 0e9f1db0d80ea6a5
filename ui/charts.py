"""Charts the pages share."""

import altair as alt
import pandas as pd

from maskdet.runs.views import confusion_cells

CURVE_SCHEME = "category10"  # train and validation (or two runs) in blue and orange; Streamlit's default: two blues
LINE_SCHEME = "dark2"  # classes and measures: hues apart from the training curves' colours


def curves_chart(points: list[dict], metric: str, color: str = "split", dash: str | None = None) -> alt.Chart:
    """Train and validation curves of one metric per epoch; a grey rule where fine-tuning starts."""
    data = pd.DataFrame([p for p in points if p["metric"] == metric])
    encoding = {"x": alt.X("epoch:Q", title="epoch", axis=alt.Axis(tickMinStep=1)),
                "y": alt.Y("value:Q", title=metric, scale=alt.Scale(zero=False)),
                "color": alt.Color(f"{color}:N", title=None, scale=alt.Scale(scheme=CURVE_SCHEME)),
                "tooltip": [alt.Tooltip(f, title=f) for f in data.columns if f not in ("metric",)]}
    if dash:
        encoding["strokeDash"] = alt.StrokeDash(f"{dash}:N", title=None)
    chart = alt.Chart(data, title=metric).mark_line(point=True).encode(**encoding)
    starts = data[data["stage"] == "finetune"].groupby(color)["epoch"].min().reset_index() if len(data) else data
    if len(starts):
        starts["epoch"] = starts["epoch"] - 0.5
        chart += alt.Chart(starts).mark_rule(color="grey", strokeDash=[4, 4]).encode(
            x="epoch:Q", tooltip=[alt.Tooltip("epoch:Q", title="fine-tuning starts after epoch")])
    return chart.properties(height=260)


def confusion_chart(labels: list[str], matrix: list[list[int]]) -> alt.Chart:
    """Counts by true class (rows) and predicted class (columns), shaded by the share of the true class."""
    data = pd.DataFrame(confusion_cells({"labels": labels, "confusion_matrix": matrix}))
    base = alt.Chart(data).encode(x=alt.X("predicted:N", sort=labels, title="predicted", axis=alt.Axis(labelAngle=0)),
                                  y=alt.Y("true:N", sort=labels, title="true"))
    cells = base.mark_rect().encode(
        color=alt.Color("share:Q", scale=alt.Scale(scheme="blues", domain=[0, 1]), title="share of true class"),
        tooltip=["true", "predicted", "count", alt.Tooltip("share:Q", format=".1%")])
    text = base.mark_text(fontSize=18).encode(
        text="count:Q", color=alt.condition(alt.datum.share > 0.5, alt.value("white"), alt.value("black")))
    return (cells + text).properties(height=60 + 70 * len(labels))
