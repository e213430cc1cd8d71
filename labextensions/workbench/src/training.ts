import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { CommandToolbarButton, ICommandPalette } from '@jupyterlab/apputils';
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';
import { LabIcon } from '@jupyterlab/ui-components';
import { Widget } from '@lumino/widgets';

import { MetricChart } from './chart';
import {
  button,
  byNewest,
  el,
  factRows,
  field,
  formatTime,
  hasOptions,
  messageOf,
  stateBadge,
  wholeNumber
} from './dom';
import { requestAPI, WorkbenchError } from './handler';
import { describeFlavor, IFlavor } from './models';
import { DomWidget, MainAreaTabs, PollingWidget, SidebarPanel } from './widget';

/** The commands of the training panel. */
namespace CommandIDs {
  export const open = 'workbench:open-training';
  export const submit = 'workbench:submit-training-job';
}

const CATEGORY = 'Workbench';
/** How often the list and an open job refresh while something runs. */
const ACTIVE_REFRESH_MS = 3000;
const IDLE_REFRESH_MS = 30_000;
/** How long to wait before following a log again when its stream broke off. */
const FOLLOW_RETRY_MS = 2000;
/** The most log text a job view keeps (the oldest goes first). */
const LOG_LIMIT = 2_000_000;
const ACTIVE_STATES = new Set(['queued', 'starting', 'running', 'stopping']);

