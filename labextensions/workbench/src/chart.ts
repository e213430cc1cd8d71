import uPlot from 'uplot';

/** One point of a chart: x (a step, or a time in seconds since the epoch) and its value. */
export interface IChartPoint {
  x: number;
  y: number;
}

/** How a chart reads its x axis. */
export interface IChartOptions {
  /** The x axis holds times (seconds since the epoch), shown as clock times. */
  time?: boolean;
  /** The x axis's name in the last-value line: "at step 3". Default "step". */
  xLabel?: string;
  /** Unit after the last value, e.g. " ms". */
  unit?: string;
  /** An extra class of the chart's node (the panels' own selectors). */
  className?: string;
  /** The title shown above the chart; default: its name. */
  title?: string;
}

/**
 * A line chart of one series (uPlot), drawn by the Training and Deploy panels alike: a
 * title with the last value, and the line. `data-metric` names it, `data-points` counts
 * its points.
 */
export class MetricChart {
  constructor(
    readonly name: string,
    parent: HTMLElement,
    private _options: IChartOptions = {}
  ) {
    this.node = document.createElement('div');
    this.node.className = 'jp-WorkbenchChart';
    if (_options.className) {
      this.node.classList.add(_options.className);
    }
    this.node.dataset.metric = name;
    const title = document.createElement('div');
    title.className = 'jp-WorkbenchChart-title';
    title.textContent = _options.title || name;
    this._last = document.createElement('span');
    this._last.className = 'jp-WorkbenchChart-last';
    title.appendChild(this._last);
    this._plotNode = document.createElement('div');
    this._plotNode.className = 'jp-WorkbenchChart-plot';
    this.node.append(title, this._plotNode);
    parent.appendChild(this.node);
  }

  update(points: IChartPoint[]): void {
    const sorted = [...points].sort((a, b) => a.x - b.x);
    const data: uPlot.AlignedData = [
      sorted.map(p => p.x),
      sorted.map(p => p.y)
    ];
    const last = sorted[sorted.length - 1];
    this._last.textContent = last ? ` ${this._lastText(last)}` : '';
    this.node.dataset.points = String(sorted.length);
    if (this._plot) {
      this._plot.setData(data);
      this._fitTime(sorted);
      return;
    }
    const style = getComputedStyle(document.body);
    const color = (name: string, fallback: string) =>
      style.getPropertyValue(name).trim() || fallback;
    const axisColor = color('--jp-ui-font-color2', '#666');
    const gridColor = color('--jp-border-color2', '#ddd');
    const axis = {
      stroke: axisColor,
      grid: { stroke: gridColor, width: 1 },
      ticks: { stroke: gridColor, width: 1 }
    };
    const time = !!this._options.time;
    this._plot = new uPlot(
      {
        width: this._width(),
        height: 180,
        scales: { x: { time } },
        legend: { show: false },
        cursor: { drag: { x: true, y: false } },
        series: [
          { label: time ? 'time' : this._options.xLabel || 'step' },
          {
            label: this.name,
            stroke: color('--jp-brand-color1', '#1976d2'),
            width: 2,
            points: { show: sorted.length < 50 }
          }
        ],
        axes: [axis, axis]
      },
      data,
      this._plotNode
    );
    this._fitTime(sorted);
  }

  /** A time axis spans its points; one point gets a minute either side, not uPlot's years. */
  private _fitTime(sorted: IChartPoint[]): void {
    if (!this._plot || !this._options.time || !sorted.length) {
      return;
    }
    const min = sorted[0].x;
    const max = sorted[sorted.length - 1].x;
    this._plot.setScale(
      'x',
      min === max ? { min: min - 60, max: max + 60 } : { min, max }
    );
  }

  resize(): void {
    this._plot?.setSize({ width: this._width(), height: 180 });
  }

  dispose(): void {
    this._plot?.destroy();
    this.node.remove();
  }

  readonly node: HTMLElement;

  private _lastText(last: IChartPoint): string {
    const value = `${last.y}${this._options.unit || ''}`;
    if (this._options.time) {
      return `${value} at ${new Date(last.x * 1000).toLocaleTimeString()}`;
    }
    return `${value} at ${this._options.xLabel || 'step'} ${last.x}`;
  }

  private _width(): number {
    return Math.max(240, (this.node.clientWidth || 400) - 8);
  }

  private _plot: uPlot | null = null;
  private _plotNode: HTMLElement;
  private _last: HTMLElement;
}

/** One series of a chart of several: its name, points and colour. */
export interface IChartSeries {
  label: string;
  points: IChartPoint[];
  /** A CSS colour; default: the palette's, by the series' place. */
  color?: string;
}

/** How a chart of several series draws them. */
export interface ISeriesChartOptions {
  /** An extra class of the chart's node (the panels' own selectors). */
  className?: string;
  /** The title shown above the chart; default: its name. */
  title?: string;
  /** The x axis's name. Default "step". */
  xLabel?: string;
  /** Points only (a scatter); default: lines through the points (curves). */
  scatter?: boolean;
  /** The x axis on a logarithmic scale (values > 0). */
  log?: boolean;
  /** The x values are the indices of these names (a categorical axis). */
  categories?: string[];
}

