/** Experiments' JSON as the platform sends it, and the calls the views make. */

import { requestAPI } from '../handler';
import { IJobVersion, ISubmission } from '../training';

/** A parameter of a search space. */
export interface ISpaceParam {
  type: 'float' | 'int' | 'categorical';
  low?: number;
  high?: number;
  step?: number;
  log?: boolean;
  choices?: unknown[];
}

/** A search's objective: the metric and which way is better. */
export interface IObjective {
  metric: string;
  direction: 'minimize' | 'maximize';
}

/** One trial of a search: its parameters, the job version that runs them, what it reported. */
export interface ITrial {
  number: number;
  version: number | null;
  params: Record<string, unknown>;
  state: string;
  value: number | null;
  steps: number;
  intermediate: Record<string, number>;
  reason: string;
  best: boolean;
  created: string;
  finished: string | null;
}

/** A hyperparameter search (with its trials from GET searches/ID). */
export interface ISearch {
  id: number;
  owner: string;
  job: string;
  workspace: string;
  description: string;
  state: string;
  reason: string;
  space: Record<string, ISpaceParam>;
  objective: IObjective;
  trials_planned: number;
  parallel: number;
  sampler: unknown;
  pruner: unknown;
  hyperparameters: Record<string, unknown>;
  best_trial: number | null;
  created: string;
  finished: string | null;
  trials?: ITrial[];
  counts?: Record<string, number>;
  best?: ITrial | null;
}

/** What the search form sends (POST searches): the submit form's fields and the search's. */
export interface ISearchRequest extends ISubmission {
  job?: string;
  space: Record<string, ISpaceParam>;
  objective: IObjective;
  trials: number;
  parallel: number;
  sampler: string | { type: string; seed?: number };
  pruner: string;
}

/** A run in a comparison. */
export interface IComparedRun {
  owner: string;
  name: string;
  version: number;
  label: string;
  state: string;
  hyperparameters: Record<string, unknown>;
  final: Record<string, number>;
  trial: { search: number; number: number; state: string } | null;
}

/** GET compare: runs side by side, what differs, the metrics' curves. */
export interface IComparison {
  runs: IComparedRun[];
  parameters: string[];
  metrics: string[];
  differs: Record<string, boolean>;
  curves: Record<string, { run: number; points: [number, number][] }[]>;
}

/** A run as its owner, job name and version. */
export interface IRunRef {
  owner: string;
  name: string;
  version: number;
}

/** A TensorBoard in this instance (with its address while it runs). */
export interface ITensorBoard {
  id: number;
  owner: string;
  instance: string;
  runs: (IRunRef & { label: string; logdir: string })[];
  state: string;
  created: string;
  stopped: string | null;
  url?: string;
}

/** What a comparison shows: runs (owner/name/version), or the trials of a search. */
export type CompareSelection = { runs: string[] } | { search: number };

/** A search's states while it goes on. */
export const SEARCH_ACTIVE = new Set(['running', 'stopping']);
/** A trial's states while it goes on. */
export const TRIAL_ACTIVE = new Set(['waiting', 'running']);
/** The most runs one comparison asks for (the platform's default limit). */
export const MAX_COMPARE_RUNS = 20;
/** Calls that make job versions wait for the platform to check the image. */
const SUBMIT_TIMEOUT_MS = 180_000;
/** Starting a TensorBoard: the process must answer first. */
const TENSORBOARD_TIMEOUT_MS = 120_000;

export function runKey(run: IRunRef): string {
  return `${run.owner}/${run.name}/${run.version}`;
}

export function parseRunKey(key: string): IRunRef {
  const [owner, name, version] = key.split('/');
  return { owner, name, version: Number(version) };
}

/** A value as the tables show it: numbers to 6 significant digits, others as JSON. */
export function formatValue(value: unknown): string {
  if (value === null || value === undefined) {
    return '—';
  }
  if (typeof value === 'number') {
    if (Number.isInteger(value)) {
      return String(value);
    }
    return String(Number(value.toPrecision(6)));
  }
  if (typeof value === 'string') {
    return value;
  }
  return JSON.stringify(value);
}

/** What a sampler or pruner setting reads as: "tpe (seed 7)". */
export function describeSetting(setting: unknown): string {
  if (!setting) {
    return '-';
  }
  if (typeof setting === 'string') {
    return setting;
  }
  const { type, ...rest } = setting as Record<string, unknown>;
  const extra = Object.entries(rest)
    .filter(([, v]) => v !== null && v !== undefined)
    .map(([k, v]) => `${k.replace(/_/g, ' ')} ${formatValue(v)}`)
    .join(', ');
  return extra ? `${type} (${extra})` : String(type);
}

function searchPath(id: number, ...rest: string[]): string {
  return ['searches', String(id), ...rest].join('/');
}

export async function listSearches(): Promise<ISearch[]> {
  return requestAPI<ISearch[]>('searches');
}

export async function getSearch(id: number): Promise<ISearch> {
  return requestAPI<ISearch>(searchPath(id));
}

export async function startSearch(body: ISearchRequest): Promise<ISearch> {
  return requestAPI<ISearch>(
    'searches',
    { method: 'POST', body: JSON.stringify(body) },
    SUBMIT_TIMEOUT_MS
  );
}

export async function stopSearch(id: number): Promise<ISearch> {
  return requestAPI<ISearch>(
    searchPath(id, 'stop'),
    { method: 'POST' },
    90_000
  );
}

export async function deleteSearch(id: number): Promise<void> {
  await requestAPI<void>(searchPath(id), { method: 'DELETE' });
}

export async function rerunBest(id: number): Promise<IJobVersion> {
  return requestAPI<IJobVersion>(
    searchPath(id, 'rerun-best'),
    { method: 'POST', body: '{}' },
    SUBMIT_TIMEOUT_MS
  );
}

export async function compare(
  selection: CompareSelection
): Promise<IComparison> {
  const query = new URLSearchParams();
  if ('search' in selection) {
    query.append('search', String(selection.search));
  } else {
    for (const run of selection.runs) {
      query.append('run', run);
    }
  }
  return requestAPI<IComparison>(`compare?${query.toString()}`, {}, 60_000);
}

/** The TensorBoard over these runs or this search, started in this instance. */
export async function startTensorBoard(
  body: { runs: IRunRef[] } | { search: number }
): Promise<ITensorBoard> {
  return requestAPI<ITensorBoard>(
    'tensorboards',
    { method: 'POST', body: JSON.stringify(body) },
    TENSORBOARD_TIMEOUT_MS
  );
}

export async function stopTensorBoard(id: number): Promise<void> {
  await requestAPI<void>(`tensorboards/${id}`, { method: 'DELETE' }, 60_000);
}