const TRAINING_SVG = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24" width="16">
  <g class="jp-icon3" fill="#616161">
    <path d="M3 19h18v2H3z"/>
    <path d="M4 16.5l5-6 4 3.5 6.5-8 1.5 1.2-7.8 9.6-4-3.5-3.7 4.4z"/>
  </g></svg>`;

export const trainingIcon = new LabIcon({
  name: 'ai-workbench-lab:training',
  svgstr: TRAINING_SVG
});

/** A metric the platform reads from a job's log lines. */
export interface IMetricSpec {
  name: string;
  regex: string;
}

/** A version's spec, as the platform keeps it. */
export interface IJobSpec {
  source?: { kind: string; entry?: string };
  command?: string;
  runtime?: string;
  image?: string;
  flavor?: string;
  nodes?: number;
  processes_per_node?: number;
  hyperparameters?: Record<string, unknown>;
  metrics?: IMetricSpec[];
  max_run_seconds?: number;
  max_restarts?: number;
}

/** One node of a running version. */
export interface INodeState {
  rank: number;
  state: string;
  exit_code: number | null;
  reason: string;
}

/** A version of a job: one run. */
export interface IJobVersion {
  owner: string;
  name: string;
  version: number;
  state: string;
  reason: string;
  queue_position: number | null;
  spec: IJobSpec;
  nodes: INodeState[];
  restarts: number;
  created: string;
  started: string | null;
  finished: string | null;
  output_path: string;
}

/** A job (GET training/jobs; with its versions from GET training/jobs/owner/name). */
export interface IJob {
  owner: string;
  name: string;
  description: string;
  workspace: string;
  created: string;
  latest: number;
  state: string;
  reason: string;
  versions?: IJobVersion[];
}

/** A metric's points. */
export interface IMetricPoint {
  step: number;
  value: number;
  time?: string;
  source?: string;
}

/** GET training/options: what the submit form offers. */
export interface ITrainingOptions {
  instance: string;
  owner: string;
  image: string;
  flavor: string;
  flavors: IFlavor[];
  runtimes: string[];
  work_folder: string | null;
}

/** What the submit form sends (POST training/jobs, or the versions of a job to re-run). */
export interface ISubmission {
  path?: string;
  name?: string;
  description?: string;
  command?: string;
  runtime?: string;
  image?: string;
  flavor?: string;
  nodes?: number;
  processes_per_node?: number;
  hyperparameters?: Record<string, unknown>;
  metrics?: IMetricSpec[];
  max_run_seconds?: number;
  max_restarts?: number;
}

function isActive(state: string | undefined): boolean {
  return ACTIVE_STATES.has(state || '');
}

export function jobPath(
  owner: string,
  name: string,
  ...rest: string[]
): string {
  return [
    'training/jobs',
    encodeURIComponent(owner),
    encodeURIComponent(name),
    ...rest
  ].join('/');
}

/** A job name from a file or folder name: lower-case letters, digits and '-'. */
export function defaultJobName(path: string): string {
  const base = path.replace(/\/+$/, '').split('/').pop() || 'job';
  const stem = base.includes('.') ? base.slice(0, base.lastIndexOf('.')) : base;
  const name = stem
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '');
  return name.slice(0, 32).replace(/-+$/, '') || 'job';
}

/**
 * Hyperparameters from text: a JSON object, or one `name=value` a line (values that read as
 * JSON, such as 0.1, 3, true or [1, 2], are taken as such; others are text).
 */
export function parseHyperparameters(text: string): Record<string, unknown> {
  const trimmed = text.trim();
  if (!trimmed) {
    return {};
  }
  if (trimmed.startsWith('{')) {
    let value: unknown;
    try {
      value = JSON.parse(trimmed);
    } catch (error) {
      throw new Error(`Hyperparameters: not valid JSON (${messageOf(error)}).`);
    }
    if (!value || typeof value !== 'object' || Array.isArray(value)) {
      throw new Error('Hyperparameters: give a JSON object, {"name": value}.');
    }
    return value as Record<string, unknown>;
  }
  const result: Record<string, unknown> = {};
  for (const [index, raw] of trimmed.split('\n').entries()) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) {
      continue;
    }
    const at = line.indexOf('=');
    const name = at > 0 ? line.slice(0, at).trim() : '';
    if (!name) {
      throw new Error(
        `Hyperparameters, line ${index + 1}: write name=value (got "${line}").`
      );
    }
    const value = line.slice(at + 1).trim();
    try {
      result[name] = JSON.parse(value);
    } catch {
      result[name] = value;
    }
  }
  return result;
}

/** Hyperparameters as `name=value` lines. */
export function formatHyperparameters(
  values: Record<string, unknown> | undefined
): string {
  return Object.entries(values || {})
    .map(
      ([name, value]) =>
        `${name}=${typeof value === 'string' ? value : JSON.stringify(value)}`
    )
    .join('\n');
}

/**
 * Stream a text answer of the server extension (a log with follow=1), handing each piece
 * to onText as it comes, until it ends or `signal` aborts it.
 */
export async function streamText(
  endPoint: string,
  query: Record<string, string>,
  onText: (text: string) => void,
  signal: AbortSignal
): Promise<void> {
  const settings = ServerConnection.makeSettings();
  const url =
    URLExt.join(settings.baseUrl, 'workbench', endPoint) +
    URLExt.objectToQueryString(query);
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url, { signal }, settings);
  } catch (error) {
    if (signal.aborted) {
      return;
    }
    throw new WorkbenchError(
      `This JupyterLab server does not answer (${messageOf(error)}).`,
      0
    );
  }
  if (!response.ok) {
    let message = `HTTP ${response.status} from ${endPoint}`;
    try {
      const data = await response.json();
      message = (data && data.message) || message;
    } catch {
      // not JSON: the status says it
    }
    throw new WorkbenchError(
      message,
      response.status,
      response.headers.has('X-Workbench-Lab')
    );
  }
  if (!response.body) {
    onText(await response.text());
    return;
  }
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) {
        break;
      }
      onText(decoder.decode(value, { stream: true }));
    }
  } catch (error) {
    if (!signal.aborted) {
      throw error;
    }
    return;
  }
  const rest = decoder.decode();
  if (rest) {
    onText(rest);
  }
}

/** The options of the submit form, asked once a form opens. */
async function loadOptions(): Promise<ITrainingOptions> {
  return requestAPI<ITrainingOptions>('training/options');
}

/** Rows of a metric's name and its regex. */
class MetricRows {
  constructor(readonly node: HTMLElement) {
    this._rows = el('div', 'jp-WorkbenchTraining-rows');
    const add = button('Add metric', 'add-metric', 'reject');
    add.onclick = () => this.add();
    node.append(this._rows, add);
  }

  add(spec: IMetricSpec = { name: '', regex: '' }): void {
    const row = el('div', 'jp-WorkbenchTraining-row');
    const name = el('input', 'jp-mod-styled');
    name.name = 'metric-name';
    name.placeholder = 'loss';
    name.value = spec.name;
    const regex = el('input', 'jp-mod-styled');
    regex.name = 'metric-regex';
    regex.placeholder = 'loss=([0-9.eE+-]+)';
    regex.value = spec.regex;
    const remove = button('×', 'remove-metric', 'reject');
    remove.title = 'Remove this metric';
    remove.onclick = () => row.remove();
    row.append(name, regex, remove);
    this._rows.appendChild(row);
  }

  set(specs: IMetricSpec[] | undefined): void {
    this._rows.replaceChildren();
    for (const spec of specs || []) {
      this.add(spec);
    }
  }

  value(): IMetricSpec[] {
    const specs: IMetricSpec[] = [];
    this._rows.querySelectorAll('.jp-WorkbenchTraining-row').forEach(row => {
      const name = (
        row.querySelector('[name="metric-name"]') as HTMLInputElement
      ).value.trim();
      const regex = (
        row.querySelector('[name="metric-regex"]') as HTMLInputElement
      ).value.trim();
      if (!name && !regex) {
        return;
      }
      if (!name || !regex) {
        throw new Error('Each metric needs a name and a regex with one group.');
      }
      try {
        new RegExp(regex);
      } catch (error) {
        throw new Error(`Metric ${name}: ${messageOf(error)}`);
      }
      specs.push({ name, regex });
    });
    return specs;
  }

  private _rows: HTMLElement;
}

/** What a form is for: a new job from a file, or a new version of a job. */
export type FormMode =
  { kind: 'submit'; path: string } | { kind: 'rerun'; version: IJobVersion };

/**
 * The submit form: a file, notebook or folder of this instance as a new job, or a job's
 * version re-run with edits. Errors stay in the form with the platform's message.
 */
export class JobForm extends DomWidget {
  constructor(
    readonly mode: FormMode,
    private _onDone: (result: IJob | IJobVersion) => void
  ) {
    super('jp-WorkbenchTraining');
    this.addClass('jp-WorkbenchTraining-form');
    const rerun = mode.kind === 'rerun';
    this.node.innerHTML = `
      <h2 class="jp-WorkbenchTraining-title"></h2>
      <p class="jp-WorkbenchTraining-hint"></p>
      <div class="jp-WorkbenchTraining-error" hidden></div>
      <div class="jp-WorkbenchTraining-grid">
        <label data-for="path">File, notebook or folder
          <input class="jp-mod-styled" name="path" placeholder="train.py, analysis.ipynb or a folder" ${rerun ? 'readonly' : ''}>
        </label>
        <label>Job name
          <input class="jp-mod-styled" name="name" ${rerun ? 'readonly' : ''}>
        </label>
        <label data-for="description">Description
          <input class="jp-mod-styled" name="description">
        </label>
        <label data-for="command">Command
          <input class="jp-mod-styled" name="command" placeholder="python train.py --epochs 3">
        </label>
        <label>Runtime
          <select class="jp-mod-styled" name="runtime"></select>
        </label>
        <label>Image
          <input class="jp-mod-styled" name="image" list="jp-workbench-training-images">
          <datalist id="jp-workbench-training-images"></datalist>
        </label>
        <label>Flavor
          <select class="jp-mod-styled" name="flavor"></select>
        </label>
        <label>Nodes
          <input class="jp-mod-styled" name="nodes" type="number" min="1" step="1" value="1">
        </label>
        <label>Processes per node
          <input class="jp-mod-styled" name="processes_per_node" type="number" min="1" step="1" value="1">
        </label>
        <label>Max run time (minutes, 0: no limit)
          <input class="jp-mod-styled" name="max_run_minutes" type="number" min="0" step="any" value="0">
        </label>
        <label>Max restarts
          <input class="jp-mod-styled" name="max_restarts" type="number" min="0" step="1" value="0">
        </label>
      </div>
      <label class="jp-WorkbenchTraining-wide">Hyperparameters (name=value a line, or a JSON object)
        <textarea class="jp-mod-styled" name="hyperparameters" rows="4" placeholder="lr=0.1&#10;epochs=3"></textarea>
      </label>
      <div class="jp-WorkbenchTraining-wide">
        <div class="jp-WorkbenchTraining-label">Metrics read from the log (a regex whose first group is the value;
        lines <code>workbench-metric name=loss value=0.5 step=1</code> are read anyway)</div>
        <div class="jp-WorkbenchTraining-metrics"></div>
      </div>
      <div class="jp-WorkbenchTraining-formActions"></div>`;
    this._metrics = new MetricRows(this._q('.jp-WorkbenchTraining-metrics'));
    const submit = button(rerun ? 'Re-run' : 'Submit', 'submit');
    submit.onclick = () => void this.submit();
    this._q('.jp-WorkbenchTraining-formActions').append(submit);
    if (mode.kind === 'submit') {
      this.title.label = 'Submit training job';
      this._title(`Submit ${mode.path || 'code'} as a training job`);
      this._input('path').value = mode.path;
      this._input('name').value = mode.path ? defaultJobName(mode.path) : '';
      this._input('path').oninput = () => this._showKind();
    } else {
      const version = mode.version;
      this.title.label = `Re-run ${version.name}`;
      this._title(`Re-run ${version.name} (from version ${version.version})`);
      this._q('[data-for="path"]').hidden = true;
      this._q('[data-for="description"]').hidden = true;
      this._input('name').value = version.name;
    }
    this.title.icon = trainingIcon;
    this.title.closable = true;
    this._showKind();
    void this._load();
  }

  /** Check the fields and send them; on success hand the answer on. */
  async submit(): Promise<void> {
    await this._submit(
      'submit',
      () => this.value(),
      async body => {
        let result: IJob | IJobVersion;
        if (this.mode.kind === 'rerun') {
          const version = this.mode.version;
          delete body.path;
          delete body.name;
          delete body.description;
          result = await requestAPI<IJobVersion>(
            jobPath(version.owner, version.name, 'versions'),
            { method: 'POST', body: JSON.stringify(body) },
            180_000
          );
        } else {
          result = await requestAPI<IJob>(
            'training/jobs',
            { method: 'POST', body: JSON.stringify(body) },
            180_000
          );
        }
        this._onDone(result);
      }
    );
  }

  /** The form's fields as the API takes them; throws with a message on wrong values. */
  value(): ISubmission {
    const text = (name: string) => this._input(name).value.trim();
    const whole = (name: string, label: string, min: number) =>
      wholeNumber(text(name), label, min);
    const body: ISubmission = {
      path: text('path'),
      name: text('name'),
      description: text('description'),
      command: text('command'),
      runtime: this._select('runtime').value,
      image: text('image'),
      flavor: this._select('flavor').value,
      nodes: whole('nodes', 'Nodes', 1),
      processes_per_node: whole('processes_per_node', 'Processes per node', 1),
      max_restarts: whole('max_restarts', 'Max restarts', 0),
      hyperparameters: parseHyperparameters(
        this._textarea('hyperparameters').value
      ),
      metrics: this._metrics.value()
    };
    const minutes = Number(text('max_run_minutes') || '0');
    if (!Number.isFinite(minutes) || minutes < 0) {
      throw new Error('Max run time: give minutes, 0 for no limit.');
    }
    body.max_run_seconds = Math.round(minutes * 60);
    if (this.mode.kind === 'submit') {
      if (!body.path) {
        throw new Error(
          'Give the file, notebook or folder to submit (relative to the file browser’s root).'
        );
      }
      if (!body.name) {
        throw new Error(
          'Give the job a name (lower-case letters, digits, "-").'
        );
      }
    }
    for (const key of ['command', 'image', 'flavor', 'description'] as const) {
      if (!body[key]) {
        delete body[key];
      }
    }
    return body;
  }

  private async _load(): Promise<void> {
    let options: ITrainingOptions | null = null;
    try {
      options = await loadOptions();
    } catch (error) {
      this._showError(
        `Cannot read this instance's image and flavors: ${messageOf(error)}`
      );
    }
    const runtimes = options?.runtimes || [
      'plain',
      'pytorch',
      'tensorflow',
      'mindspore'
    ];
    this._select('runtime').replaceChildren(
      ...runtimes.map(r => new Option(r, r))
    );
    const flavors = options?.flavors || [];
    const flavorSelect = this._select('flavor');
    flavorSelect.replaceChildren(
      new Option('this instance’s flavor', ''),
      ...flavors.map(f => new Option(describeFlavor(f), f.name))
    );
    this._suggestImages();
    if (options) {
      this._input('image').value = options.image || '';
      flavorSelect.value = options.flavor || '';
    }
    if (this.mode.kind === 'rerun') {
      this._fill(this.mode.version.spec);
    }
    this._loaded = true;
  }

  /** Prefill from a version's spec. */
  private _fill(spec: IJobSpec): void {
    this._input('command').value = spec.command || '';
    if (spec.runtime) {
      this._select('runtime').value = spec.runtime;
    }
    if (spec.image) {
      this._input('image').value = spec.image;
    }
    if (spec.flavor) {
      const select = this._select('flavor');
      if (!Array.from(select.options).some(o => o.value === spec.flavor)) {
        select.append(new Option(spec.flavor, spec.flavor));
      }
      select.value = spec.flavor;
    }
    this._input('nodes').value = String(spec.nodes ?? 1);
    this._input('processes_per_node').value = String(
      spec.processes_per_node ?? 1
    );
    this._input('max_restarts').value = String(spec.max_restarts ?? 0);
    this._input('max_run_minutes').value = String(
      (spec.max_run_seconds ?? 0) / 60
    );
    this._textarea('hyperparameters').value = formatHyperparameters(
      spec.hyperparameters
    );
    this._metrics.set(spec.metrics);
    this._showKind(spec.source?.kind);
  }

  /** Say what runs: a notebook's cells, a file with python, a folder's command. */
  private _showKind(known?: string): void {
    const path = this._input('path').value.trim();
    const kind =
      known ||
      (path.endsWith('.ipynb')
        ? 'notebook'
        : path.endsWith('.py')
          ? 'file'
          : path
            ? 'folder'
            : '');
    const command = this._input('command');
    const entry = path.split('/').pop() || '';
    command.disabled = kind === 'notebook';
    command.placeholder =
      kind === 'notebook'
        ? 'the notebook’s cells run in order'
        : kind === 'file'
          ? `python ${entry}`
          : 'python train.py --epochs 3 (required for a folder)';
    this._q('.jp-WorkbenchTraining-hint').textContent =
      kind === 'notebook'
        ? 'The notebook runs cell by cell; hyperparameters go into a cell after the one tagged "parameters".'
        : kind === 'file'
          ? 'The file runs with python; hyperparameters become --name value arguments.'
          : kind === 'folder'
            ? 'The folder is the job’s code; the command runs in it with the hyperparameters as --name value arguments.'
            : '';
  }

  get loaded(): boolean {
    return this._loaded;
  }

  private _title(text: string): void {
    this._q('.jp-WorkbenchTraining-title').textContent = text;
  }

  private _loaded = false;
  private _metrics: MetricRows;
}