/** The height of a chart of several series, in pixels. */
const CHART_HEIGHT = 200;

/** Distinct colours of series, in order (Tableau 10). */
export const SERIES_COLORS = [
  '#4e79a7',
  '#f28e2b',
  '#e15759',
  '#76b7b2',
  '#59a14f',
  '#edc948',
  '#b07aa1',
  '#ff9da7',
  '#9c755f',
  '#bab0ac'
];

/**
 * A chart of several series (uPlot): curves overlaid on one x axis, or a scatter of points.
 * A legend names the series. `data-metric` names it, `data-series` counts the series and
 * `data-points` all their points.
 */
export class SeriesChart {
  constructor(
    readonly name: string,
    parent: HTMLElement,
    private _options: ISeriesChartOptions = {}
  ) {
    this.node = document.createElement('div');
    this.node.className = 'jp-WorkbenchChart';
    if (_options.className) {
      this.node.classList.add(_options.className);
    }
    this.node.dataset.metric = name;
    const title = document.createElement('div');
    title.className = 'jp-WorkbenchChart-title';
    title.textContent = _options.title || name;
    this._plotNode = document.createElement('div');
    this._plotNode.className = 'jp-WorkbenchChart-plot';
    this.node.append(title, this._plotNode);
    parent.appendChild(this.node);
  }

  /** Draw these series (the plot is made again when their names change). */
  update(series: IChartSeries[]): void {
    // one x array for all series, sorted (equal x values may repeat: a scatter's points
    // each keep their own place), each series null where the point is another's
    const all: { x: number; y: number; s: number }[] = [];
    series.forEach((one, s) => {
      for (const p of one.points) {
        if (Number.isFinite(p.x) && Number.isFinite(p.y)) {
          all.push({ x: p.x, y: p.y, s });
        }
      }
    });
    all.sort((a, b) => a.x - b.x || a.s - b.s);
    const scatter = !!this._options.scatter;
    let xs: number[];
    let ys: (number | null)[][];
    if (scatter) {
      xs = all.map(p => p.x);
      ys = series.map((_, s) => all.map(p => (p.s === s ? p.y : null)));
    } else {
      // curves: one place per distinct x, so that each series' line joins its points
      xs = Array.from(new Set(all.map(p => p.x)));
      const at = new Map(xs.map((x, i) => [x, i]));
      ys = series.map(() => xs.map(() => null));
      for (const p of all) {
        ys[p.s][at.get(p.x) as number] = p.y;
      }
    }
    this.node.dataset.series = String(series.length);
    this.node.dataset.points = String(all.length);
    const data = [xs, ...ys] as uPlot.AlignedData;
    const key = series
      .map(s => `${s.label}\u0000${s.color || ''}`)
      .join('\u0001');
    if (this._plot && key === this._key) {
      this._plot.setData(data);
      return;
    }
    this._plot?.destroy();
    this._key = key;
    this._plot = new uPlot(this._config(series), data, this._plotNode);
  }

  resize(): void {
    this._plot?.setSize({ width: this._width(), height: CHART_HEIGHT });
  }

  dispose(): void {
    this._plot?.destroy();
    this.node.remove();
  }

  readonly node: HTMLElement;

  private _config(series: IChartSeries[]): uPlot.Options {
    const style = getComputedStyle(document.body);
    const color = (name: string, fallback: string) =>
      style.getPropertyValue(name).trim() || fallback;
    const axisColor = color('--jp-ui-font-color2', '#666');
    const gridColor = color('--jp-border-color2', '#ddd');
    const axis: uPlot.Axis = {
      stroke: axisColor,
      grid: { stroke: gridColor, width: 1 },
      ticks: { stroke: gridColor, width: 1 }
    };
    const { scatter, log, categories } = this._options;
    const xAxis: uPlot.Axis = { ...axis };
    const xScale: uPlot.Scale = { time: false };
    if (categories) {
      const n = categories.length;
      xAxis.splits = () => categories.map((_, i) => i);
      xAxis.values = (_u, splits) =>
        splits.map(v => (Number.isInteger(v) ? (categories[v] ?? '') : ''));
      xScale.range = () => [-0.5, Math.max(0.5, n - 0.5)];
    } else if (log) {
      xScale.distr = 3;
    }
    return {
      width: this._width(),
      height: CHART_HEIGHT,
      scales: { x: xScale },
      legend: { show: true, live: false },
      cursor: { drag: { x: true, y: false } },
      series: [
        { label: this._options.xLabel || 'step' },
        ...series.map((one, i) => {
          const stroke = one.color || SERIES_COLORS[i % SERIES_COLORS.length];
          const options: uPlot.Series = {
            label: one.label,
            stroke,
            width: scatter ? 0 : 2,
            spanGaps: !scatter,
            points: scatter
              ? { show: true, size: 8, fill: stroke, stroke }
              : { show: one.points.length < 50 }
          };
          if (scatter) {
            options.paths = () => null;
          }
          return options;
        })
      ],
      axes: [xAxis, axis]
    };
  }

  private _width(): number {
    return Math.max(240, (this.node.clientWidth || 400) - 8);
  }

  private _plot: uPlot | null = null;
  private _key = '';
  private _plotNode: HTMLElement;
}
