/**
 * Runs side by side: their parameters and final metrics in one table, differences marked,
 * and each metric's curves overlaid in one chart.
 */

import { SeriesChart } from '../chart';
import { button, el, messageOf, stateBadge } from '../dom';
import { requestAPI } from '../handler';
import { IJob, IJobVersion, jobPath, trainingIcon } from '../training';
import { PollingWidget } from '../widget';
import {
  compare,
  CompareSelection,
  formatValue,
  IComparison,
  IRunRef,
  MAX_COMPARE_RUNS,
  parseRunKey,
  runKey
} from './model';

const ACTIVE_REFRESH_MS = 5000;
const ACTIVE_RUN_STATES = new Set([
  'queued',
  'starting',
  'running',
  'stopping'
]);

/** What a comparison view asks of the application. */
export interface ICompareViewActions {
  openJob(owner: string, name: string, version?: number): void;
  tensorboard(body: { runs: IRunRef[] }, label: string): void;
}

/**
 * A comparison of runs: pick any versions of any jobs (or a search's trials), see their
 * parameters and final metrics in one table, rows that differ marked, and the metrics'
 * curves overlaid; TensorBoard over them.
 */
export class CompareView extends PollingWidget {
  constructor(
    selection: CompareSelection,
    private _actions: ICompareViewActions
  ) {
    super('jp-WorkbenchTraining');
    this.id = 'jp-workbench-compare';
    this.addClass('jp-WorkbenchTraining-job');
    this.addClass('jp-WorkbenchExperiments-compare');
    this.title.label = 'Compare runs';
    this.title.caption = 'Runs side by side: parameters, final metrics, curves';
    this.title.icon = trainingIcon;
    this.title.closable = true;
    this.node.innerHTML = `
      <header class="jp-WorkbenchTraining-jobHeader">
        <h2 class="jp-WorkbenchTraining-title">Compare runs</h2>
        <span class="jp-WorkbenchTraining-hint" data-field="what"></span>
      </header>
      <div class="jp-WorkbenchTraining-error" hidden></div>
      <div class="jp-WorkbenchExperiments-picker">
        <div class="jp-WorkbenchExperiments-chips" data-field="runs"></div>
        <label>Add versions of
          <select class="jp-mod-styled" name="pick-job"></select>
        </label>
        <span class="jp-WorkbenchExperiments-versions" data-field="versions"></span>
      </div>
      <div class="jp-WorkbenchTraining-jobActions"></div>
      <div class="jp-WorkbenchExperiments-tableWrap">
        <table class="jp-WorkbenchExperiments-compareTable"><thead></thead><tbody></tbody></table>
      </div>
      <div class="jp-WorkbenchTraining-empty" data-field="empty" hidden>Pick two runs or more:
      versions of a job above, or trials in a search's view.</div>
      <div class="jp-WorkbenchTraining-charts"></div>`;
    const tensorboard = button('TensorBoard', 'tensorboard', 'reject');
    tensorboard.title = "Open TensorBoard over these runs' event files";
    tensorboard.onclick = () => {
      const runs = this._comparison?.runs || [];
      if (runs.length) {
        this._actions.tensorboard(
          {
            runs: runs.map(r => ({
              owner: r.owner,
              name: r.name,
              version: r.version
            }))
          },
          runs.length === 1 ? runs[0].label : `${runs.length} runs`
        );
      }
    };
    const onlyLabel = el('label', 'jp-WorkbenchExperiments-only');
    const only = el('input');
    only.type = 'checkbox';
    only.name = 'only-differences';
    only.onchange = () => {
      this.node.dataset.onlyDifferences = String(only.checked);
    };
    onlyLabel.append(only, document.createTextNode(' only differences'));
    const refresh = button('Refresh', 'refresh', 'reject');
    refresh.onclick = () => void this.refresh();
    this._q('.jp-WorkbenchTraining-jobActions').append(
      tensorboard,
      refresh,
      onlyLabel
    );
    this._select('pick-job').onchange = () => void this._showVersions();
    this._resizeObserver = new ResizeObserver(() => {
      this._charts.forEach(chart => chart.resize());
    });
    this._resizeObserver.observe(this._q('.jp-WorkbenchTraining-charts'));
    void this._loadJobs();
    this.select(selection);
  }