/** What a job view asks of the application. */
export interface IJobViewActions {
  rerun(version: IJobVersion): void;
  openOutput(version: IJobVersion): Promise<void>;
  changed(): void;
  /** More buttons of the view (the features that extend the panel add them). */
  more?(view: JobView): HTMLElement[];
}

/** What the Training plugin lends the features that add to it (experiments). */
export interface ITrainingHost {
  readonly app: JupyterFrontEnd;
  readonly palette: ICommandPalette | null;
  /** The main area's tabs of the panel's views and forms. */
  readonly tabs: MainAreaTabs;
  /** Open a job's view (at a version). */
  openJob(owner: string, name: string, version?: number): void;
  /** Reload the panel's lists. */
  refresh(): void;
  /** The open notebook's or file's path (saved first when changed), else the last one open. */
  documentPath(): Promise<string>;
}

/** A part of the sidebar panel below its jobs, reloaded with them. */
export interface ITrainingSection {
  readonly node: HTMLElement;
  /** Reload; true while something in it is active (the panel then refreshes often). */
  refresh(): Promise<boolean>;
}

/** A feature that adds to the Training panel: its sections, buttons and job view buttons. */
export interface ITrainingExtension {
  /** Set up once, when the Training plugin starts (commands, palette items). */
  activate?(host: ITrainingHost): void;
  /** Buttons of the panel, after "Submit a job…". */
  panelActions?(host: ITrainingHost): HTMLElement[];
  /** Sections of the panel, below the jobs. */
  panelSections?(host: ITrainingHost): ITrainingSection[];
  /** Buttons of each job view. */
  jobActions?(view: JobView, host: ITrainingHost): HTMLElement[];
}

