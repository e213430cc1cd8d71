import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ICommandPalette } from '@jupyterlab/apputils';
import { IDefaultFileBrowser } from '@jupyterlab/filebrowser';
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
import { requestAPI } from './handler';
import { describeFlavor, IFlavor } from './models';
import { defaultJobName, IJob, jobPath } from './training';
import { DomWidget, MainAreaTabs, PollingWidget, SidebarPanel } from './widget';

/** The commands of the Deploy panel. */
namespace CommandIDs {
  export const open = 'workbench:open-deploy';
  export const registerFiles = 'workbench:register-model';
  export const registerJob = 'workbench:register-model-from-job';
}

const CATEGORY = 'Workbench';
/** How often an open service refreshes: while it changes, while it serves, when it rests. */
const ACTIVE_REFRESH_MS = 3000;
const RUNNING_REFRESH_MS = 5000;
const IDLE_REFRESH_MS = 30_000;
/** Seconds the platform may take: copying and hashing a model's files, starting a service. */
const REGISTER_TIMEOUT_MS = 330_000;
const DEPLOY_TIMEOUT_MS = 150_000;
const ACTION_TIMEOUT_MS = 120_000;
const CALL_TIMEOUT_MS = 180_000;
const FORMATS = [
  'onnx',
  'pytorch',
  'tensorflow',
  'mindspore',
  'sklearn',
  'custom'
];