  /** Compare these runs (or a search's trials) now. */
  select(selection: CompareSelection): void {
    this._selection =
      'runs' in selection ? { runs: unique(selection.runs) } : selection;
    void this.refresh();
  }

  /** The runs compared, as owner/name/version. */
  get runs(): string[] {
    if ('runs' in this._selection) {
      return this._selection.runs;
    }
    return (this._comparison?.runs || []).map(runKey);
  }

  /** The comparison as last loaded. */
  get comparison(): IComparison | null {
    return this._comparison;
  }

  async refresh(): Promise<void> {
    const selection = this._selection;
    this._showSelection();
    if ('runs' in selection && !selection.runs.length) {
      this._comparison = null;
      this._showComparison(null);
      this._showError('');
      return;
    }
    let comparison: IComparison;
    try {
      comparison = await compare(selection);
    } catch (error) {
      this._showError(messageOf(error));
      return;
    }
    if (this.isDisposed || selection !== this._selection) {
      return;
    }
    this._showError('');
    this._comparison = comparison;
    this._showSelection();
    this._showComparison(comparison);
    void this._showVersions();
    this._schedule(
      comparison.runs.some(r => ACTIVE_RUN_STATES.has(r.state))
        ? ACTIVE_REFRESH_MS
        : 0
    );
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    this._resizeObserver.disconnect();
    for (const chart of this._charts.values()) {
      chart.dispose();
    }
    super.dispose();
  }

  /** Add or take away a run; the comparison follows. */
  private _toggle(key: string, on: boolean): void {
    const runs = this.runs.filter(r => r !== key);
    if (on) {
      runs.push(key);
    }
    if (runs.length > MAX_COMPARE_RUNS) {
      this._showError(
        `Compare at most ${MAX_COMPARE_RUNS} runs at once: take some away first.`
      );
      void this._showVersions();
      return;
    }
    this.select({ runs });
  }

  private _showSelection(): void {
    const selection = this._selection;
    this._q('[data-field="what"]').textContent =
      'search' in selection
        ? `the trials of search ${selection.search}`
        : `${selection.runs.length} run(s)`;
    const labels = new Map(
      (this._comparison?.runs || []).map(r => [runKey(r), r.label])
    );
    const chips = this.runs.map(key => {
      const chip = el('span', 'jp-WorkbenchExperiments-chip');
      chip.dataset.run = key;
      chip.append(el('span', '', labels.get(key) || key));
      const remove = button('×', 'remove-run', 'reject');
      remove.title = `Take ${key} out of the comparison`;
      remove.onclick = () => this._toggle(key, false);
      chip.appendChild(remove);
      return chip;
    });
    this._q('[data-field="runs"]').replaceChildren(...chips);
  }

  private _showComparison(comparison: IComparison | null): void {
    const runs = comparison?.runs || [];
    this._q('[data-field="empty"]').hidden = runs.length > 1;
    const head = el('tr');
    head.appendChild(el('th', '', ''));
    runs.forEach((run, i) => {
      const th = el('th', 'jp-WorkbenchExperiments-run');
      th.dataset.run = String(i);
      th.dataset.key = runKey(run);
      const label = el('a', 'jp-WorkbenchExperiments-runLabel', run.label);
      label.href = '#';
      label.title = `Open ${runKey(run)}`;
      label.onclick = event => {
        event.preventDefault();
        this._actions.openJob(run.owner, run.name, run.version);
      };
      th.append(
        label,
        el('br'),
        stateBadge('jp-WorkbenchTraining-state', run.state)
      );
      head.appendChild(th);
    });
    this._q('.jp-WorkbenchExperiments-compareTable thead').replaceChildren(
      head
    );
    const rows: HTMLElement[] = [];
    const section = (title: string) => {
      const row = el('tr', 'jp-WorkbenchExperiments-section');
      const th = el('th', '', title);
      th.colSpan = runs.length + 1;
      row.appendChild(th);
      return row;
    };
    const line = (
      kind: 'parameter' | 'metric' | 'trial',
      name: string,
      value: (i: number) => unknown
    ) => {
      const row = el('tr', 'jp-WorkbenchExperiments-row');
      row.dataset.kind = kind;
      row.dataset.name = name;
      const differs = !!comparison?.differs[name];
      row.dataset.differs = String(differs);
      row.classList.toggle('jp-mod-differs', differs);
      row.appendChild(el('th', '', name));
      runs.forEach((_, i) => {
        const v = value(i);
        const td = el('td', '', formatValue(v));
        td.dataset.run = String(i);
        td.dataset.value = JSON.stringify(v ?? null);
        td.title = v === undefined ? 'not set in this run' : JSON.stringify(v);
        row.appendChild(td);
      });
      return row;
    };
    if (comparison && runs.length) {
      rows.push(section('Parameters'));
      for (const name of comparison.parameters) {
        rows.push(line('parameter', name, i => runs[i].hyperparameters[name]));
      }
      rows.push(section('Final metrics'));
      for (const name of comparison.metrics) {
        rows.push(line('metric', name, i => runs[i].final[name]));
      }
      if (runs.some(r => r.trial)) {
        rows.push(section('Trial'));
        rows.push(
          line('trial', 'trial', i =>
            runs[i].trial
              ? `search ${runs[i].trial?.search} trial ${runs[i].trial?.number} (${runs[i].trial?.state})`
              : undefined
          )
        );
      }
    }
    this._q('.jp-WorkbenchExperiments-compareTable tbody').replaceChildren(
      ...rows
    );
    this._showCurves(comparison);
  }