const trainingExtensions: ITrainingExtension[] = [];

/** Add a feature to the Training panel (before the application starts its plugins). */
export function extendTraining(extension: ITrainingExtension): void {
  trainingExtensions.push(extension);
}

/**
 * One job: its versions, the chosen version's state, nodes, metric charts and log (followed
 * while it runs), Stop, Re-run with edits and Open output folder.
 */
export class JobView extends PollingWidget {
  constructor(
    readonly owner: string,
    readonly jobName: string,
    private _actions: IJobViewActions,
    version?: number
  ) {
    super('jp-WorkbenchTraining');
    this.id = JobView.widgetId(owner, jobName);
    this.addClass('jp-WorkbenchTraining-job');
    this.title.label = jobName;
    this.title.caption = `Training job ${owner}/${jobName}`;
    this.title.icon = trainingIcon;
    this.title.closable = true;
    this.node.dataset.job = `${owner}/${jobName}`;
    this._version = version ?? null;
    this.node.innerHTML = `
      <header class="jp-WorkbenchTraining-jobHeader">
        <h2 class="jp-WorkbenchTraining-title"></h2>
        <label>Version <select class="jp-mod-styled" name="version"></select></label>
        <span class="jp-WorkbenchTraining-state" data-field="state"></span>
      </header>
      <div class="jp-WorkbenchTraining-reason" data-field="reason"></div>
      <div class="jp-WorkbenchTraining-error" hidden></div>
      <div class="jp-WorkbenchTraining-jobActions"></div>
      <table class="jp-WorkbenchTraining-facts"><tbody></tbody></table>
      <div class="jp-WorkbenchTraining-charts"></div>
      <div class="jp-WorkbenchTraining-logHeader">
        <span>Log</span>
        <label>node <select class="jp-mod-styled" name="node"></select></label>
        <span class="jp-WorkbenchTraining-following" data-field="following"></span>
      </div>
      <pre class="jp-WorkbenchTraining-log"></pre>`;
    this._q('.jp-WorkbenchTraining-title').textContent = `${owner}/${jobName}`;
    const stop = button('Stop', 'stop', 'warn');
    stop.onclick = () => void this.stop();
    const rerun = button('Re-run with edits…', 'rerun');
    rerun.onclick = () => {
      if (this._current) {
        this._actions.rerun(this._current);
      }
    };
    const output = button('Open output folder', 'output', 'reject');
    output.onclick = () => {
      if (this._current) {
        void this._actions
          .openOutput(this._current)
          .then(() => this._showError(''))
          .catch(error => this._showError(messageOf(error)));
      }
    };
    const refresh = button('Refresh', 'refresh', 'reject');
    refresh.onclick = () => void this.refresh();
    this._q('.jp-WorkbenchTraining-jobActions').append(
      stop,
      rerun,
      output,
      ...(this._actions.more?.(this) ?? []),
      refresh
    );
    this._select('version').onchange = () => {
      this.showVersion(Number(this._select('version').value));
    };
    this._select('node').onchange = () => this._follow();
    this._log = this._q('.jp-WorkbenchTraining-log');
    this._logText = document.createTextNode('');
    this._log.appendChild(this._logText);
    this._resizeObserver = new ResizeObserver(() => {
      this._charts.forEach(chart => chart.resize());
    });
    this._resizeObserver.observe(this._q('.jp-WorkbenchTraining-charts'));
    void this.refresh();
  }

