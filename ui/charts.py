"""Charts the pages share."""

import altair as alt
import pandas as pd

CURVE_SCHEME = "category10"  # train and validation (or two runs) in blue and orange; Streamlit's default: two blues


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