  private _showCurves(comparison: IComparison | null): void {
    const parent = this._q('.jp-WorkbenchTraining-charts');
    const curves = comparison?.curves || {};
    for (const [name, chart] of this._charts) {
      if (!(name in curves)) {
        chart.dispose();
        this._charts.delete(name);
      }
    }
    if (!comparison) {
      return;
    }
    for (const [name, lines] of Object.entries(curves)) {
      let chart = this._charts.get(name);
      if (!chart) {
        chart = new SeriesChart(name, parent, {
          className: 'jp-WorkbenchExperiments-chart'
        });
        this._charts.set(name, chart);
      }
      chart.update(
        lines.map(line => ({
          label: comparison.runs[line.run]?.label || `run ${line.run}`,
          points: line.points.map(([x, y]) => ({ x, y }))
        }))
      );
    }
  }

  /** The jobs to pick versions of (the user's and their workspaces'). */
  private async _loadJobs(): Promise<void> {
    let jobs: IJob[];
    try {
      jobs = await requestAPI<IJob[]>('training/jobs');
    } catch (error) {
      this._showError(`Jobs: ${messageOf(error)}`);
      return;
    }
    const select = this._select('pick-job');
    const chosen = select.value;
    select.replaceChildren(
      new Option('a job…', ''),
      ...jobs.map(
        j => new Option(`${j.owner}/${j.name}`, `${j.owner}/${j.name}`)
      )
    );
    select.value = chosen;
  }

  /** The chosen job's versions as boxes to tick. */
  private async _showVersions(): Promise<void> {
    const value = this._select('pick-job').value;
    const parent = this._q('[data-field="versions"]');
    if (!value) {
      parent.replaceChildren();
      return;
    }
    const [owner, name] = value.split('/');
    let versions: IJobVersion[];
    try {
      const job = await requestAPI<IJob>(jobPath(owner, name));
      versions = job.versions || [];
    } catch (error) {
      this._showError(messageOf(error));
      return;
    }
    if (this._select('pick-job').value !== value) {
      return;
    }
    const runs = new Set(this.runs);
    parent.replaceChildren(
      ...versions.map(v => {
        const key = runKey(v);
        const label = el('label', 'jp-WorkbenchExperiments-version');
        const box = el('input');
        box.type = 'checkbox';
        box.name = 'pick-version';
        box.value = key;
        box.checked = runs.has(key);
        box.onchange = () => this._toggle(key, box.checked);
        label.append(box, document.createTextNode(` v${v.version}`));
        label.title = `${key}: ${v.state}`;
        return label;
      })
    );
  }

  private _selection: CompareSelection = { runs: [] };
  private _comparison: IComparison | null = null;
  private _charts = new Map<string, SeriesChart>();
  private _resizeObserver: ResizeObserver;
}

function unique(values: string[]): string[] {
  return Array.from(new Set(values));
}

/** The runs of a job's latest versions, at most as many as a comparison holds. */
export function latestRuns(versions: IJobVersion[]): string[] {
  return versions
    .map(v => runKey(v))
    .sort((a, b) => parseRunKey(a).version - parseRunKey(b).version)
    .slice(-MAX_COMPARE_RUNS);
}