  static widgetId(owner: string, name: string): string {
    return `jp-workbench-job-${owner}-${name}`.replace(/[^A-Za-z0-9_-]/g, '_');
  }

  /** The version shown. */
  get version(): number | null {
    return this._version;
  }

  /** The shown version's model, once loaded. */
  get current(): IJobVersion | null {
    return this._current;
  }

  /** Show a version (a new one after a re-run): its state, charts and log. */
  showVersion(version: number): void {
    if (version === this._version && this._current) {
      return;
    }
    this._version = version;
    this._current = null;
    for (const chart of this._charts.values()) {
      chart.dispose();
    }
    this._charts.clear();
    void this.refresh();
  }

  /** Reload the job and the shown version; follow its log and poll while it runs. */
  async refresh(): Promise<void> {
    let job: IJob;
    try {
      job = await requestAPI<IJob>(jobPath(this.owner, this.jobName));
    } catch (error) {
      this._showError(messageOf(error));
      this._schedule(IDLE_REFRESH_MS);
      return;
    }
    this._showError('');
    const versions = job.versions || [];
    if (
      this._version === null ||
      !versions.some(v => v.version === this._version)
    ) {
      this._version = job.latest || versions[versions.length - 1]?.version || 1;
    }
    const select = this._select('version');
    const numbers = versions.map(v => String(v.version));
    if (!hasOptions(select, numbers)) {
      select.replaceChildren(
        ...versions.map(v => new Option(`${v.version}`, String(v.version)))
      );
    }
    select.value = String(this._version);
    const current = versions.find(v => v.version === this._version);
    if (!current) {
      return;
    }
    const previous = this._current;
    this._current = current;
    this._showVersion(current);
    const nodes = this._select('node');
    const ranks = (current.nodes.length ? current.nodes : [{ rank: 0 }]).map(
      n => String(n.rank)
    );
    if (!hasOptions(nodes, ranks)) {
      const chosen = nodes.value || '0';
      nodes.replaceChildren(...ranks.map(r => new Option(r, r)));
      nodes.value = ranks.includes(chosen) ? chosen : '0';
    }
    if (
      !previous ||
      previous.version !== current.version ||
      (!this._following && isActive(current.state) && !this._retry)
    ) {
      this._follow();
    }
    if (previous?.state !== current.state) {
      this._actions.changed();
    }
    await this._refreshMetrics();
    this._schedule(isActive(current.state) ? ACTIVE_REFRESH_MS : 0);
  }

