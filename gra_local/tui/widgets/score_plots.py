"""Score plots for the results screen: μ histogram, per-reviewer spread, acceptance rates."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static, TabbedContent, TabPane
from textual_plotext import PlotextPlot

from gra_local.runs.browse import acceptance_by, mean_histogram, reviewer_scores

NO_SCORES = ("no scores yet: no record here was scored by a reviewer (the cheap evidence "
             "decided, or no review ran); each record's reason says what decided it")


def _short(name: str, width: int = 12) -> str:
    return name if len(name) <= width else name[: width - 1] + "…"


class ScorePlots(Vertical):
    """Three tabs of plotext plots, redrawn by `update_plots(records, overrides)`."""

    DEFAULT_CSS = """
    ScorePlots { height: 1fr; }
    ScorePlots TabbedContent { height: 1fr; }
    ScorePlots TabPane { padding: 0; height: 1fr; }
    ScorePlots PlotextPlot { height: 1fr; min-height: 4; }
    ScorePlots .no-scores { padding: 1 2; color: $text-muted; }
    """

    @property
    def tabs(self) -> TabbedContent:
        return self.query_one(TabbedContent)

    def compose(self) -> ComposeResult:
        with TabbedContent(id="plots"):
            with TabPane("Scores", id="plot-scores"):
                yield Static(NO_SCORES, id="hist-empty", classes="no-scores")
                yield PlotextPlot(id="plot-hist")
            with TabPane("Reviewers", id="plot-reviewers"):
                yield Static(NO_SCORES, id="spread-empty", classes="no-scores")
                yield PlotextPlot(id="plot-spread")
            with TabPane("Acceptance", id="plot-acceptance"):
                yield PlotextPlot(id="plot-accept")

    def update_plots(self, records: list[dict], overrides: dict[str, dict]) -> None:
        self._histogram(records)
        self._spread(records)
        self._acceptance(records, overrides)

    def _histogram(self, records: list[dict]) -> None:
        plot = self.query_one("#plot-hist", PlotextPlot)
        plt = plot.plt
        plt.clear_data()
        plt.clear_figure()
        edges, counts = mean_histogram(records)
        self._shown("hist", any(counts))
        plt.bar([f"{e:g}" for e in edges], counts)
        top = max(counts, default=0)
        if 0 < top <= 6:
            plt.yticks(list(range(top + 1)))
        plt.title("μ per record (bins of 1)")
        plot.refresh()

    def _shown(self, plot: str, drawn: bool) -> None:
        """A plot with nothing to draw gives way to a line that says so (no empty axis)."""
        self.query_one(f"#{plot}-empty", Static).display = not drawn
        self.query_one(f"#plot-{plot}", PlotextPlot).display = drawn

    def _spread(self, records: list[dict]) -> None:
        plot = self.query_one("#plot-spread", PlotextPlot)
        plt = plot.plt
        plt.clear_data()
        plt.clear_figure()
        scores = reviewer_scores(records)
        self._shown("spread", bool(scores))
        if scores:
            names = [_short(n) for n in scores]
            lows = [min(v) for v in scores.values()]
            means = [sum(v) / len(v) for v in scores.values()]
            highs = [max(v) for v in scores.values()]
            # plotext takes `labels`; textual-plotext's signature still says `label`
            plt.multiple_bar(names, [lows, means, highs], labels=["min", "mean", "max"])  # type: ignore[call-arg]
            plt.ylim(0, 10)
        plt.title("score per reviewer (min / mean / max)")
        plot.refresh()

    def _acceptance(self, records: list[dict], overrides: dict[str, dict]) -> None:
        plot = self.query_one("#plot-accept", PlotextPlot)
        plt = plot.plt
        plt.clear_data()
        plt.clear_figure()
        rows = [(f"gen:{_short(k, 10)}", v) for k, v in acceptance_by(records, "generator", overrides).items()]
        rows += [(_short(k), v) for k, v in acceptance_by(records, "domain", overrides).items()]
        if rows:
            plt.bar([name for name, _ in rows], [round(100 * v.rate) for _, v in rows])
            plt.ylim(0, 100)
            plt.yticks([0, 25, 50, 75, 100])
        plt.title("acceptance % by generator and domain")
        plot.refresh()
