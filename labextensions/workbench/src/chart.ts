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