  /** Stop the shown version. */
  async stop(): Promise<void> {
    const current = this._current;
    if (!current) {
      return;
    }
    const stop = this._button('stop');
    stop.disabled = true;
    try {
      const version = await requestAPI<IJobVersion>(
        jobPath(
          this.owner,
          this.jobName,
          'versions',
          String(current.version),
          'stop'
        ),
        { method: 'POST' },
        90_000
      );
      this._current = { ...current, ...version };
      this._showVersion(this._current);
      this._showError('');
      this._actions.changed();
    } catch (error) {
      this._showError(messageOf(error));
    }
    await this.refresh();
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    this._abort?.abort();
    window.clearTimeout(this._retry);
    this._resizeObserver.disconnect();
    for (const chart of this._charts.values()) {
      chart.dispose();
    }
    super.dispose();
  }

  private _showVersion(version: IJobVersion): void {
    const state = this._q('[data-field="state"]');
    state.textContent = version.state;
    state.dataset.state = version.state;
    this.node.dataset.state = version.state;
    const reason =
      version.state === 'queued' && version.queue_position
        ? `queue position ${version.queue_position}${version.reason ? ': ' + version.reason : ''}`
        : version.reason;
    this._q('[data-field="reason"]').textContent = reason || '';
    this._button('stop').disabled =
      !isActive(version.state) || version.state === 'stopping';
    const spec = version.spec || {};
    const facts: [string, string][] = [
      [
        'Code',
        spec.source
          ? `${spec.source.kind}${spec.source.entry ? ' ' + spec.source.entry : ''}`
          : '-'
      ],
      ['Command', spec.command || '-'],
      ['Runtime', spec.runtime || '-'],
      ['Image', spec.image || '-'],
      ['Flavor', spec.flavor || '-'],
      [
        'Nodes',
        `${spec.nodes ?? 1} × ${spec.processes_per_node ?? 1} process(es)` +
          (version.nodes.length > 1 ||
          version.nodes.some(n => n.state !== version.state)
            ? ': ' +
              version.nodes
                .map(
                  n =>
                    `${n.rank} ${n.state}${n.exit_code !== null && n.exit_code !== undefined ? ` (exit ${n.exit_code})` : ''}`
                )
                .join(', ')
            : '')
      ],
      [
        'Hyperparameters',
        Object.keys(spec.hyperparameters || {}).length
          ? JSON.stringify(spec.hyperparameters)
          : '-'
      ],
      ['Restarts', `${version.restarts} of ${spec.max_restarts ?? 0}`],
      ['Created', formatTime(version.created)],
      ['Started', formatTime(version.started)],
      ['Finished', formatTime(version.finished)],
      ['Output', version.output_path || '-']
    ];
    this._q('.jp-WorkbenchTraining-facts tbody').replaceChildren(
      ...factRows(facts)
    );
  }

  private async _refreshMetrics(): Promise<void> {
    const current = this._current;
    if (!current) {
      return;
    }
    let metrics: Record<string, IMetricPoint[]>;
    try {
      metrics = await requestAPI<Record<string, IMetricPoint[]>>(
        jobPath(
          this.owner,
          this.jobName,
          'versions',
          String(current.version),
          'metrics'
        )
      );
    } catch (error) {
      this._showError(`Metrics: ${messageOf(error)}`);
      return;
    }
    if (this._current?.version !== current.version) {
      return;
    }
    const parent = this._q('.jp-WorkbenchTraining-charts');
    for (const [name, points] of Object.entries(metrics || {})) {
      if (!Array.isArray(points) || !points.length) {
        continue;
      }
      let chart = this._charts.get(name);
      if (!chart) {
        chart = new MetricChart(name, parent, {
          className: 'jp-WorkbenchTraining-chart'
        });
        this._charts.set(name, chart);
      }
      chart.update(points.map(p => ({ x: p.step, y: p.value })));
    }
  }

  /** (Re)start following the shown version's log on the chosen node, from its start. */
  private _follow(): void {
    const current = this._current;
    if (!current) {
      return;
    }
    this._abort?.abort();
    window.clearTimeout(this._retry);
    this._retry = 0;
    const controller = new AbortController();
    this._abort = controller;
    this._logText.data = '';
    const node = this._select('node').value || '0';
    const follow = isActive(current.state);
    this._following = follow;
    this._q('[data-field="following"]').textContent = follow
      ? 'following…'
      : '';
    this._log.dataset.following = String(follow);
    const path = jobPath(
      this.owner,
      this.jobName,
      'versions',
      String(current.version),
      'logs'
    );
    streamText(
      path,
      { node, follow: follow ? '1' : '0' },
      text => this._append(text),
      controller.signal
    )
      .then(() => {
        if (controller.signal.aborted) {
          return;
        }
        this._ended(controller);
      })
      .catch(error => {
        if (controller.signal.aborted) {
          return;
        }
        this._showError(`Log: ${messageOf(error)}`);
        this._ended(controller);
      });
  }