const DEPLOY_SVG = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24" width="16">
  <g class="jp-icon3" fill="#616161">
    <path d="M12 2l8 4.5v9L12 20l-8-4.5v-9zm0 2.3L6 7.6v6.8l6 3.4 6-3.4V7.6z"/>
    <path d="M12 8l3.5 2v4L12 16l-3.5-2v-4z"/>
  </g></svg>`;

export const deployIcon = new LabIcon({
  name: 'ai-workbench-lab:deploy',
  svgstr: DEPLOY_SVG
});

/** One input or output of a model's signature (the Open Inference Protocol's tensors). */
export interface ITensorSpec {
  name: string;
  datatype: string;
  shape: number[];
}

/** A model's file, with the SHA-256 taken when it was registered. */
export interface IModelFile {
  path: string;
  size: number;
  sha256: string;
}

/** A version of a model. */
export interface IModelVersion {
  owner: string;
  name: string;
  version: number;
  format: string;
  image: string;
  command?: string;
  source: Record<string, unknown>;
  signature?: { inputs?: ITensorSpec[]; outputs?: ITensorSpec[] } | null;
  metrics?: Record<string, number>;
  lineage?: { job: string; job_version: number } | null;
  files?: IModelFile[];
  state: string;
  reason: string;
  predictor?: string;
  created: string;
}

/** A model (GET deploy/models; with its versions from GET deploy/models/owner/name). */
export interface IModel {
  owner: string;
  name: string;
  description: string;
  workspace: string;
  created: string;
  latest: number;
  versions?: IModelVersion[];
}

/** A replica of a predictor. */
export interface IReplica {
  id: string;
  state: string;
  restarts: number;
}

/** A predictor of a service: a model version with its share of the traffic. */
export interface IPredictor {
  model: string;
  version: number;
  owner?: string;
  weight: number;
  flavor: string;
  min_replicas: number;
  max_replicas: number;
  target_in_flight?: number;
  replicas?: IReplica[];
}

/** An online service. */
export interface IService {
  owner: string;
  name: string;
  description: string;
  workspace: string;
  public: boolean;
  state: string;
  reason: string;
  url: string;
  /** The model's name in the protocol's paths: /v2/models/<model_name>/infer. */
  model_name?: string;
  predictors: IPredictor[];
  scale_to_zero_seconds: number;
  created: string;
  updated: string;
}

/** A predictor's counters. */
export interface IPredictorMetrics {
  requests: number;
  errors: number;
  p50_ms: number | null;
  p95_ms: number | null;
  p99_ms: number | null;
  in_flight: number;
}

/** GET deploy/services/owner/name/metrics. */
export interface IServiceMetrics {
  predictors: Record<string, IPredictorMetrics>;
  series: {
    time: string | number;
    requests: number;
    errors: number;
    p50_ms: number | null;
  }[];
}

/** A service's answer to a call from the panel. */
export interface ICallAnswer {
  status: number;
  body: unknown;
  elapsed_ms: number;
}

/** GET deploy/options. */
export interface IDeployOptions {
  instance: string;
  owner: string;
  flavors: IFlavor[];
  work_folder: string | null;
}

function modelPath(owner: string, name: string, ...rest: string[]): string {
  return [
    'deploy/models',
    encodeURIComponent(owner),
    encodeURIComponent(name),
    ...rest
  ].join('/');
}

function servicePath(owner: string, name: string, ...rest: string[]): string {
  return [
    'deploy/services',
    encodeURIComponent(owner),
    encodeURIComponent(name),
    ...rest
  ].join('/');
}

let optionsCache: Promise<IDeployOptions> | null = null;

/** The forms' options, asked once (again after a failure). */
function loadOptions(): Promise<IDeployOptions> {
  if (!optionsCache) {
    optionsCache = requestAPI<IDeployOptions>('deploy/options');
    optionsCache.catch(() => {
      optionsCache = null;
    });
  }
  return optionsCache;
}

/** Where a version came from, in a few words. */
export function describeSource(version: IModelVersion): string {
  if (version.lineage) {
    return `job ${version.lineage.job} v${version.lineage.job_version}`;
  }
  const source = version.source || {};
  switch (source.kind) {
    case 'job':
      return `job ${source.job} v${source.version}`;
    case 'storage':
      return `files ${source.instance}:${source.path}`;
    case 'image':
      return `image ${source.image}`;
    default:
      return String(source.kind || '-');
  }
}

/** A model's metrics as "accuracy=0.93, loss=0.1". */
export function describeMetrics(metrics: Record<string, number> | undefined) {
  const entries = Object.entries(metrics || {});
  if (!entries.length) {
    return '-';
  }
  return entries
    .map(
      ([name, value]) =>
        `${name}=${typeof value === 'number' ? Number(value.toPrecision(4)) : value}`
    )
    .join(', ');
}

/** A file's size: "812 B", "3.4 KiB", "1.2 GiB". */
export function formatSize(bytes: number | null | undefined): string {
  if (bytes === null || bytes === undefined) {
    return '-';
  }
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit ? `${value.toFixed(1)} ${units[unit]}` : `${value} B`;
}

/** "mnist:1" */
function predictorKey(p: IPredictor): string {
  return `${p.model}:${p.version}`;
}

function readyReplicas(p: IPredictor): number {
  return (p.replicas || []).filter(r => r.state === 'ready').length;
}

function isChanging(service: IService): boolean {
  if (service.state === 'deploying') {
    return true;
  }
  return (
    service.state === 'running' &&
    service.predictors.some(p =>
      (p.replicas || []).some(r => r.state !== 'ready')
    )
  );
}

/** A time of the metrics' series in seconds since the epoch. */
export function seriesTime(value: string | number): number {
  if (typeof value === 'number') {
    return value > 1e11 ? value / 1000 : value;
  }
  const parsed = Date.parse(value);
  return isNaN(parsed) ? NaN : parsed / 1000;
}

/** A request body to start from, made from a model's signature (zeros of its shapes). */
export function exampleRequest(
  protocol: 'v1' | 'v2',
  inputs: ITensorSpec[] | undefined
): unknown {
  const specs = inputs?.length
    ? inputs
    : [{ name: 'input-0', datatype: 'FP32', shape: [-1, 4] }];
  const shapeOf = (spec: ITensorSpec) =>
    (spec.shape?.length ? spec.shape : [-1]).map(d => (d > 0 ? d : 1));
  const zeros = (shape: number[]): unknown =>
    shape.length <= 1
      ? new Array(shape[0] ?? 1).fill(0)
      : new Array(shape[0]).fill(0).map(() => zeros(shape.slice(1)));
  if (protocol === 'v1') {
    const shape = shapeOf(specs[0]);
    return { instances: zeros(shape) };
  }
  return {
    inputs: specs.map(spec => {
      const shape = shapeOf(spec);
      const count = shape.reduce((a, b) => a * b, 1);
      return {
        name: spec.name,
        shape,
        datatype: spec.datatype || 'FP32',
        data: new Array(count).fill(0)
      };
    })
  };
}

/** What a register form starts from: files of this instance, or a job's output. */
export type RegisterMode =
  { kind: 'storage'; path: string } | { kind: 'job'; job?: string };

/**
 * The register form: files of this instance's storage (from the file browser), or a
 * finished job's output, as a new model or a new version of one of the user's models.
 */
export class RegisterForm extends DomWidget {
  constructor(
    mode: RegisterMode,
    private _onDone: (model: IModel | IModelVersion) => void
  ) {
    super('jp-WorkbenchDeploy');
    this.addClass('jp-WorkbenchDeploy-form');
    this.addClass('jp-WorkbenchDeploy-register');
    this.title.label = 'Register model';
    this.title.icon = deployIcon;
    this.title.closable = true;
    this.node.innerHTML = `
      <h2 class="jp-WorkbenchDeploy-title">Register a model</h2>
      <p class="jp-WorkbenchDeploy-hint"></p>
      <div class="jp-WorkbenchDeploy-error" hidden></div>
      <div class="jp-WorkbenchDeploy-grid">
        <label>Source
          <select class="jp-mod-styled" name="kind">
            <option value="storage">files of this instance</option>
            <option value="job">a finished job's output</option>
          </select>
        </label>
        <label data-for="storage">File or folder
          <input class="jp-mod-styled" name="path" placeholder="work/models/net">
        </label>
        <label data-for="job">Job
          <select class="jp-mod-styled" name="job"></select>
        </label>
        <label data-for="job">Version
          <select class="jp-mod-styled" name="job_version"></select>
        </label>
        <label data-for="job">Folder of the version
          <input class="jp-mod-styled" name="job_path" value="output">
        </label>
        <label>Model name
          <input class="jp-mod-styled" name="name" placeholder="mnist">
        </label>
        <label>Description
          <input class="jp-mod-styled" name="description">
        </label>
        <label>Format
          <select class="jp-mod-styled" name="format"></select>
        </label>
        <label>Serving image (default: the format's)
          <input class="jp-mod-styled" name="image" list="jp-workbench-deploy-images" placeholder="pytorch">
          <datalist id="jp-workbench-deploy-images"></datalist>
        </label>
        <label>Predictor (file.py:Class, custom code)
          <input class="jp-mod-styled" name="predictor" placeholder="predictor.py:Model">
        </label>
      </div>
      <label class="jp-WorkbenchDeploy-wide">Signature (JSON, optional: {"inputs": [{"name", "datatype", "shape"}], "outputs": [...]})
        <textarea class="jp-mod-styled" name="signature" rows="4"></textarea>
      </label>
      <div class="jp-WorkbenchDeploy-formActions"></div>`;
    this._select('format').replaceChildren(
      ...FORMATS.map(f => new Option(f, f))
    );
    const submit = button('Register', 'register');
    submit.onclick = () => void this.submit();
    this._q('.jp-WorkbenchDeploy-formActions').append(submit);
    this._select('kind').value = mode.kind;
    this._select('kind').onchange = () => this._showKind();
    this._select('job').onchange = () => void this._loadVersions();
    this._input('name').oninput = () => this._showTarget();
    if (mode.kind === 'storage') {
      this._input('path').value = mode.path;
      this._input('name').value = mode.path ? defaultJobName(mode.path) : '';
    }
    this._wantedJob = mode.kind === 'job' ? mode.job || '' : '';
    this._showKind();
    void this._load();
  }

  /** Check the fields and register; on success hand the model (or version) on. */
  async submit(): Promise<void> {
    const hint = this._q('.jp-WorkbenchDeploy-hint');
    const done = await this._submit(
      'register',
      () => this.value(),
      async body => {
        hint.textContent =
          'Registering: the platform copies the files and takes their SHA-256…';
        const existing = this._existing(body.name as string);
        let result: IModel | IModelVersion;
        if (existing) {
          delete body.name;
          delete body.workspace;
          result = await requestAPI<IModelVersion>(
            modelPath(existing.owner, existing.name, 'versions'),
            { method: 'POST', body: JSON.stringify(body) },
            REGISTER_TIMEOUT_MS
          );
        } else {
          result = await requestAPI<IModel>(
            'deploy/models',
            { method: 'POST', body: JSON.stringify(body) },
            REGISTER_TIMEOUT_MS
          );
        }
        this._onDone(result);
      }
    );
    if (!done) {
      this._showTarget();
    }
  }

  /** The form's fields as the API takes them; throws with a message on wrong values. */
  value(): Record<string, unknown> {
    const text = (name: string) => this._input(name).value.trim();
    const name = text('name');
    if (!name) {
      throw new Error(
        'Give the model a name (lower-case letters, digits and "-").'
      );
    }
    const body: Record<string, unknown> = {
      name,
      format: this._select('format').value
    };
    for (const field of ['description', 'image', 'predictor']) {
      if (text(field)) {
        body[field] = text(field);
      }
    }
    const signature = this._textarea('signature').value.trim();
    if (signature) {
      let value: unknown;
      try {
        value = JSON.parse(signature);
      } catch (error) {
        throw new Error(`Signature: not valid JSON (${messageOf(error)}).`);
      }
      if (!value || typeof value !== 'object' || Array.isArray(value)) {
        throw new Error(
          'Signature: give a JSON object, {"inputs": [...], "outputs": [...]}.'
        );
      }
      body.signature = value;
    }
    if (this._select('kind').value === 'storage') {
      const path = text('path');
      if (!path) {
        throw new Error(
          'Give the file or folder to register (as the file browser names it).'
        );
      }
      body.source = { kind: 'storage', path };
    } else {
      const job = this._select('job').value;
      const version = Number(this._select('job_version').value);
      if (!job) {
        throw new Error(
          'Pick a job: only your jobs with a finished (succeeded) version are listed.'
        );
      }
      if (!version) {
        throw new Error(`Job ${job} has no succeeded version to register.`);
      }
      body.source = {
        kind: 'job',
        job,
        version,
        path: text('job_path') || 'output'
      };
    }
    return body;
  }

  /** Whether the form has its choices (jobs, models) loaded. */
  get loaded(): boolean {
    return this._loaded;
  }

  private async _load(): Promise<void> {
    const [options, models] = await Promise.all([
      loadOptions().catch(error => {
        this._showError(`Cannot read this instance: ${messageOf(error)}`);
        return null;
      }),
      requestAPI<IModel[]>('deploy/models').catch(error => {
        this._showError(messageOf(error));
        return [] as IModel[];
      })
    ]);
    this._owner = options?.owner || '';
    this._models = models || [];
    this._suggestImages();
    let jobs: IJob[] = [];
    try {
      jobs = await requestAPI<IJob[]>('training/jobs');
    } catch (error) {
      if (this._select('kind').value === 'job') {
        this._showError(`Cannot list your jobs: ${messageOf(error)}`);
      }
    }
    const own = jobs
      .filter(job => !this._owner || job.owner === this._owner)
      .sort(byNewest);
    const select = this._select('job');
    select.replaceChildren(
      ...own.map(job => new Option(`${job.name} (${job.state})`, job.name))
    );
    if (this._wantedJob && own.some(job => job.name === this._wantedJob)) {
      select.value = this._wantedJob;
    } else {
      const finished = own.find(job => job.state === 'succeeded');
      if (finished) {
        select.value = finished.name;
      }
    }
    await this._loadVersions();
    this._showTarget();
    this._loaded = true;
  }

  /** The chosen job's succeeded versions, newest first. */
  private async _loadVersions(): Promise<void> {
    const job = this._select('job').value;
    const select = this._select('job_version');
    select.replaceChildren();
    if (!job) {
      return;
    }
    if (this._select('kind').value === 'job' && !this._input('name').value) {
      this._input('name').value = job;
    }
    try {
      const details = await requestAPI<IJob>(jobPath(this._owner, job));
      const versions = (details.versions || [])
        .filter(v => v.state === 'succeeded')
        .sort((a, b) => b.version - a.version);
      select.replaceChildren(
        ...versions.map(
          v =>
            new Option(
              `${v.version} (finished ${formatTime(v.finished)})`,
              String(v.version)
            )
        )
      );
      if (!versions.length) {
        this._showError(
          `Job ${job} has no succeeded version yet: register from a finished run.`
        );
      } else {
        this._showError('');
      }
    } catch (error) {
      this._showError(`Cannot read job ${job}: ${messageOf(error)}`);
    }
  }

  private _existing(name: string): IModel | undefined {
    return this._models.find(
      m => m.name === name && (!this._owner || m.owner === this._owner)
    );
  }

  /** Say whether the name makes a new model or a new version of one. */
  private _showTarget(): void {
    const name = this._input('name').value.trim();
    const existing = name ? this._existing(name) : undefined;
    const kind = this._select('kind').value;
    const what =
      kind === 'storage'
        ? 'The platform copies the file or folder from this instance’s storage and keeps a SHA-256 of each file.'
        : 'The platform copies the folder of the job’s finished version (its output) and keeps a SHA-256 of each file; the job’s metrics come along.';
    this._q('.jp-WorkbenchDeploy-hint').textContent = existing
      ? `${what} It becomes version ${existing.latest + 1} of ${existing.owner}/${existing.name}.`
      : what;
  }

  private _showKind(): void {
    const kind = this._select('kind').value;
    this.node
      .querySelectorAll<HTMLElement>('label[data-for]')
      .forEach(label => {
        label.hidden = label.dataset.for !== kind;
      });
    if (kind === 'job' && this._loaded && !this._input('name').value) {
      this._input('name').value = this._select('job').value;
    }
    this._showTarget();
  }

  private _loaded = false;
  private _owner = '';
  private _models: IModel[] = [];
  private _wantedJob: string;
}

/** The deploy form: a model version as a new service (flavor, replicas). */
export class DeployForm extends DomWidget {
  constructor(
    readonly version: IModelVersion,
    private _onDone: (service: IService) => void
  ) {
    super('jp-WorkbenchDeploy');
    this.addClass('jp-WorkbenchDeploy-form');
    this.addClass('jp-WorkbenchDeploy-deployForm');
    this.title.label = `Deploy ${version.name} v${version.version}`;
    this.title.icon = deployIcon;
    this.title.closable = true;
    this.node.dataset.model = `${version.owner}/${version.name}`;
    this.node.innerHTML = `
      <h2 class="jp-WorkbenchDeploy-title"></h2>
      <p class="jp-WorkbenchDeploy-hint">The service answers the Open Inference Protocol (v2) and v1 at a
      stable URL; its replicas start from the model's image with the files mounted read-only.</p>
      <div class="jp-WorkbenchDeploy-error" hidden></div>
      <div class="jp-WorkbenchDeploy-grid">
        <label>Service name
          <input class="jp-mod-styled" name="name">
        </label>
        <label>Description
          <input class="jp-mod-styled" name="description">
        </label>
        <label>Flavor (per replica)
          <select class="jp-mod-styled" name="flavor"></select>
        </label>
        <label>Min replicas (0: scale to zero when idle)
          <input class="jp-mod-styled" name="min_replicas" type="number" min="0" step="1" value="1">
        </label>
        <label>Max replicas
          <input class="jp-mod-styled" name="max_replicas" type="number" min="1" step="1" value="1">
        </label>
        <label>Idle seconds before scaling to zero (0: never)
          <input class="jp-mod-styled" name="scale_to_zero_seconds" type="number" min="0" step="1" value="0">
        </label>
      </div>
      <div class="jp-WorkbenchDeploy-formActions"></div>`;
    this._q('.jp-WorkbenchDeploy-title').textContent =
      `Deploy ${version.owner}/${version.name} version ${version.version}`;
    this._input('name').value = version.name;
    const deploy = button('Deploy', 'deploy');
    deploy.onclick = () => void this.submit();
    this._q('.jp-WorkbenchDeploy-formActions').append(deploy);
    void this._load();
  }

  async submit(): Promise<void> {
    await this._submit(
      'deploy',
      () => this.value(),
      async body => {
        this._onDone(
          await requestAPI<IService>(
            'deploy/services',
            { method: 'POST', body: JSON.stringify(body) },
            DEPLOY_TIMEOUT_MS
          )
        );
      }
    );
  }

  value(): Record<string, unknown> {
    const whole = (name: string, label: string, min: number) =>
      wholeNumber(this._input(name).value, label, min);
    const name = this._input('name').value.trim();
    if (!name) {
      throw new Error(
        'Give the service a name (lower-case letters, digits and "-").'
      );
    }
    const min = whole('min_replicas', 'Min replicas', 0);
    const max = whole('max_replicas', 'Max replicas', 1);
    if (max < min) {
      throw new Error('Max replicas must be at least min replicas.');
    }
    const predictor: Record<string, unknown> = {
      model: this.version.name,
      version: this.version.version,
      weight: 100,
      min_replicas: min,
      max_replicas: max
    };
    if (this._owner && this.version.owner !== this._owner) {
      predictor.owner = this.version.owner;
    }
    const flavor = this._select('flavor').value;
    if (flavor) {
      predictor.flavor = flavor;
    }
    const body: Record<string, unknown> = {
      name,
      predictors: [predictor],
      scale_to_zero_seconds: whole('scale_to_zero_seconds', 'Idle seconds', 0)
    };
    const description = this._input('description').value.trim();
    if (description) {
      body.description = description;
    }
    return body;
  }

  private async _load(): Promise<void> {
    try {
      const options = await loadOptions();
      this._owner = options.owner;
      this._select('flavor').replaceChildren(
        ...options.flavors.map(f => new Option(describeFlavor(f), f.name))
      );
    } catch (error) {
      this._showError(`Cannot list the flavors: ${messageOf(error)}`);
    }
  }

  private _owner = '';
}

/** What the model and service views ask of the application. */
export interface IDeployActions {
  deploy(version: IModelVersion): void;
  openService(owner: string, name: string): void;
  changed(): void;
}

/** One model: its versions (state, format, lineage, metrics, files with SHA-256), Deploy. */
export class ModelView extends PollingWidget {
  constructor(
    readonly owner: string,
    readonly modelName: string,
    private _actions: IDeployActions
  ) {
    super('jp-WorkbenchDeploy');
    this.id = `jp-workbench-model-${owner}-${modelName}`.replace(
      /[^A-Za-z0-9_-]/g,
      '_'
    );
    this.addClass('jp-WorkbenchDeploy-view');
    this.addClass('jp-WorkbenchDeploy-model');
    this.title.label = modelName;
    this.title.caption = `Model ${owner}/${modelName}`;
    this.title.icon = deployIcon;
    this.title.closable = true;
    this.node.dataset.model = `${owner}/${modelName}`;
    this.node.innerHTML = `
      <header class="jp-WorkbenchDeploy-header">
        <h2 class="jp-WorkbenchDeploy-title"></h2>
      </header>
      <div class="jp-WorkbenchDeploy-hint" data-field="description"></div>
      <div class="jp-WorkbenchDeploy-error" hidden></div>
      <div class="jp-WorkbenchDeploy-actions"></div>
      <table class="jp-WorkbenchDeploy-table">
        <thead><tr><th>Version</th><th>State</th><th>Format</th><th>Image</th><th>From</th>
          <th>Metrics</th><th>Files</th><th>Created</th><th></th></tr></thead>
        <tbody></tbody>
      </table>`;
    this._q('.jp-WorkbenchDeploy-title').textContent = `${owner}/${modelName}`;
    const refresh = button('Refresh', 'refresh', 'reject');
    refresh.onclick = () => void this.refresh();
    this._q('.jp-WorkbenchDeploy-actions').append(refresh);
    void this.refresh();
  }

  async refresh(): Promise<void> {
    let model: IModel;
    try {
      model = await requestAPI<IModel>(modelPath(this.owner, this.modelName));
    } catch (error) {
      this._showError(messageOf(error));
      return;
    }
    this._showError('');
    this._q('[data-field="description"]').textContent =
      `${model.description ? model.description + ' · ' : ''}workspace ${model.workspace}`;
    const versions = [...(model.versions || [])].sort(
      (a, b) => b.version - a.version
    );
    this._q('tbody').replaceChildren(...versions.map(v => this._row(v)));
    this._schedule(
      versions.some(v => v.state === 'copying') ? ACTIVE_REFRESH_MS : 0
    );
  }

  private _row(version: IModelVersion): HTMLElement {
    const row = el('tr', 'jp-WorkbenchDeploy-version');
    row.dataset.version = String(version.version);
    row.dataset.state = version.state;
    const state = el('td');
    state.appendChild(stateBadge('jp-WorkbenchDeploy-state', version.state));
    if (version.reason) {
      state.appendChild(el('div', 'jp-WorkbenchDeploy-reason', version.reason));
    }
    const files = version.files || [];
    const size = files.reduce((total, f) => total + (f.size || 0), 0);
    const filesCell = el('td');
    const details = el('details');
    details.append(
      el(
        'summary',
        '',
        files.length ? `${files.length} (${formatSize(size)})` : '-'
      )
    );
    for (const f of files) {
      const line = el('div', 'jp-WorkbenchDeploy-file');
      line.append(
        el('span', '', `${f.path} (${formatSize(f.size)})`),
        el('code', '', f.sha256)
      );
      details.appendChild(line);
    }
    filesCell.appendChild(files.length ? details : el('span', '', '-'));
    const actions = el('td');
    const deploy = button('Deploy…', 'deploy');
    deploy.disabled = version.state !== 'ready';
    deploy.onclick = () => this._actions.deploy(version);
    actions.appendChild(deploy);
    const cells: [string, string][] = [
      ['format', version.format || '-'],
      ['image', version.image || '-'],
      ['from', describeSource(version)],
      ['metrics', describeMetrics(version.metrics)]
    ];
    row.append(el('td', '', `v${version.version}`), state);
    row.append(...cells.map(([name, text]) => field('td', '', name, text)));
    row.append(filesCell, el('td', '', formatTime(version.created)), actions);
    return row;
  }
}

/**
 * One service: its state, URL, predictors with their weights and replicas; start, stop,
 * promote, rollback; a canary's traffic share; a call form; request and latency charts.
 */
export class ServiceView extends PollingWidget {
  constructor(
    readonly owner: string,
    readonly serviceName: string,
    private _actions: IDeployActions
  ) {
    super('jp-WorkbenchDeploy');
    this.id = ServiceView.widgetId(owner, serviceName);
    this.addClass('jp-WorkbenchDeploy-view');
    this.addClass('jp-WorkbenchDeploy-service');
    this.title.label = serviceName;
    this.title.caption = `Service ${owner}/${serviceName}`;
    this.title.icon = deployIcon;
    this.title.closable = true;
    this.node.dataset.service = `${owner}/${serviceName}`;
    this.node.innerHTML = `
      <header class="jp-WorkbenchDeploy-header">
        <h2 class="jp-WorkbenchDeploy-title"></h2>
        <span class="jp-WorkbenchDeploy-state" data-field="state"></span>
      </header>
      <div class="jp-WorkbenchDeploy-reason" data-field="reason"></div>
      <div class="jp-WorkbenchDeploy-error" hidden></div>
      <div class="jp-WorkbenchDeploy-actions"></div>
      <table class="jp-WorkbenchDeploy-facts"><tbody></tbody></table>
      <h3>Predictors</h3>
      <table class="jp-WorkbenchDeploy-table jp-WorkbenchDeploy-predictors">
        <thead><tr><th>Model</th><th>Traffic</th><th>Flavor</th><th>Replicas</th><th>Requests</th>
          <th>Errors</th><th>p50 / p95 / p99</th></tr></thead>
        <tbody></tbody>
      </table>
      <div class="jp-WorkbenchDeploy-canary" hidden>
        <label>Canary traffic
          <input type="range" name="canary" min="0" max="100" step="1">
        </label>
        <span data-field="split"></span>
      </div>
      <div class="jp-WorkbenchDeploy-newCanary" hidden>
        <label>Canary version <select class="jp-mod-styled" name="canary_version"></select></label>
        <label>its traffic (%) <input class="jp-mod-styled" name="canary_weight" type="number" min="1" max="99" value="10"></label>
      </div>
      <h3>Call</h3>
      <div class="jp-WorkbenchDeploy-call">
        <label>Request <select class="jp-mod-styled" name="call_path"></select></label>
        <textarea class="jp-mod-styled" name="request" rows="6" spellcheck="false"></textarea>
        <div class="jp-WorkbenchDeploy-callActions"><span data-field="call-status"></span></div>
        <pre class="jp-WorkbenchDeploy-answer" hidden></pre>
      </div>
      <h3>Metrics</h3>
      <div class="jp-WorkbenchDeploy-hint" data-field="no-metrics">No requests yet.</div>
      <div class="jp-WorkbenchDeploy-charts"></div>`;
    this._q('.jp-WorkbenchDeploy-title').textContent =
      `${owner}/${serviceName}`;
    const actions: [string, string, string, () => void][] = [
      ['Start', 'start', 'accept', () => void this._act('start')],
      ['Stop', 'stop', 'warn', () => void this._act('stop')],
      ['Promote canary', 'promote', 'accept', () => void this._act('promote')],
      [
        'Roll back canary',
        'rollback',
        'warn',
        () => void this._act('rollback')
      ],
      ['Refresh', 'refresh', 'reject', () => void this.refresh()]
    ];
    this._q('.jp-WorkbenchDeploy-actions').append(
      ...actions.map(([label, action, kind, onclick]) => {
        const node = button(label, action, kind);
        node.onclick = onclick;
        return node;
      })
    );
    const apply = button('Apply split', 'weights');
    apply.onclick = () => void this._applySplit();
    this._q('.jp-WorkbenchDeploy-canary').appendChild(apply);
    const slider = this._input('canary');
    slider.oninput = () => this._showSplit(Number(slider.value));
    const canary = button('Start canary', 'canary');
    canary.onclick = () => void this._startCanary();
    this._q('.jp-WorkbenchDeploy-newCanary').appendChild(canary);
    const send = button('Send', 'call');
    send.onclick = () => void this.call();
    this._q('.jp-WorkbenchDeploy-callActions').prepend(send);
    this._select('call_path').onchange = () => this._prefill(true);
    this._textarea('request').oninput = () => {
      this._edited = true;
    };
    const charts = this._q('.jp-WorkbenchDeploy-charts');
    this._requestsChart = new MetricChart('requests', charts, {
      time: true,
      title: 'requests per minute',
      className: 'jp-WorkbenchDeploy-chart'
    });
    this._latencyChart = new MetricChart('p50 latency', charts, {
      time: true,
      title: 'p50 latency (ms)',
      unit: ' ms',
      className: 'jp-WorkbenchDeploy-chart'
    });
    this._resizeObserver = new ResizeObserver(() => {
      this._requestsChart.resize();
      this._latencyChart.resize();
    });
    this._resizeObserver.observe(charts);
    void this.refresh();
  }

  static widgetId(owner: string, name: string): string {
    return `jp-workbench-service-${owner}-${name}`.replace(
      /[^A-Za-z0-9_-]/g,
      '_'
    );
  }

  /** Reload the service and its metrics; poll while it changes or serves. */
  async refresh(): Promise<void> {
    window.clearTimeout(this._timer);
    let service: IService;
    try {
      service = await requestAPI<IService>(
        servicePath(this.owner, this.serviceName)
      );
    } catch (error) {
      this._showError(messageOf(error));
      this._schedule(IDLE_REFRESH_MS);
      return;
    }
    this._showError('');
    const previous = this._service;
    this._service = service;
    this._showService(service);
    if (previous?.state !== service.state) {
      this._actions.changed();
    }
    await this._loadVersions(service);
    await this._refreshMetrics();
    this._schedule(
      isChanging(service)
        ? ACTIVE_REFRESH_MS
        : service.state === 'running'
          ? RUNNING_REFRESH_MS
          : IDLE_REFRESH_MS
    );
  }

  /** Send the call form's request to the service; show its answer, whatever the status. */
  async call(): Promise<void> {
    const choice = this._select('call_path').selectedOptions[0];
    if (!choice) {
      return;
    }
    const method = choice.dataset.method || 'POST';
    const body: Record<string, unknown> = { method, path: choice.value };
    if (method === 'POST') {
      try {
        body.body = JSON.parse(this._textarea('request').value || '{}');
      } catch (error) {
        this._showCallStatus(
          `The request is not valid JSON (${messageOf(error)}).`,
          'error'
        );
        return;
      }
    }
    const send = this._button('call');
    const answer = this._q('.jp-WorkbenchDeploy-answer');
    send.disabled = true;
    answer.hidden = true;
    this._showCallStatus('Calling…', 'pending');
    try {
      const result = await requestAPI<ICallAnswer>(
        servicePath(this.owner, this.serviceName, 'call'),
        { method: 'POST', body: JSON.stringify(body) },
        CALL_TIMEOUT_MS
      );
      const ok = result.status >= 200 && result.status < 300;
      this._showCallStatus(
        `HTTP ${result.status} in ${result.elapsed_ms} ms`,
        ok ? 'ok' : 'error'
      );
      answer.textContent =
        typeof result.body === 'string'
          ? result.body
          : JSON.stringify(result.body, null, 2);
      answer.dataset.status = String(result.status);
      answer.hidden = false;
      void this._refreshMetrics();
    } catch (error) {
      this._showCallStatus(messageOf(error), 'error');
      answer.hidden = true;
    } finally {
      send.disabled = false;
    }
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    this._resizeObserver.disconnect();
    this._requestsChart.dispose();
    this._latencyChart.dispose();
    super.dispose();
  }

  private _showService(service: IService): void {
    const state = this._q('[data-field="state"]');
    state.textContent = service.state;
    state.dataset.state = service.state;
    this.node.dataset.state = service.state;
    this._q('[data-field="reason"]').textContent = service.reason || '';
    const predictors = service.predictors || [];
    const two = predictors.length === 2;
    const enable = (action: string, on: boolean) => {
      this._button(action).disabled = !on;
    };
    enable('start', service.state === 'stopped' || service.state === 'failed');
    enable('stop', service.state !== 'stopped');
    enable('promote', two);
    enable('rollback', two);
    const facts: [string, string][] = [
      ['URL', service.url || '-'],
      ['Description', service.description || '-'],
      ['Workspace', service.workspace || '-'],
      [
        'Callable by',
        service.public ? 'members of the workspace' : 'you (and your keys)'
      ],
      [
        'Scale to zero',
        service.scale_to_zero_seconds
          ? `after ${service.scale_to_zero_seconds} s idle`
          : 'never'
      ],
      ['Created', formatTime(service.created)],
      ['Updated', formatTime(service.updated)]
    ];
    this._q('.jp-WorkbenchDeploy-facts tbody').replaceChildren(
      ...factRows(facts)
    );
    this._renderPredictors();
    const canary = this._q('.jp-WorkbenchDeploy-canary');
    canary.hidden = !two;
    if (two && !this._sliding) {
      const slider = this._input('canary');
      slider.value = String(predictors[1].weight);
      this._showSplit(predictors[1].weight);
    }
    this._fillCallPaths(service.model_name || predictors[0]?.model);
  }

  private _renderPredictors(): void {
    const service = this._service;
    if (!service) {
      return;
    }
    const metrics = this._metrics?.predictors || {};
    const body = this._q('.jp-WorkbenchDeploy-predictors tbody');
    body.replaceChildren(
      ...service.predictors.map((p, index) => {
        const row = el('tr', 'jp-WorkbenchDeploy-predictor');
        row.dataset.predictor = predictorKey(p);
        const replicas = p.replicas || [];
        const counts = metrics[predictorKey(p)];
        const ms = (value: number | null | undefined) =>
          value === null || value === undefined ? '-' : `${value}`;
        const role =
          service.predictors.length === 2
            ? index === 0
              ? ' (stable)'
              : ' (canary)'
            : '';
        const cells: [string, string][] = [
          ['model', `${predictorKey(p)}${role}`],
          ['weight', `${p.weight}%`],
          ['flavor', p.flavor || '-'],
          [
            'replicas',
            `${readyReplicas(p)} ready of ${replicas.length} (${p.min_replicas}–${p.max_replicas})` +
              (replicas.length
                ? ': ' +
                  replicas
                    .map(
                      r =>
                        `${r.state}${r.restarts ? ` (${r.restarts} restarts)` : ''}`
                    )
                    .join(', ')
                : '')
          ],
          ['requests', counts ? String(counts.requests) : '-'],
          ['errors', counts ? String(counts.errors) : '-'],
          [
            'latency',
            counts
              ? `${ms(counts.p50_ms)} / ${ms(counts.p95_ms)} / ${ms(counts.p99_ms)} ms`
              : '-'
          ]
        ];
        row.append(...cells.map(([name, text]) => field('td', '', name, text)));
        return row;
      })
    );
  }

  /** The versions a canary may use: the stable model's other ready versions. */
  private async _loadVersions(service: IService): Promise<void> {
    const section = this._q('.jp-WorkbenchDeploy-newCanary');
    if (service.predictors.length !== 1) {
      section.hidden = true;
      return;
    }
    const stable = service.predictors[0];
    const owner = stable.owner || service.owner;
    try {
      const model = await requestAPI<IModel>(modelPath(owner, stable.model));
      const versions = model.versions || [];
      this._signature =
        versions.find(v => v.version === stable.version)?.signature?.inputs ||
        this._signature;
      const others = versions
        .filter(v => v.state === 'ready' && v.version !== stable.version)
        .sort((a, b) => b.version - a.version);
      const select = this._select('canary_version');
      const chosen = select.value;
      select.replaceChildren(
        ...others.map(v => new Option(`v${v.version}`, String(v.version)))
      );
      if (others.some(v => String(v.version) === chosen)) {
        select.value = chosen;
      }
      section.hidden = !others.length;
      this._prefill(false);
    } catch {
      section.hidden = true;
    }
  }

  private async _refreshMetrics(): Promise<void> {
    let metrics: IServiceMetrics;
    try {
      metrics = await requestAPI<IServiceMetrics>(
        servicePath(this.owner, this.serviceName, 'metrics')
      );
    } catch (error) {
      this._showError(`Metrics: ${messageOf(error)}`);
      return;
    }
    this._metrics = metrics;
    this._renderPredictors();
    const series = (metrics.series || [])
      .map(p => ({ ...p, t: seriesTime(p.time) }))
      .filter(p => Number.isFinite(p.t));
    this._requestsChart.update(
      series.map(p => ({ x: p.t, y: Number(p.requests) || 0 }))
    );
    this._latencyChart.update(
      series
        .filter(p => p.p50_ms !== null && p.p50_ms !== undefined)
        .map(p => ({ x: p.t, y: Number(p.p50_ms) }))
    );
    this._q('[data-field="no-metrics"]').hidden = series.some(
      p => Number(p.requests) > 0
    );
  }

  private async _act(action: string): Promise<void> {
    await this._change(
      action,
      servicePath(this.owner, this.serviceName, action),
      { method: 'POST' },
      ACTION_TIMEOUT_MS
    );
  }

  /** Change the service (its button off meanwhile), show the answer and refresh. */
  private async _change(
    action: string,
    path: string,
    init: RequestInit,
    timeout: number
  ): Promise<void> {
    const node = this._button(action);
    node.disabled = true;
    try {
      const service = await requestAPI<IService>(path, init, timeout);
      if (service && service.name) {
        this._service = service;
        this._showService(service);
      }
      this._showError('');
      this._actions.changed();
    } catch (error) {
      this._showError(messageOf(error));
    } finally {
      node.disabled = false;
    }
    await this.refresh();
  }

  /** PATCH the predictors with the slider's split. */
  private async _applySplit(): Promise<void> {
    const service = this._service;
    if (!service || service.predictors.length !== 2) {
      return;
    }
    const canary = Number(this._input('canary').value);
    const weights = [100 - canary, canary];
    await this._patchPredictors(
      service.predictors.map((p, i) => ({ ...p, weight: weights[i] })),
      'weights'
    );
    this._sliding = false;
  }

  /** Add a second predictor: another version of the model with a share of the traffic. */
  private async _startCanary(): Promise<void> {
    const service = this._service;
    if (!service || service.predictors.length !== 1) {
      return;
    }
    const version = Number(this._select('canary_version').value);
    const weight = Number(this._input('canary_weight').value);
    if (!version) {
      this._showError('Pick the version to try as a canary.');
      return;
    }
    if (!Number.isInteger(weight) || weight < 1 || weight > 99) {
      this._showError('Canary traffic: give a whole percentage from 1 to 99.');
      return;
    }
    const stable = service.predictors[0];
    await this._patchPredictors(
      [
        { ...stable, weight: 100 - weight },
        {
          ...stable,
          version,
          weight,
          min_replicas: Math.max(1, stable.min_replicas)
        }
      ],
      'canary'
    );
  }

  private async _patchPredictors(
    predictors: IPredictor[],
    action: string
  ): Promise<void> {
    const body = {
      predictors: predictors.map(p => {
        const sent: Record<string, unknown> = {
          model: p.model,
          version: p.version,
          weight: p.weight,
          flavor: p.flavor,
          min_replicas: p.min_replicas,
          max_replicas: p.max_replicas
        };
        if (p.target_in_flight !== undefined) {
          sent.target_in_flight = p.target_in_flight;
        }
        if (p.owner && p.owner !== this.owner) {
          sent.owner = p.owner;
        }
        return sent;
      })
    };
    await this._change(
      action,
      servicePath(this.owner, this.serviceName),
      { method: 'PATCH', body: JSON.stringify(body) },
      DEPLOY_TIMEOUT_MS
    );
  }

  private _showSplit(canary: number): void {
    const predictors = this._service?.predictors || [];
    this._sliding = predictors.length === 2 && canary !== predictors[1].weight;
    const names = predictors.map(predictorKey);
    this._q('[data-field="split"]').textContent =
      `${names[0] || 'stable'} ${100 - canary}% · ${names[1] || 'canary'} ${canary}%`;
  }

  /** The call form's requests, for the service's model name. */
  private _fillCallPaths(modelName: string | undefined): void {
    const model = modelName || this.serviceName;
    const select = this._select('call_path');
    const choices: [string, string, string][] = [
      [`v2/models/${model}/infer`, 'POST', 'v2 infer (POST)'],
      [`v1/models/${model}:predict`, 'POST', 'v1 predict (POST)'],
      [`v2/models/${model}`, 'GET', 'v2 model metadata (GET)'],
      ['v2/health/ready', 'GET', 'v2 health ready (GET)']
    ];
    const values = choices.map(c => c[0]);
    if (hasOptions(select, values)) {
      return;
    }
    const chosen = select.selectedIndex;
    select.replaceChildren(
      ...choices.map(([path, method, label]) => {
        const option = new Option(`${label}: ${path}`, path);
        option.dataset.method = method;
        return option;
      })
    );
    select.selectedIndex = chosen >= 0 ? chosen : 0;
    this._prefill(false);
  }

  /** Put an example request in the box (unless the user wrote one). */
  private _prefill(force: boolean): void {
    const choice = this._select('call_path').selectedOptions[0];
    const request = this._textarea('request');
    if (!choice) {
      return;
    }
    const post = choice.dataset.method !== 'GET';
    request.disabled = !post;
    if (this._edited && !force) {
      return;
    }
    const protocol = choice.value.startsWith('v1/') ? 'v1' : 'v2';
    request.value = post
      ? JSON.stringify(exampleRequest(protocol, this._signature))
      : '';
    this._edited = false;
  }

  private _showCallStatus(text: string, kind: string): void {
    const node = this._q('[data-field="call-status"]');
    node.textContent = text;
    node.dataset.kind = kind;
  }

  private _service: IService | null = null;
  private _metrics: IServiceMetrics | null = null;
  private _signature: ITensorSpec[] | undefined = undefined;
  private _edited = false;
  private _sliding = false;
  private _requestsChart: MetricChart;
  private _latencyChart: MetricChart;
  private _resizeObserver: ResizeObserver;
}

/** The sidebar panel: the user's models and services. */
export class DeployPanel extends SidebarPanel {
  constructor(
    private _register: () => void,
    private _openModel: (model: IModel) => void,
    private _openService: (service: IService) => void
  ) {
    super('jp-WorkbenchDeploy');
    this.id = 'jp-workbench-deploy';
    this.addClass('jp-WorkbenchDeploy-panel');
    this.title.icon = deployIcon;
    this.title.caption = 'Models and services';
    this.node.innerHTML = `
      <header><h2 class="jp-WorkbenchDeploy-title">Deploy</h2></header>
      <div class="jp-WorkbenchDeploy-actions"></div>
      <div class="jp-WorkbenchDeploy-error" hidden></div>
      <h3>Models</h3>
      <ul class="jp-WorkbenchDeploy-list jp-WorkbenchDeploy-models"></ul>
      <div class="jp-WorkbenchDeploy-empty" data-empty="models" hidden>No models yet. Register
      a finished job's output, or right-click a file or folder in the file browser:
      “Register as Model”.</div>
      <h3>Services</h3>
      <ul class="jp-WorkbenchDeploy-list jp-WorkbenchDeploy-services"></ul>
      <div class="jp-WorkbenchDeploy-empty" data-empty="services" hidden>No services yet:
      open a model and deploy one of its versions.</div>`;
    const register = button('Register from a job…', 'register');
    register.title = "Register a finished training job's output as a model";
    register.onclick = () => this._register();
    const refresh = button('Refresh', 'refresh', 'reject');
    refresh.onclick = () => void this.refresh();
    this._q('.jp-WorkbenchDeploy-actions').append(register, refresh);
  }

  /** Reload the models (with their latest version) and the services. */
  async refresh(): Promise<void> {
    window.clearTimeout(this._timer);
    let models: IModel[];
    let services: IService[];
    try {
      [models, services] = await Promise.all([
        requestAPI<IModel[]>('deploy/models'),
        requestAPI<IService[]>('deploy/services')
      ]);
      this._showError('');
    } catch (error) {
      this._showError(messageOf(error));
      this._schedule(IDLE_REFRESH_MS);
      return;
    }
    // the latest version of each (format, lineage, metrics): the list has only the number
    const details = await Promise.all(
      models.map(m =>
        requestAPI<IModel>(modelPath(m.owner, m.name)).catch(() => m)
      )
    );
    details.sort(byNewest);
    services.sort(byNewest);
    this._q('.jp-WorkbenchDeploy-models').replaceChildren(
      ...details.map(m => this._modelItem(m))
    );
    this._q('.jp-WorkbenchDeploy-services').replaceChildren(
      ...services.map(s => this._serviceItem(s))
    );
    this._q('[data-empty="models"]').hidden = details.length > 0;
    this._q('[data-empty="services"]').hidden = services.length > 0;
    this._schedule(
      services.some(isChanging) ||
        details.some(m => (m.versions || []).some(v => v.state === 'copying'))
        ? ACTIVE_REFRESH_MS
        : IDLE_REFRESH_MS
    );
  }

  private _modelItem(model: IModel): HTMLElement {
    const item = el('li', 'jp-WorkbenchDeploy-item');
    item.dataset.model = `${model.owner}/${model.name}`;
    item.title = model.description || `${model.owner}/${model.name}`;
    const top = el('div', 'jp-WorkbenchDeploy-itemTop');
    const versions = model.versions || [];
    const latest =
      versions.find(v => v.version === model.latest) ||
      versions[versions.length - 1];
    top.append(
      field('span', 'jp-WorkbenchDeploy-itemName', 'name', model.name),
      el('span', 'jp-WorkbenchDeploy-itemVersion', `v${model.latest}`)
    );
    if (latest) {
      const format = stateBadge('jp-WorkbenchDeploy-state', latest.state);
      format.textContent = latest.format;
      format.dataset.field = 'format';
      top.appendChild(format);
    }
    item.appendChild(top);
    if (latest) {
      const lines: [string, string][] = [
        ['lineage', `from ${describeSource(latest)}`],
        ['metrics', describeMetrics(latest.metrics)],
        [
          'versions',
          `${versions.length} version${versions.length === 1 ? '' : 's'}` +
            (latest.state === 'ready'
              ? ''
              : ` · v${latest.version} ${latest.state}`)
        ]
      ];
      item.append(
        ...lines
          .filter(([, text]) => text !== '-')
          .map(([name, text]) =>
            field('div', 'jp-WorkbenchDeploy-itemLine', name, text)
          )
      );
    }
    item.onclick = () => this._openModel(model);
    return item;
  }

  private _serviceItem(service: IService): HTMLElement {
    const item = el('li', 'jp-WorkbenchDeploy-item');
    item.dataset.service = `${service.owner}/${service.name}`;
    item.dataset.state = service.state;
    item.title = service.description || `${service.owner}/${service.name}`;
    const top = el('div', 'jp-WorkbenchDeploy-itemTop');
    top.append(
      field('span', 'jp-WorkbenchDeploy-itemName', 'name', service.name),
      stateBadge('jp-WorkbenchDeploy-state', service.state)
    );
    const predictors = (service.predictors || [])
      .map(
        p =>
          `${predictorKey(p)} ${p.weight}% · ${readyReplicas(p)}/${(p.replicas || []).length} replicas`
      )
      .join('; ');
    item.append(
      top,
      field('div', 'jp-WorkbenchDeploy-itemLine', 'url', service.url),
      field('div', 'jp-WorkbenchDeploy-itemLine', 'predictors', predictors)
    );
    if (service.reason) {
      item.appendChild(
        field('div', 'jp-WorkbenchDeploy-reason', 'reason', service.reason)
      );
    }
    item.onclick = () => this._openService(service);
    return item;
  }
}

/**
 * Models and services in JupyterLab: the "Deploy" sidebar panel, "Register as Model" on the
 * file browser's files and folders, a form to register a job's output, a view per model
 * (deploy a version) and per service (traffic split, call, metrics).
 */
export const deployPlugin: JupyterFrontEndPlugin<void> = {
  id: 'ai-workbench-lab:deploy',
  description:
    'Models and services: register files or a job output as a model, deploy it, call it, watch it.',
  autoStart: true,
  optional: [ICommandPalette, ILayoutRestorer, IDefaultFileBrowser],
  activate: (
    app: JupyterFrontEnd,
    palette: ICommandPalette | null,
    restorer: ILayoutRestorer | null,
    fileBrowser: IDefaultFileBrowser | null
  ) => {
    const tabs = new MainAreaTabs(app, deployIcon, 'jp-workbench-deploy-form');
    const openView = (key: string, make: () => ModelView | ServiceView) =>
      tabs.open(key, make, view => void view.refresh());
    const openForm = (form: Widget) => tabs.openForm(form);

    const actions: IDeployActions = {
      deploy: version => {
        const area = openForm(
          new DeployForm(version, service => {
            area.dispose();
            actions.openService(service.owner, service.name);
            void panel.refresh();
          })
        );
      },
      openService: (owner, name) =>
        openView(
          `service:${owner}/${name}`,
          () => new ServiceView(owner, name, actions)
        ),
      changed: () => void panel.refresh()
    };

    const openModel = (owner: string, name: string) =>
      openView(
        `model:${owner}/${name}`,
        () => new ModelView(owner, name, actions)
      );

    const register = (mode: RegisterMode) => {
      const area = openForm(
        new RegisterForm(mode, result => {
          area.dispose();
          openModel(result.owner, result.name);
          void panel.refresh();
        })
      );
    };

    const panel = new DeployPanel(
      () => register({ kind: 'job' }),
      model => openModel(model.owner, model.name),
      service => actions.openService(service.owner, service.name)
    );
    app.shell.add(panel, 'left', { rank: 52 });
    if (restorer) {
      restorer.add(panel, 'workbench-deploy');
    }

    app.commands.addCommand(CommandIDs.open, {
      label: 'Models and Services',
      caption: 'Models and services: register, deploy, call, canary, metrics',
      icon: args => (args['isPalette'] ? undefined : deployIcon),
      execute: () => {
        app.shell.activateById(panel.id);
        void panel.refresh();
      }
    });
    app.commands.addCommand(CommandIDs.registerFiles, {
      label: 'Register as Model…',
      caption:
        'Register this file or folder of the instance’s storage as a model (a new version if the model exists)',
      icon: args => (args['isPalette'] ? undefined : deployIcon),
      execute: args => {
        let path = typeof args['path'] === 'string' ? args['path'] : '';
        if (!path && fileBrowser) {
          const selected = fileBrowser.selectedItems().next();
          path = selected.done ? '' : selected.value.path;
        }
        register({ kind: 'storage', path });
      }
    });
    app.commands.addCommand(CommandIDs.registerJob, {
      label: 'Register Model from Job Output…',
      caption: "Register a finished training job's output as a model",
      icon: args => (args['isPalette'] ? undefined : deployIcon),
      execute: args =>
        register({
          kind: 'job',
          job: typeof args['job'] === 'string' ? args['job'] : undefined
        })
    });
    app.contextMenu.addItem({
      command: CommandIDs.registerFiles,
      selector: '.jp-DirListing-item[data-isdir]',
      rank: 60
    });
    if (palette) {
      for (const command of Object.values(CommandIDs)) {
        palette.addItem({ command, category: CATEGORY });
      }
    }
  }
};