  /** The log's stream ended: the version ended, or the stream broke off (follow again). */
  private _ended(controller: AbortController): void {
    if (this._abort !== controller) {
      return;
    }
    this._following = false;
    this._q('[data-field="following"]').textContent = '';
    this._log.dataset.following = 'false';
    this._retry = window.setTimeout(() => {
      this._retry = 0;
      void this.refresh().then(() => {
        // still running: the stream broke off, so follow again from the start
        if (
          this._current &&
          isActive(this._current.state) &&
          !this._following
        ) {
          this._follow();
        }
      });
    }, FOLLOW_RETRY_MS);
  }

  private _append(text: string): void {
    const log = this._log;
    const atEnd = log.scrollTop + log.clientHeight >= log.scrollHeight - 24;
    this._logText.appendData(text);
    const extra = this._logText.length - LOG_LIMIT;
    if (extra > 0) {
      this._logText.deleteData(0, extra);
    }
    if (atEnd) {
      log.scrollTop = log.scrollHeight;
    }
  }

  private _version: number | null;
  private _current: IJobVersion | null = null;
  private _charts = new Map<string, MetricChart>();
  private _abort: AbortController | null = null;
  private _following = false;
  private _retry = 0;
  private _log: HTMLElement;
  private _logText: Text;
  private _resizeObserver: ResizeObserver;
}

/** The sidebar panel: the user's jobs with their state, and a button to submit one. */
export class TrainingPanel extends SidebarPanel {
  constructor(
    private _onSubmit: () => void,
    private _open: (job: IJob) => void
  ) {
    super('jp-WorkbenchTraining');
    this.id = 'jp-workbench-training';
    this.addClass('jp-WorkbenchTraining-panel');
    this.title.icon = trainingIcon;
    this.title.caption = 'Training jobs';
    this.node.innerHTML = `
      <header class="jp-WorkbenchTraining-panelHeader">
        <h2 class="jp-WorkbenchTraining-title">Training jobs</h2>
      </header>
      <div class="jp-WorkbenchTraining-panelActions"></div>
      <div class="jp-WorkbenchTraining-error" hidden></div>
      <ul class="jp-WorkbenchTraining-jobs"></ul>
      <div class="jp-WorkbenchTraining-empty" hidden>No training jobs yet. Open a notebook or a
      .py file and submit it with “Submit as Training Job”, or submit a folder.</div>`;
    const submit = button('Submit a job…', 'submit');
    submit.title =
      'Submit the open notebook or file (or any path) as a training job';
    submit.onclick = () => this._onSubmit();
    const refresh = button('Refresh', 'refresh', 'reject');
    refresh.onclick = () => void this.refresh();
    this._refreshButton = refresh;
    this._q('.jp-WorkbenchTraining-panelActions').append(submit, refresh);
  }

  /** A button among the panel's, before Refresh. */
  addAction(node: HTMLElement): void {
    this._refreshButton.before(node);
  }

  /** A section below the jobs, reloaded with them. */
  addSection(section: ITrainingSection): void {
    this._sections.push(section);
    this.node.appendChild(section.node);
  }

  /** Reload the list of jobs; it refreshes itself often while any job is active. */
  async refresh(): Promise<void> {
    window.clearTimeout(this._timer);
    const sections = Promise.all(
      this._sections.map(section => section.refresh().catch(() => false))
    );
    let jobs: IJob[] = [];
    try {
      jobs = await requestAPI<IJob[]>('training/jobs');
      this._showError('');
    } catch (error) {
      this._showError(messageOf(error));
      await sections;
      this._schedule(IDLE_REFRESH_MS);
      return;
    }
    jobs.sort(byNewest);
    const list = this._q('.jp-WorkbenchTraining-jobs');
    list.replaceChildren(...jobs.map(job => this._item(job)));
    this._q('.jp-WorkbenchTraining-empty').hidden = jobs.length > 0;
    const active = (await sections).some(a => a);
    this._schedule(
      active || jobs.some(job => isActive(job.state))
        ? ACTIVE_REFRESH_MS
        : IDLE_REFRESH_MS
    );
  }

  private _item(job: IJob): HTMLElement {
    const item = el('li', 'jp-WorkbenchTraining-jobItem');
    item.dataset.job = `${job.owner}/${job.name}`;
    item.dataset.state = job.state;
    item.title = job.description || `${job.owner}/${job.name}`;
    const top = el('div', 'jp-WorkbenchTraining-jobTop');
    top.append(
      field('span', 'jp-WorkbenchTraining-jobName', 'name', job.name),
      el('span', 'jp-WorkbenchTraining-jobVersion', `v${job.latest}`),
      stateBadge('jp-WorkbenchTraining-state', job.state)
    );
    item.appendChild(top);
    if (job.reason) {
      item.appendChild(
        field('div', 'jp-WorkbenchTraining-jobReason', 'reason', job.reason)
      );
    }
    item.onclick = () => this._open(job);
    return item;
  }

  private _refreshButton: HTMLElement;
  private _sections: ITrainingSection[] = [];
}

/** A document widget's path and a way to save it, where the widget is one. */
function documentOf(
  widget: Widget | null
): { path: string; save: () => Promise<void>; dirty: boolean } | null {
  const context = (widget as any)?.context;
  if (!context || typeof context.path !== 'string') {
    return null;
  }
  return {
    path: context.path,
    dirty: !!context.model?.dirty,
    save: () => context.save()
  };
}

/**
 * Training jobs in JupyterLab: the "Training" sidebar panel, "Submit as Training Job" on
 * notebooks and files (toolbar, context menu, palette), and a view per job.
 */
export const trainingPlugin: JupyterFrontEndPlugin<void> = {
  id: 'ai-workbench-lab:training',
  description:
    'Training jobs: submit a notebook, file or folder of this instance, follow its logs and metrics.',
  autoStart: true,
  optional: [ICommandPalette, ILayoutRestorer],
  activate: (
    app: JupyterFrontEnd,
    palette: ICommandPalette | null,
    restorer: ILayoutRestorer | null
  ) => {
    const tabs = new MainAreaTabs(
      app,
      trainingIcon,
      'jp-workbench-training-form'
    );
    let lastDocument = '';
    let options: Promise<ITrainingOptions> | null = null;

    const trackDocument = (widget: Widget | null) => {
      const doc = documentOf(widget);
      if (doc) {
        lastDocument = doc.path;
      }
    };
    app.shell.currentChanged?.connect((_, args) =>
      trackDocument(args.newValue)
    );

    const openJob = (owner: string, name: string, version?: number) =>
      tabs.open(
        `${owner}/${name}`,
        () => new JobView(owner, name, actions, version),
        view => {
          if (version !== undefined) {
            view.showVersion(version);
          }
        }
      );

    const openForm = (mode: FormMode) => {
      const form = new JobForm(mode, result => {
        area.dispose();
        const version =
          'version' in result
            ? (result as IJobVersion).version
            : (result as IJob).latest;
        openJob(result.owner, result.name, version);
        void panel.refresh();
      });
      const area = tabs.openForm(form);
    };

    const actions: IJobViewActions = {
      rerun: version => openForm({ kind: 'rerun', version }),
      openOutput: async version => {
        options = options || loadOptions();
        let workFolder: string | null;
        try {
          workFolder = (await options).work_folder;
        } catch (error) {
          options = null;
          throw error;
        }
        if (workFolder === null) {
          throw new Error(
            'The work folder is outside what this JupyterLab shows: open the output from a terminal.'
          );
        }
        const path = [workFolder, version.output_path].filter(p => p).join('/');
        try {
          await app.serviceManager.contents.get(path, { content: false });
        } catch {
          throw new Error(
            `The output folder ${path} is not in this instance (yet): a job's files appear ` +
              `under ${workFolder ? workFolder + '/' : ''}jobs/ once it has started.`
          );
        }
        await app.commands.execute('filebrowser:go-to-path', { path });
      },
      changed: () => void panel.refresh(),
      more: view =>
        trainingExtensions.flatMap(e => e.jobActions?.(view, host) ?? [])
    };

    /** The open notebook or file (saved first: a job runs what is on disk). */
    const documentPath = async (): Promise<string> => {
      const doc = documentOf(app.shell.currentWidget);
      if (!doc) {
        return lastDocument;
      }
      if (doc.dirty) {
        await doc.save();
      }
      return doc.path;
    };

    const panel = new TrainingPanel(
      () => void app.commands.execute(CommandIDs.submit),
      job => openJob(job.owner, job.name)
    );
    app.shell.add(panel, 'left', { rank: 51 });
    if (restorer) {
      restorer.add(panel, 'workbench-training');
    }

    const host: ITrainingHost = {
      app,
      palette,
      tabs,
      openJob: (owner, name, version) => void openJob(owner, name, version),
      refresh: () => void panel.refresh(),
      documentPath
    };
    for (const extension of trainingExtensions) {
      extension.activate?.(host);
      for (const node of extension.panelActions?.(host) ?? []) {
        panel.addAction(node);
      }
      for (const section of extension.panelSections?.(host) ?? []) {
        panel.addSection(section);
      }
    }

    app.commands.addCommand(CommandIDs.open, {
      label: 'Training Jobs',
      caption: 'Training jobs: submit, follow logs and metrics, stop, re-run',
      icon: args => (args['isPalette'] ? undefined : trainingIcon),
      execute: () => {
        app.shell.activateById(panel.id);
        void panel.refresh();
      }
    });
    app.commands.addCommand(CommandIDs.submit, {
      label: 'Submit as Training Job…',
      caption:
        'Run this notebook or file as a training job (image, flavor, nodes, hyperparameters)',
      icon: args => (args['isPalette'] ? undefined : trainingIcon),
      execute: async args => {
        let path = typeof args['path'] === 'string' ? args['path'] : '';
        if (!path) {
          path = await documentPath();
        }
        openForm({ kind: 'submit', path });
      }
    });

    const toolbarButton = {
      createNew: (widget: Widget) => {
        const toolbar = (widget as any).toolbar;
        if (!toolbar || typeof toolbar.insertItem !== 'function') {
          return;
        }
        const item = new CommandToolbarButton({
          commands: app.commands,
          id: CommandIDs.submit,
          label: 'Train',
          caption: 'Submit as training job'
        });
        toolbar.insertItem(10, 'workbench-submit-training-job', item);
        return item;
      }
    };
    app.docRegistry.addWidgetExtension('Notebook', toolbarButton);
    app.docRegistry.addWidgetExtension('Editor', toolbarButton);
    for (const selector of ['.jp-Notebook', '.jp-FileEditor']) {
      app.contextMenu.addItem({
        command: CommandIDs.submit,
        selector,
        rank: 90
      });
    }
    if (palette) {
      for (const command of Object.values(CommandIDs)) {
        palette.addItem({ command, category: CATEGORY });
      }
    }
  }
};
